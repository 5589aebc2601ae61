"""BANT gates: readable rules (from params.yaml) beside the model, never hidden inside it.

Each of Budget, Authority, Need and Timeline has a rule and is marked required or optional.
An unanswered question is its own case: the criterion's result is ``unknown``, never a silent
``fail``. A required gate is met only by ``pass``. Hard disqualifiers (unsubscribed, free-mail
domains if configured, students...) are rules too.

The gates read the snapshot's BANT features (``bant_budget``, ``bant_authority``, ``bant_need``,
``bant_timeline``), the demographic features (``seniority``, ``email_domain_kind``) and, when
present, the lead's current ``unsubscribed`` flag.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from features import contract as ct

log = logging.getLogger(__name__)

PASS, FAIL, UNKNOWN = "pass", "fail", "unknown"
CRITERIA = ("budget", "authority", "need", "timeline")
#: Ordered vocabularies for "at least" (budget) and "at most" (timeline) rules.
ORDERED = {"budget": ct.BUDGET_BANDS, "timeline": ct.TIMELINES[:-1]}  # no_timeline never "within"
VOCABULARY = {
    "budget": ct.BUDGET_BANDS,
    "authority": ct.AUTHORITIES,
    "need": ct.NEEDS,
    "timeline": ct.TIMELINES,
}
#: Answers that say nothing: treated as unanswered.
NON_ANSWERS = {"authority": {"unknown"}}
RULES = ("at_least", "at_most", "in", "stated")
WORDS = {"budget": "Budget", "authority": "Authority", "need": "Need", "timeline": "Timeline"}


class BantGates(BaseEstimator):
    """Evaluate BANT criteria and hard disqualifiers for each row of a feature frame.

    ``criteria``: name -> {"rule": at_least|at_most|in|stated, "value"/"values": ..., "required": bool}
    ``disqualify``: {"unsubscribed": bool, "email_domain_kinds": [...], "seniorities": [...]}
    """

    def __init__(self, criteria: Mapping[str, Any], disqualify: Mapping[str, Any] | None = None):
        self.criteria = criteria
        self.disqualify = disqualify

    def fit(self, x=None, y=None) -> BantGates:
        """Check the rules against the contract vocabularies; nothing is learnt from data."""
        rules = {}
        for name, spec in self.criteria.items():
            if name not in CRITERIA:
                raise ValueError(f"unknown BANT criterion {name!r}; choose from {CRITERIA}")
            rule = spec.get("rule")
            if rule not in RULES:
                raise ValueError(f"gates.{name}.rule must be one of {RULES}, got {rule!r}")
            values = spec.get("values", [spec["value"]] if "value" in spec else [])
            vocab = ORDERED[name] if rule in ("at_least", "at_most") else VOCABULARY[name]
            if rule in ("at_least", "at_most") and name not in ORDERED:
                raise ValueError(
                    f"gates.{name}: '{rule}' needs an ordered answer (budget or timeline)"
                )
            bad = [v for v in values if v not in vocab]
            if bad or (rule != "stated" and not values):
                raise ValueError(f"gates.{name}: values {bad or values} not in {list(vocab)}")
            rules[name] = {
                "rule": rule,
                "values": list(values),
                "required": bool(spec.get("required", False)),
            }
        d = dict(self.disqualify or {})
        for key, vocab in (
            ("email_domain_kinds", ct.EMAIL_DOMAIN_KINDS),
            ("seniorities", ct.SENIORITIES),
        ):
            bad = [v for v in d.get(key, []) if v not in vocab]
            if bad:
                raise ValueError(f"gates.disqualify.{key}: {bad} not in {list(vocab)}")
        self.rules_ = rules
        self.disqualify_ = {
            "unsubscribed": bool(d.get("unsubscribed", True)),
            "email_domain_kinds": list(d.get("email_domain_kinds", [])),
            "seniorities": list(d.get("seniorities", [])),
        }
        return self

    def _criterion(self, name: str, answers: pd.Series) -> np.ndarray:
        rule = self.rules_[name]
        text = answers.astype(object)
        unknown = text.isna() | text.isin(NON_ANSWERS.get(name, set()))
        if rule["rule"] == "stated":
            ok = text.notna() & (text != "none")
        elif rule["rule"] == "in":
            ok = text.isin(rule["values"])
        else:
            order = {v: i for i, v in enumerate(ORDERED[name])}
            rank = text.map(order)
            limit = order[rule["values"][0]]
            ok = (rank >= limit) if rule["rule"] == "at_least" else (rank <= limit)
            ok = ok.fillna(False).astype(bool)
            # An answer outside the ordered bands (a CRM's own "15k", unmapped) cannot be
            # ranked: unknown, not a fail ("no_timeline" is a band that fails "at most").
            unknown = unknown | (rank.isna() & ~text.isin(VOCABULARY[name]))
        return np.where(unknown, UNKNOWN, np.where(ok, PASS, FAIL))

    def transform(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Per row: each criterion's result, the BANT score (0-4 passes), the gates that block
        SQL (failed or unknown required criteria), and any hard disqualification."""
        check_is_fitted(self, "rules_")
        out = pd.DataFrame(index=frame.index)
        blocking = pd.Series("", index=frame.index, dtype=object)
        for name in CRITERIA:
            column = f"bant_{name}"
            if name not in self.rules_:
                out[f"gate_{name}"] = "not_checked"
                continue
            if column not in frame:
                # A CRM without this answer (or whose mapping leaves it out as not known at the
                # snapshot): unknown for every lead, never a silent pass or fail.
                log.warning(
                    "gates: no %s answer in the data (column %s): %s is unknown for every lead",
                    WORDS[name], column, WORDS[name],
                )  # fmt: skip
                answers = pd.Series(np.nan, index=frame.index, dtype=object)
            else:
                answers = frame[column]
            result = self._criterion(name, answers)
            out[f"gate_{name}"] = result
            if self.rules_[name]["required"]:
                blocked = result != PASS
                label = np.where(
                    result == UNKNOWN, f"{WORDS[name]} unknown", f"{WORDS[name]} not met"
                )
                blocking = blocking.where(
                    ~blocked, blocking + np.where(blocking == "", "", "; ") + label
                )
        out["bant_score"] = sum((out[f"gate_{n}"] == PASS).astype(int) for n in CRITERIA)
        out["required_gates_pass"] = blocking == ""
        out["gates_blocking"] = blocking.replace("", None)
        out["disqualified_reason"] = self._disqualified(frame)
        return out

    def _disqualified(self, frame: pd.DataFrame) -> pd.Series:
        reason = pd.Series(None, index=frame.index, dtype=object)
        d = self.disqualify_
        checks = []
        if d["unsubscribed"] and "unsubscribed" in frame:
            checks.append((frame["unsubscribed"].fillna(False).astype(bool), "unsubscribed"))
        if d["email_domain_kinds"] and "email_domain_kind" in frame:
            hit = frame["email_domain_kind"].astype(object).isin(d["email_domain_kinds"])
            checks.append(
                (hit, "email domain: " + frame["email_domain_kind"].astype(object).astype(str))
            )
        if d["seniorities"] and "seniority" in frame:
            hit = frame["seniority"].astype(object).isin(d["seniorities"])
            checks.append((hit, "seniority: " + frame["seniority"].astype(object).astype(str)))
        for hit, text in reversed(checks):  # the first rule listed wins
            reason = reason.mask(hit.to_numpy(), text)
        return reason.astype(object).where(reason.notna(), None)
