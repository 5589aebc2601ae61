"""Score open leads with a registered model: who is open, their features as of now, and the scores.

The pieces a nightly scoring job is made of, each usable on its own:

- :func:`load_scoring_model`: a model by URI (``models:/lead-conversion@champion``, any
  ``models:/name/version``, or a ``leadscore train`` folder), with its name, version and the
  cutoffs of *that* version (its registry tags win over the packaged ones, so an admin can move
  a cutoff without retraining);
- :func:`open_leads`: the leads to score as of an instant, and how many were left out and why
  (already won or lost, older than the model's population, created later);
- :func:`score_leads`: features as of the instant, calibrated probability, BANT gates, stage, and
  the top reasons for and against in words;
- :func:`stage_in_sales`: for a model of the lead-scoring population (``population.policy`` in
  its metadata), the stage ``in_sales`` for the leads sales already works (an opportunity open).
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.behavioral import BehavioralParams
from features.build import build_features, feature_specs
from features.gate_inputs import unsubscribed_as_of
from features.mapping.contract import NATIVE, EffectiveContract
from models.contributions import TreeContributions
from models.explain import LeadExplainer
from models.packaged import LeadScorer
from models.reasons import SEPARATOR
from pipelines.training_set import POPULATIONS, in_sales_before, won_or_lost_before

log = logging.getLogger(__name__)

MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")

#: The stage of a lead sales already works (an opportunity open at the scoring instant), written
#: instead of a score-based stage when the model was trained on the lead-scoring population.
IN_SALES = "in_sales"
IN_SALES_REASON = "an opportunity is open: sales works this lead"
#: Every stage a scoring run writes, in the order summaries list them: the score-based stages of
#: :data:`models.cutoffs.STAGES`, then ``in_sales``.
SCORING_STAGES = ("SQL", "MQL", "nurture", "disqualified", IN_SALES)
#: ``score.older_leads``: what to do with open leads older than the model's population.
OLDER_LEADS = ("leave_out", "score")


@dataclass(frozen=True)
class Population:
    """Which leads a model is for: ``policy`` ``lead_scoring`` (leads no opportunity is open for;
    those sales works are staged ``in_sales``) or ``all``, and ``max_age_days``, the oldest its
    training snapshots reach after creation (None: not known, no age cap)."""

    policy: str
    max_age_days: int | None


@dataclass
class ScoringModel:
    """A loaded model and where it came from."""

    scorer: LeadScorer
    name: str
    version: str
    uri: str
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def cutoffs(self) -> dict[str, float]:
        """The SQL and MQL cutoffs this model version scores with."""
        return dict(self.scorer.meta["cutoffs"])

    @cached_property
    def explainer(self) -> TreeContributions:
        """Exact SHAP contributions of the booster, fast (built once per loaded model: the
        packaged scorer's own, so reasons from either side share the lookup tables)."""
        return self.scorer.explainer.fast

    @cached_property
    def value_explainer(self) -> LeadExplainer | None:
        """Contributions and words of the value booster (log amount), for the reasons of the
        amount; None without a value booster."""
        value = self.scorer.value
        if value is None or value.booster is None:
            return None
        return LeadExplainer(value.booster, self.features, self.scorer.specs)

    @property
    def population(self) -> Population:
        """The model's population (``population`` of its metadata). A model trained before it
        was recorded: ``all`` open leads, of any age."""
        raw = self.scorer.meta.get("population") or {}
        policy, age = raw.get("policy") or "all", raw.get("max_age_days")
        if policy not in POPULATIONS:
            raise ValueError(
                f"model {self.name} version {self.version}: population policy {policy!r} is not "
                f"one of {', '.join(POPULATIONS)}"
            )
        whole = isinstance(age, int | float) and not isinstance(age, bool) and age >= 0
        if age is not None and not (whole and float(age).is_integer()):
            raise ValueError(
                f"model {self.name} version {self.version}: population max_age_days must be a "
                f"whole number of days >= 0 or null, got {age!r}"
            )
        return Population(policy, None if age is None else int(age))

    @property
    def features(self) -> list[str]:
        """The features the model reads, in its order."""
        return list(self.scorer.meta["features"])

    def feature_config(
        self, params_features: Mapping[str, Any]
    ) -> tuple[list[str], BehavioralParams]:
        """Builders and behavioral settings the model was trained with (else today's params)."""
        config = self.scorer.meta.get("feature_config") or params_features
        behavioral = dict(config.get("behavioral", {}))
        if "windows_days" in behavioral:
            behavioral["windows_days"] = tuple(behavioral["windows_days"])
        return list(config["builders"]), BehavioralParams(**behavioral)


def folder_version(folder: Path) -> str:
    """The version a `leadscore train` folder is known by: ``local-`` and its booster's hash."""
    digest = hashlib.sha256((folder / "booster.txt").read_bytes()).hexdigest()
    return f"local-{digest[:12]}"


def load_scoring_model(uri: str) -> ScoringModel:
    """Load a model by MLflow URI (``models:/name@alias`` or ``models:/name/N``) or from a folder.

    For a registered version, the ``sql_cutoff`` and ``mql_cutoff`` tags of that version are the
    cutoffs used; a difference from the packaged ones is logged.
    """
    folder = Path(uri)
    if "://" not in uri and ":/" not in uri:
        if not (folder / "booster.txt").exists():
            raise FileNotFoundError(
                f"model folder {folder} has no booster.txt: run `leadscore train` or pass a models:/ URI"
            )
        return ScoringModel(
            LeadScorer.from_folder(folder), "local", folder_version(folder), str(folder)
        )
    match = MODEL_URI.match(uri)
    if not match:
        raise ValueError(
            f"model URI {uri!r}: expected models:/<name>@<alias>, models:/<name>/<version> or a folder"
        )
    import mlflow
    from mlflow import MlflowClient

    from pipelines.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    client = MlflowClient()
    name = match["name"]
    try:
        if match["alias"]:
            version = client.get_model_version_by_alias(name, match["alias"])
        else:
            version = client.get_model_version(name, match["version"])
    except mlflow.exceptions.MlflowException as error:
        raise LookupError(
            f"model {uri} not found in the registry at {tracking_uri()}: {error.message.splitlines()[0]} "
            "(run `leadscore register`, or set MLFLOW_TRACKING_URI to the registry that holds it)"
        ) from None
    # Load exactly this version, even if the alias moves while we load.
    pyfunc = mlflow.pyfunc.load_model(f"models:/{name}/{version.version}")
    scorer = pyfunc.unwrap_python_model().scorer
    tags = dict(version.tags or {})
    # sql, mql, and a tier ranked by value's sql_expected_value (tag sql_expected_value_cutoff).
    for tier in list(scorer.meta["cutoffs"]):
        tagged = tags.get(f"{tier}_cutoff")
        if tagged is not None and not np.isclose(
            float(tagged), scorer.meta["cutoffs"][tier], rtol=0, atol=1e-6
        ):
            log.info(
                "%s cutoff from the version tag: %s (packaged %.6f)",
                tier.upper(),
                tagged,
                scorer.meta["cutoffs"][tier],
            )
        if tagged is not None:
            scorer.meta["cutoffs"][tier] = float(tagged)
    cut = scorer.meta["cutoffs"]
    if not 0 <= cut["mql"] <= cut["sql"] <= 1:
        raise ValueError(
            f"model {name} version {version.version}: cutoffs must satisfy 0 <= MQL <= SQL <= 1, "
            f"got MQL {cut['mql']}, SQL {cut['sql']} (check the version's sql_cutoff / mql_cutoff tags)"
        )
    log.info("loaded %s version %s (%s)", name, version.version, uri)
    return ScoringModel(scorer, name, str(version.version), uri, tags)


def open_leads(
    tables: Mapping[str, pd.DataFrame],
    as_of: pd.Timestamp,
    max_lead_age_days: int | None = None,
    older_leads: str = "leave_out",
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The snapshots to score (``lead_id``, ``as_of``) and how many leads were left out, by reason.

    Open: created before ``as_of``, not already won (an opportunity closed won before it) nor
    lost (every opportunity opened before it closed lost, none open). ``max_lead_age_days``
    (the model's ``population.max_age_days``; None: no cap): a lead created more than that many
    days before ``as_of`` is outside the population the model was trained on; ``older_leads``
    ``leave_out`` (default) leaves it out, counted as ``older_than_max_age``; ``score`` keeps it,
    counted as ``older_than_max_age_scored``. A lead exactly that old is in. Sorted by lead id,
    so batches are reproducible.
    """
    if older_leads not in OLDER_LEADS:
        raise ValueError(
            f"score.older_leads must be one of {', '.join(OLDER_LEADS)}, got {older_leads!r}"
        )
    leads, opps = tables["leads"], tables["opportunities"]
    ids = leads["lead_id"].astype(str)
    created = leads["created_at"]
    not_yet = (created >= as_of).to_numpy()
    # The rule the training labels use: a lost opportunity does not close a lead with another open.
    won, lost = won_or_lost_before(
        pd.DataFrame({"lead_id": ids.to_numpy(), "as_of": as_of}),
        opps.assign(lead_id=opps["lead_id"].astype(str)),
    )
    won, lost = won & ~not_yet, lost & ~not_yet & ~won
    too_old = np.zeros(len(leads), dtype=bool)
    if max_lead_age_days is not None:
        too_old = (
            ((as_of - created) > pd.Timedelta(days=int(max_lead_age_days))).to_numpy()
            & ~not_yet
            & ~won
            & ~lost
        )
    left_out_old = too_old if older_leads == "leave_out" else np.zeros_like(too_old)
    keep = ~(not_yet | won | lost | left_out_old)
    counts = {
        "leads_in_crm": len(leads),
        "open": int(keep.sum()),
        "already_won": int(won.sum()),
        "already_lost": int(lost.sum()),
        "older_than_max_age": int(left_out_old.sum()),
        "older_than_max_age_scored": int((too_old & keep).sum()),
        "created_after_as_of": int(not_yet.sum()),
    }
    snapshots = pd.DataFrame({"lead_id": ids[keep].to_numpy(), "as_of": as_of})
    snapshots["as_of"] = snapshots["as_of"].astype("datetime64[us]")
    return snapshots.sort_values("lead_id", ignore_index=True), counts


def select_leads(
    snapshots: pd.DataFrame, lead_ids: Sequence[str] | None, limit: int | None
) -> pd.DataFrame:
    """Only the given lead ids (an id that is not open is an error), then the first ``limit``."""
    if lead_ids:
        wanted = pd.Index([str(i) for i in lead_ids]).unique()
        missing = wanted.difference(pd.Index(snapshots["lead_id"]))
        if len(missing):
            raise LookupError(
                f"{len(missing)} requested lead id(s) are not open leads of this CRM: {list(missing[:10])}"
            )
        snapshots = snapshots[snapshots["lead_id"].isin(wanted)].reset_index(drop=True)
    if limit is not None:
        snapshots = snapshots.head(int(limit))
    return snapshots


def scoring_features(
    tables: Mapping[str, pd.DataFrame],
    snapshots: pd.DataFrame,
    model: ScoringModel,
    params_features: Mapping[str, Any],
    contract: EffectiveContract = NATIVE,
) -> pd.DataFrame:
    """The model's features for each snapshot, plus the lead's ``unsubscribed`` flag as of it
    (the gates' hard disqualifier, not a feature; ``features.gate_inputs``). ``contract``: the CRM's
    mapping (custom fields, activity types)."""
    builders, behavioral = model.feature_config(params_features)
    frame = build_features(
        tables, snapshots, builders, contract.behavioral(behavioral), contract=contract
    )
    missing = [n for n in model.features if n not in frame.columns]
    if missing:
        raise ValueError(
            f"model {model.name} version {model.version} needs feature(s) the builders did not produce: "
            f"{missing[:10]}; the model and the feature code do not match"
        )
    # The disqualifier's input, by the rule evaluation uses (features/gate_inputs.py).
    unsubscribed, _ = unsubscribed_as_of(tables, frame[["lead_id", "as_of"]])
    if unsubscribed is not None:
        frame["unsubscribed"] = unsubscribed.to_numpy()
    return frame


def report_unseen_categories(
    features: pd.DataFrame, model: ScoringModel, examples: int = 3
) -> dict[str, int]:
    """Rows per category feature holding a value never seen in training (scored as "other"),
    with one WARNING line per such feature naming its most frequent ``examples`` values.

    Empty for a model trained before category grouping existed.
    """
    unseen = model.scorer.unseen_categories(features)
    counts: dict[str, int] = {}
    other = model.scorer.grouper.other if model.scorer.grouper is not None else "other"
    for feature, values in unseen.groupby("feature", sort=False):
        counts[str(feature)] = rows = int(values["rows"].sum())
        shown = ", ".join(repr(v) for v in values["value"].head(examples))
        more = f" and {len(values) - examples} more value(s)" if len(values) > examples else ""
        log.warning(
            "%s: %d lead(s) with values not seen in training, scored as %r (e.g. %s%s)",
            feature, rows, other, shown, more,
        )  # fmt: skip
    return counts


def score_leads(
    features: pd.DataFrame,
    model: ScoringModel,
    explainer: LeadExplainer | None,
    top_k: int = 3,
    min_log_odds: float = 0.01,
    min_log_amount: float = 0.05,
) -> pd.DataFrame:
    """Per snapshot: lead_id, probability, score, expected amount and value, stage and why,
    gates, reasons for and against, and the reasons for the amount (:func:`amount_reasons`).

    ``explainer``: the model's (:func:`explainer_for`), kept across batches so that its phrases
    are said once per job; None with ``top_k=0``, which skips reasons. ``min_log_amount``: the
    smallest contribution to the log amount that is a reason (0.05: about 5% of the amount).
    """
    x = model.scorer.matrix(features)  # once: the probabilities and the contributions read it
    scored = model.scorer.score(features, x)
    scored.insert(0, "lead_id", features["lead_id"].to_numpy())
    if top_k > 0 and len(features):
        reasons = explainer.reasons(features, explainer.contributions(x), top_k, min_log_odds)
        scored = scored.join(reasons)
        value = model.value_explainer
        said = (
            value.reasons(features, value.contributions(x), top_k, min_log_amount)
            if value is not None
            else None
        )
        scored["amount_reasons"] = amount_reasons(reasons, said)
    else:
        scored["reasons_for"], scored["reasons_against"], scored["amount_reasons"] = "", "", ""
    return scored


def amount_reasons(reasons: pd.DataFrame, amount: pd.DataFrame | None) -> np.ndarray:
    """Per row, the value model's reasons (``reasons_for`` raise the expected amount,
    ``reasons_against`` lower it) that the probability's ``reasons`` do not already say:
    "Larger deal: Company has 2,400 employees; ... Smaller deal: ...". Empty when none is left.

    Phrases recur across leads: each distinct combination of the four texts is compared once.
    """
    if amount is None or not len(reasons):
        return np.full(len(reasons), "", dtype=object)
    columns = [reasons["reasons_for"], reasons["reasons_against"]]
    columns += [amount["reasons_for"], amount["reasons_against"]]
    frame = pd.DataFrame({i: c.fillna("").astype(str).to_numpy() for i, c in enumerate(columns)})
    codes, distinct = pd.factorize(pd.MultiIndex.from_frame(frame))
    said = []
    for prob_for, prob_against, larger, smaller in distinct:
        known = set(prob_for.split(SEPARATOR)) | set(prob_against.split(SEPARATOR))
        parts = []
        for label, text in (("Larger deal", larger), ("Smaller deal", smaller)):
            new = [t for t in text.split(SEPARATOR) if t and t not in known]
            if new:
                parts.append(f"{label}: " + SEPARATOR.join(new))
        said.append(". ".join(parts))
    return np.asarray(said, dtype=object)[codes]


def stage_in_sales(
    scored: pd.DataFrame, opportunities: pd.DataFrame, as_of: pd.Timestamp
) -> tuple[pd.DataFrame, int]:
    """``scored`` with the stage ``in_sales`` (and :data:`IN_SALES_REASON`) for each lead sales
    works as of ``as_of`` (an opportunity opened before it is still open, none won: the rule the
    lead-scoring training population uses), and how many. Probability, score, gates and reasons
    stay as scored: only the stage says the lead is out of lead scoring's hands."""
    if scored.empty:
        return scored, 0
    in_sales = in_sales_before(
        pd.DataFrame({"lead_id": scored["lead_id"].astype(str).to_numpy(), "as_of": as_of}),
        opportunities.assign(lead_id=opportunities["lead_id"].astype(str)),
    )
    scored = scored.copy()
    scored.loc[in_sales, "stage"] = IN_SALES
    scored.loc[in_sales, "stage_reason"] = IN_SALES_REASON
    return scored, int(in_sales.sum())


def explainer_for(
    model: ScoringModel, params_features: Mapping[str, Any], contract: EffectiveContract = NATIVE
) -> LeadExplainer:
    """The model's explainer with the labels and groups the scoring job says reasons with
    (:func:`specs_by_name`), on the model's own contribution tables."""
    return LeadExplainer(
        model.scorer.booster,
        model.features,
        specs_by_name(model, params_features, contract),
        tree_contributions=model.explainer,
    )


def specs_by_name(
    model: ScoringModel, params_features: Mapping[str, Any], contract: EffectiveContract = NATIVE
) -> dict[str, Any]:
    """The feature specs (labels and groups for reasons), by feature name: the catalog the model
    was trained with (so the CRM, the registered model and ``leadscore explain`` say the same);
    for a model trained before it was stored, its builders' specs under this code."""
    if model.scorer.specs:
        return dict(model.scorer.specs)
    builders, behavioral = model.feature_config(params_features)
    return {s.name: s for s in feature_specs(builders, contract.behavioral(behavioral), contract)}
