"""Cutoffs on the calibrated probability, chosen on validation by a stated policy, and stages.

Policies (params.yaml ``cutoffs``):
- ``precision``: the lowest cutoff whose leads convert at least ``target`` of the time
  (e.g. SQL = leads that convert >= 30%); the most leads that still meet the precision.
  Target in (0, 1]. Beware: a target below the base rate is met by everyone.
- ``lift``: as ``precision``, but relative to the base rate of the data given: the lowest cutoff
  whose leads convert at least ``target`` times the average (SQL lift 3 = SQL leads convert 3x
  the average). Transfers between data sets with different base rates. Target > 0; a lift of 1
  or less is met by the whole population (logged).
- ``recall``: the highest cutoff that still catches ``target`` of future customers
  (e.g. MQL catches 80% of them). Target in (0, 1].
- ``capacity``: the cutoff that lets about ``target`` snapshots a week through, measured on the
  validation split's weekly volume (e.g. what a sales team can call). Target > 0.
- ``top_share``: the cutoff that lets about ``target`` of the rows through, the highest scores
  first (e.g. SQL = the top 5%). Target in (0, 1]. Only a distinct score can be a cutoff, so tied
  scores go through together: the cutoff is the lowest score whose "score >= cutoff" set does not
  exceed the share; when even the top score's tie group exceeds it, that top group alone.
- ``capacity_by_value``: as ``capacity`` (about ``target`` leads a week), ranked by expected
  value (probability x expected amount, :mod:`models.value`) instead of probability: the stage
  then compares the lead's expected value with ``<tier>_expected_value``, and ``<tier>`` holds
  the probability cutoff of a list of the same size (what ranking by probability would pick).

A stage always comes with why: the score against the cutoff, and which gate blocked SQL.

``choose_cutoffs`` returns {"sql", "mql"} on the probability (the model metadata and the MLflow
tags read that), and ``<tier>_expected_value`` for a tier ranked by value.
Whether the result is degenerate (everyone or nobody passes, MQL capped at SQL, a target out of
reach, a required gate unknown for almost everyone, an empty stage) is for ``cutoff_warnings``
to say: a pure function of the validation scores, outcomes, cutoffs, settings and, optionally,
the gates and stages, that re-derives what ``choose_cutoffs`` did instead of being told.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from models.gates import CRITERIA, WORDS

log = logging.getLogger(__name__)

POLICIES = ("precision", "lift", "recall", "capacity", "top_share", "capacity_by_value")
#: Policies that rank by expected value (probability x expected amount), not probability.
VALUE_POLICIES = ("capacity_by_value",)
#: Policies whose target is a share of leads or customers: in (0, 1].
SHARE_POLICIES = ("precision", "recall", "top_share")
#: Policies met by the conversion rate above the cutoff (a target that may be out of reach).
RATE_POLICIES = ("precision", "lift")
STAGES = ("disqualified", "SQL", "MQL", "nurture")
TIERS = ("sql", "mql")

# Why a cutoff at the lowest score lets everyone through, and what to do, by policy.
_WHOLE_POPULATION = {
    "precision": ("is met by the whole population", "use lift or top_share"),
    "lift": ("is met by the whole population", "use a lift above 1"),
    "recall": ("needs the whole population", "lower the target"),
    "capacity": ("is at least the whole validation volume", "lower the target"),
    "top_share": ("takes the whole population", "lower the target"),
    "capacity_by_value": ("is at least the whole validation volume", "lower the target"),
}


def _check_target(policy: str, target: float) -> None:
    """Refuse an unknown policy or a target outside its range, in one line."""
    if policy not in POLICIES:
        raise ValueError(f"unknown cutoff policy {policy!r}; choose from {POLICIES}")
    # Written as "not (in range)" so that NaN is refused too.
    if policy in SHARE_POLICIES and not 0 < target <= 1:
        raise ValueError(f"cutoff policy {policy}: target must be in (0, 1], got {target!r}")
    if policy not in SHARE_POLICIES and not target > 0:
        raise ValueError(f"cutoff policy {policy}: target must be above 0, got {target!r}")


def _curve(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct scores, highest first, and at each: rows and conversions with score >= it."""
    order = np.argsort(-p, kind="stable")
    p_sorted, y_sorted = p[order], y[order]
    # Only distinct scores can be cutoffs: evaluate "p >= value" at the last row of each run.
    last_of_value = np.r_[p_sorted[1:] != p_sorted[:-1], True]
    hits = np.cumsum(y_sorted)[last_of_value]
    taken = (np.arange(len(p)) + 1)[last_of_value]
    return p_sorted[last_of_value], taken, hits


def _rate(policy: str, taken: np.ndarray, hits: np.ndarray) -> np.ndarray:
    """Precision, or lift over the base rate, of "p >= value" for each distinct value."""
    if policy == "precision":
        return hits / taken
    # hits/taken over total/n as one division of exact integer products: a lift that equals
    # the target exactly is not lost to rounding.
    return hits * taken[-1] / (taken * hits[-1])


def choose_cutoff(
    p: np.ndarray, y: np.ndarray, policy: str, target: float, weeks: float | None = None
) -> float:
    """The cutoff on ``p`` that meets ``policy``'s ``target`` on these outcomes (see module doc)."""
    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=int)
    _check_target(policy, target)
    if p.size == 0 or p.shape != y.shape:
        raise ValueError(
            f"a cutoff needs scores and outcomes of the same non-zero length, got {p.size} and {y.size}"
        )
    values, taken, hits = _curve(p, y)
    nobody = float(np.nextafter(values[0], np.inf))
    if policy in RATE_POLICIES:
        if policy == "lift" and hits[-1] == 0:
            raise ValueError("the lift policy needs at least one conversion in the validation data")
        if policy == "lift" and target <= 1:
            log.warning(
                "a lift target of %g is met by every lead (the whole population has lift 1)", target
            )
        rate = _rate(policy, taken, hits)
        ok = rate >= target
        if not ok.any():
            log.warning(
                "no cutoff reaches %s %g on this data (best %.3f): nobody qualifies",
                policy, target, float(rate.max()),
            )  # fmt: skip
            return nobody
        return float(values[np.flatnonzero(ok)[-1]])
    if policy == "recall":
        if y.sum() == 0:
            raise ValueError(
                "the recall policy needs at least one conversion in the validation data"
            )
        ok = hits / y.sum() >= target
        return float(values[np.flatnonzero(ok)[0]])
    if policy in ("capacity", "capacity_by_value"):
        if not weeks or weeks <= 0:
            raise ValueError("the capacity policy needs the number of weeks the data covers")
        allowed = target * weeks
        ok = taken <= allowed
        return float(values[np.flatnonzero(ok)[-1]]) if ok.any() else nobody
    # top_share. taken / n, not taken <= target * n: the share is compared as written (0.57 of
    # 100 rows is 57 rows, whereas 0.57 * 100 == 56.99999999999999).
    ok = taken / p.size <= target
    # Even the top tie group is over the share: take it, a policy of "the top x%" never means
    # nobody.
    return float(values[np.flatnonzero(ok)[-1]]) if ok.any() else float(values[0])


def value_key(tier: str) -> str:
    """The cutoffs' key of a tier's expected-value cutoff."""
    return f"{tier}_expected_value"


def choose_cutoffs(
    p: np.ndarray,
    y: np.ndarray,
    settings: Mapping[str, Mapping[str, Any]],
    weeks: float,
    value: np.ndarray | None = None,
) -> dict[str, float]:
    """SQL and MQL cutoffs from ``settings`` ({"sql": {"policy", "target"}, "mql": {...}}).

    The MQL cutoff is never above the SQL cutoff: a lead good enough for sales is a marketing
    qualified lead too. ``cutoff_warnings`` says when the result is degenerate. A tier of
    policy ``capacity_by_value`` also gets its cutoff on ``value`` (the expected values of the
    same rows) under :func:`value_key`; on the probability, the same-size list's cutoff.
    """
    cut, by_value = {}, {}
    for tier in TIERS:
        policy, target = settings[tier]["policy"], float(settings[tier]["target"])
        cut[tier] = choose_cutoff(p, y, policy, target, weeks)
        if policy in VALUE_POLICIES:
            if value is None:
                raise ValueError(
                    f"cutoffs.{tier}: policy {policy} needs expected values (a value model)"
                )
            by_value[value_key(tier)] = choose_cutoff(value, y, policy, target, weeks)
    cut["mql"] = min(cut["mql"], cut["sql"])
    return cut | by_value


def _policy_text(spec: Mapping[str, Any]) -> str:
    """'policy precision 0.12', as the settings say it."""
    target = spec.get("target")
    target = f"{target:g}" if isinstance(target, int | float) else repr(target)
    return f"policy {spec.get('policy')} {target}"


def cutoff_warnings(
    p: np.ndarray,
    y: np.ndarray,
    cutoffs: Mapping[str, float],
    settings: Mapping[str, Mapping[str, Any]],
    *,
    gates: pd.DataFrame | None = None,
    stages: Any = None,
    max_unknown_share: float = 0.95,
) -> list[str]:
    """One-line sentences on what is degenerate about ``cutoffs`` on the data they were chosen on.

    ``p``, ``y``: validation scores and outcomes; ``cutoffs``: {"sql", "mql"} as
    ``choose_cutoffs`` returned them for ``settings``. Optional: ``gates``, the ``BantGates``
    output on the same rows (a required gate unknown for at least ``max_unknown_share`` of them),
    and ``stages``, the stage names per row (an empty SQL, MQL or nurture stage). Empty: healthy.
    """
    if not 0 < max_unknown_share <= 1:
        raise ValueError(f"max_unknown_share must be in (0, 1], got {max_unknown_share!r}")
    p, y = np.asarray(p, dtype=float), np.asarray(y, dtype=int)
    if p.size == 0:
        return ["no validation leads: the cutoffs could not be checked"]
    lowest, highest, base = float(p.min()), float(p.max()), float(y.mean())
    _, taken, hits = _curve(p, y)
    out = []
    capped = cutoffs["mql"] >= cutoffs["sql"]
    for tier in TIERS:
        name, cut, spec = tier.upper(), float(cutoffs[tier]), settings.get(tier, {})
        policy, target = spec.get("policy"), spec.get("target")
        # The choice's own note (logged by choose_cutoff), re-derived: a lift needs conversions.
        unreachable = False
        if policy in RATE_POLICIES and (policy == "precision" or hits[-1] > 0):
            best = float(_rate(policy, taken, hits).max())
            unreachable = best < float(target)
            if unreachable:
                out.append(
                    f"no {name} cutoff reaches {policy} {float(target):g} on validation "
                    f"(best {best:.3f}): {name} gets nobody by this policy; lower the target "
                    "or use top_share"
                )
        if tier == "mql" and capped:
            continue  # MQL sits at SQL: what is said of SQL holds for it, the cap is said below
        if cut <= lowest:
            why, fix = _WHOLE_POPULATION.get(policy, ("is met by the whole population", "check it"))
            out.append(
                f"{name} cutoff {cut:.3f} lets every validation lead through "
                f"({_policy_text(spec)} {why}, base rate {base:.2f}): {fix}"
            )
        elif cut > highest and not unreachable:
            out.append(
                f"{name} cutoff {cut:.3f} is above every validation score (highest "
                f"{highest:.3f}): no lead passes it ({_policy_text(spec)})"
            )
    if capped:
        out.append(
            f"MQL cutoff {cutoffs['mql']:.3f} is not below the SQL cutoff {cutoffs['sql']:.3f} "
            "(MQL is capped at SQL): no score falls between them, so MQL only holds leads a gate "
            "kept out of SQL; loosen the MQL target or tighten SQL"
        )
    if gates is not None and len(gates):
        # BantGates names a required gate "<Word> unknown" in gates_blocking exactly when its
        # result is unknown (an optional gate never blocks): count those labels.
        labels = gates["gates_blocking"].dropna().astype(str).str.split("; ").explode()
        counts = labels.value_counts()
        for criterion in CRITERIA:
            unknown = int(counts.get(f"{WORDS[criterion]} unknown", 0))
            share = unknown / len(gates)
            if share >= max_unknown_share:
                consequence = (
                    "SQL is empty"
                    if unknown == len(gates)
                    else f"at most {len(gates) - unknown} of {len(gates)} leads can reach SQL"
                )
                out.append(
                    f"gate {criterion} is required but unknown for {share:.0%} of validation "
                    f"leads: {consequence}; make it optional or map the field"
                )
    if stages is not None:
        per_stage = (
            pd.Series(np.asarray(stages, dtype=object))
            .value_counts()
            .reindex(list(STAGES), fill_value=0)
        )
        summary = ", ".join(f"{stage} {int(n)}" for stage, n in per_stage.items())
        for stage in STAGES[1:]:  # disqualified may well be empty
            if per_stage[stage] == 0:
                out.append(f"the {stage} stage is empty on validation ({summary})")
    return out


def percent(p: float) -> str:
    """A probability as a rep reads it: 18.7%, 2.0%; below 0.1%, two significant digits
    (0.015%), never a bare 0.0%."""
    p = float(p)
    if not np.isfinite(p):
        return "unknown"
    return f"{p:.1%}" if p >= 0.001 or p == 0 else f"{100 * p:.2g}%"


def _percent(p: np.ndarray | float) -> pd.Series | str:
    """:func:`percent` of each probability. The usual ones (0, or 0.1% and above) are formatted
    in one comprehension, the rest by :func:`percent` itself: a call per lead cost 1 s a
    million."""
    if np.ndim(p) == 0:
        return percent(float(p))
    values = np.asarray(p, dtype=float)
    out = np.array([f"{v:.1%}" for v in values.tolist()], dtype=object)
    usual = ((values >= 0.001) | (values == 0)) & np.isfinite(values)
    rare = np.flatnonzero(~usual)  # below 0.1%, NaN, infinite
    out[rare] = [percent(v) for v in values[rare].tolist()]
    return pd.Series(out, dtype=object)


def _points(gap: np.ndarray) -> pd.Series:
    """Probability gaps in percentage points: "2.3 points"."""
    points = (100 * np.asarray(gap, dtype=float)).tolist()
    # A gap that rounds to 0.0 is still a gap: say it is under a tenth of a point.
    said = [("less than 0.1 points" if v < 0.05 else f"{v:.1f} points") for v in points]
    return pd.Series(np.array(said, dtype=object), dtype=object)


def money(amount: float) -> str:
    """An amount as a rep reads it: $12,300 (the contract's amounts are USD)."""
    return f"${float(amount):,.0f}" if np.isfinite(amount) else "unknown"


def _tier(
    tier: str, p: np.ndarray, value: np.ndarray | None, cutoffs: Mapping[str, float]
) -> tuple[np.ndarray, str, np.ndarray]:
    """Per row: passes the tier's cutoff; the cutoff in words; the gap below it in words."""
    key = value_key(tier)
    if key not in cutoffs:
        cut = float(cutoffs[tier])
        return p >= cut, _percent(cut), _points(cut - p).to_numpy(dtype=object)
    if value is None:
        raise ValueError(f"the {tier.upper()} cutoff is on expected value: give expected values")
    cut = float(cutoffs[key])
    gap = pd.Series(np.maximum(cut - value, 0.0)).map(money).to_numpy(dtype=object)
    return value >= cut, f"{money(cut)} (expected value)", gap


def assign_stages(
    p: np.ndarray,
    gates: pd.DataFrame,
    cutoffs: Mapping[str, float],
    value: np.ndarray | None = None,
) -> pd.DataFrame:
    """Stage and why, per row: disqualified by a hard rule, else SQL (probability at or above
    the SQL cutoff and every required gate passes), else MQL (at or above the MQL cutoff), else
    nurture. The reason says the probability and, below SQL, what stands between the lead and
    the next stage up ("2.3 points below the SQL cutoff 9.3%", "Authority not met").
    A tier ranked by value (``<tier>_expected_value`` in ``cutoffs``) compares ``value``, the
    expected values, with its cutoff instead ("$1,200 below the SQL cutoff $9,000 (expected
    value)")."""
    p = np.asarray(p, dtype=float)
    value = None if value is None else np.asarray(value, dtype=float)
    sql_ok, sql, to_sql = _tier("sql", p, value, cutoffs)
    mql_ok, mql, to_mql = _tier("mql", p, value, cutoffs)
    disq = gates["disqualified_reason"].notna().to_numpy()
    gates_ok = gates["required_gates_pass"].to_numpy(dtype=bool)
    prob = "probability " + _percent(p).to_numpy(dtype=object)
    if value is not None and any(value_key(t) in cutoffs for t in TIERS):
        prob = prob + ", expected value " + pd.Series(value).map(money).to_numpy(dtype=object)
    stage = np.select([disq, sql_ok & gates_ok, mql_ok], ["disqualified", "SQL", "MQL"], "nurture")
    blocked = sql_ok & ~gates_ok & ~disq
    why = np.select(
        [disq, stage == "SQL", blocked, stage == "MQL"],
        [
            "disqualified: "
            + gates["disqualified_reason"].fillna("").astype(str).to_numpy(dtype=object),
            prob + f", at or above the SQL cutoff {sql}; required gates pass",
            prob
            + f", at or above the SQL cutoff {sql}, but "
            + gates["gates_blocking"].fillna("").astype(str).to_numpy(dtype=object),
            prob
            + f", at or above the MQL cutoff {mql}; "
            + to_sql
            + f" below the SQL cutoff {sql}",
        ],
        prob + ", " + to_mql + f" below the MQL cutoff {mql}",
    )
    return pd.DataFrame({"stage": stage, "stage_reason": why}, index=gates.index)


def tier_table(y: np.ndarray, stages: pd.Series) -> pd.DataFrame:
    """Per stage: leads, conversion rate, and share of all conversions."""
    frame = pd.DataFrame({"stage": np.asarray(stages), "y": np.asarray(y, dtype=int)})
    table = frame.groupby("stage").agg(leads=("y", "size"), conversions=("y", "sum"))
    table = table.reindex(list(STAGES), fill_value=0)
    table["conversion_rate"] = table["conversions"] / table["leads"].replace(0, np.nan)
    table["share_of_conversions"] = table["conversions"] / max(int(frame["y"].sum()), 1)
    return table.reset_index()
