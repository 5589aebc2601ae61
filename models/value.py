"""The value model: what a lead's deal is worth if it converts, E[amount | won, features as of
the snapshot].

Ranking by probability alone sends reps after likely small deals; a lead's expected value is its
calibrated probability times this expected amount (:func:`expected_value`).

- **Loss.** LightGBM with a gamma loss and a log link (``value.objective``; ``tweedie`` also
  works): deal amounts are positive and right-skewed, and a log link makes size effects
  multiplicative ("twice the employees, 30% more per deal").
- **Rows.** The won snapshots of the training split that have an amount (``won_amount``, the
  label of :func:`pipelines.training_set.label_snapshots`). The snapshots of one won lead share
  one deal, so each won lead weighs 1 in total: rows of a lead are not independent. Early
  stopping on the validation split's won snapshots.
- **Calibration of the amount** (two numbers fitted on validation's won snapshots, as the
  probability is calibrated there): ``scale``, so that the mean expected amount equals the mean
  amount won (a sum of expected value can then be held against revenue); ``log_median_offset``,
  the typical (median) deal's distance in log amount from the predicted mean, for the error
  the model is judged on (mean absolute error of log amount, where the median is the best guess).
- **Baseline.** The median amount per segment of one feature (a category's levels, a number's
  equal-count bands such as company-size quartiles): the feature whose medians fit validation
  best; segments with fewer than ``baseline_min_leads`` won leads take the overall median
  (:class:`SegmentMedian`).
- **Too few won deals** (fewer won leads with an amount than ``min_won_leads`` in train or
  ``min_won_leads_validation`` in validation): the baseline is the value model (kind
  ``segment_median``), said in the log and the model's metadata. With no amount at all, every
  lead is worth the same (kind ``none``): the expected value is then the probability in units
  of one deal, and value ranking equals probability ranking.

Amounts are outcomes: the label here, never a feature of either model (``won_amount`` is in
:data:`models.frame.NOT_FEATURES`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.leakage import LeakageError

log = logging.getLogger(__name__)

#: Kinds of value model: a booster, the baseline standing in for it, or no amounts at all.
KINDS = ("lightgbm", "segment_median", "none")
OBJECTIVES = {"gamma": "gamma_deviance", "tweedie": "tweedie"}
#: The amount every lead is worth when the CRM holds no amount (kind ``none``): one deal.
UNIT_AMOUNT = 1.0
#: The value model's booster file in a `leadscore train` folder, beside the propensity booster.
VALUE_BOOSTER = "value_booster.txt"

# Scaled defaults (value.lightgbm null): a won lead's deal is one noisy number, so leaves must
# hold many of them. A leaf holds at least a twentieth of the won rows (and 10), and the tree
# grows one leaf per 40 won leads, 2 to 8: 200 won leads -> 5 leaves of at least ~25 rows. At
# most 8 leaves: deals are few (hundreds to thousands), more trees add depth where there are
# many, and a tree of up to 9 leaves gets its exact SHAP values by table lookup
# (models/contributions.py, max_nodes 8), far faster than LightGBM's pred_contrib: the nightly
# job's reasons for the amount then cost little.
LEAF_SHARE = 20
MIN_LEAF_ROWS = 10
LEADS_PER_LEAF = 40
MAX_LEAVES = 8


def lead_weights(lead_ids: pd.Series | np.ndarray) -> np.ndarray:
    """1 / (rows of the lead) per row: each lead weighs 1 in total."""
    codes, _ = pd.factorize(np.asarray(lead_ids))
    return 1.0 / np.bincount(codes)[codes]


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The weighted median (the lower one at an exact half)."""
    values, weights = np.asarray(values, dtype=float), np.asarray(weights, dtype=float)
    if values.size == 0:
        raise ValueError("a median of no values")
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, cum[-1] / 2)])


def log_abs_error(amount: np.ndarray, typical: np.ndarray, weights: np.ndarray) -> float:
    """Weighted mean absolute error of log amount (each lead weighs as ``weights`` say)."""
    err = np.abs(np.log(amount) - np.log(typical))
    return float(np.sum(weights * err) / np.sum(weights))


@dataclass
class SegmentMedian:
    """The baseline: the median amount per segment of one feature (``feature``): a category
    feature's levels, or a number's equal-count bands (``edges``: the inner band edges, e.g.
    company-size quartiles). The overall median for segments with too few won leads, for values
    never seen and for no feature."""

    feature: str | None = None
    medians: dict[str, float] = field(default_factory=dict)
    overall: float = float("nan")
    edges: list[float] | None = None

    def segments(self, x: pd.DataFrame) -> np.ndarray:
        """Each row's segment label: the level, or the band's number ("0" lowest); missing
        values are a segment of their own."""
        if self.edges is None:
            return x[self.feature].astype("string").fillna("(missing)").to_numpy(dtype=object)
        v = pd.to_numeric(x[self.feature], errors="coerce").to_numpy(dtype=float)
        band = np.searchsorted(np.asarray(self.edges), v, side="right").astype(str)
        return np.where(np.isnan(v), "(missing)", band).astype(object)

    @classmethod
    def fit_one(
        cls,
        x: pd.DataFrame,
        amount: np.ndarray,
        lead_ids: np.ndarray,
        feature: str | None,
        min_leads: int,
        bands: int = 4,
    ) -> SegmentMedian | None:
        """Medians of ``amount`` per segment of ``feature`` (each lead weighing 1); None for a
        number with fewer than two distinct bands."""
        w = lead_weights(lead_ids)
        overall = weighted_median(amount, w)
        if feature is None:
            return cls(None, {}, overall)
        edges = None
        if not isinstance(x[feature].dtype, pd.CategoricalDtype):
            values = pd.to_numeric(x[feature], errors="coerce").to_numpy(dtype=float)
            values = values[~np.isnan(values)]
            if not len(values):
                return None
            inner = np.quantile(values, np.arange(1, bands) / bands)
            edges = [float(e) for e in np.unique(inner)]
            if not edges or edges[0] >= values.max():
                return None
        model = cls(feature, {}, overall, edges)
        segments = model.segments(x)
        frame = pd.DataFrame({"segment": segments, "lead": lead_ids})
        leads_per_segment = frame.drop_duplicates().groupby("segment")["lead"].size()
        for segment in leads_per_segment.index[leads_per_segment >= min_leads]:  # a few
            hit = segments == segment
            model.medians[str(segment)] = weighted_median(amount[hit], w[hit])
        return model

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        """The median amount of each row's segment."""
        if self.feature is None or self.feature not in x:
            return np.full(len(x), self.overall)
        mapped = pd.Series(self.segments(x)).map(self.medians)
        return mapped.fillna(self.overall).to_numpy(dtype=float)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (stored in the model's metadata)."""
        return {
            "feature": self.feature,
            "edges": self.edges,
            "medians": self.medians,
            "overall": self.overall,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SegmentMedian:
        """The baseline stored by :meth:`to_dict`."""
        return cls(
            data.get("feature"),
            dict(data.get("medians") or {}),
            float(data["overall"]),
            data.get("edges"),
        )


def fit_segment_median(
    x_train: pd.DataFrame,
    amount_train: np.ndarray,
    lead_train: np.ndarray,
    x_valid: pd.DataFrame,
    amount_valid: np.ndarray,
    lead_valid: np.ndarray,
    min_leads: int,
    bands: int = 4,
) -> tuple[SegmentMedian, dict[str, float]]:
    """The segment-median baseline whose feature fits validation best (mean absolute error of
    log amount; no feature, the overall median, is a candidate too), and each candidate's error.
    Candidates: every feature, a category by its levels, a number by ``bands`` bands."""
    w_valid = lead_weights(lead_valid)
    errors, best = {}, None
    for feature in [None, *x_train.columns]:
        candidate = SegmentMedian.fit_one(
            x_train, amount_train, lead_train, feature, min_leads, bands
        )
        if candidate is None:
            continue
        err = (
            log_abs_error(amount_valid, candidate.predict(x_valid), w_valid)
            if len(amount_valid)
            else 0.0
        )
        errors[feature or "(overall median)"] = round(err, 5)
        if best is None or err < best[0]:
            best = (err, candidate)
    return best[1], errors


def check_value_leakage(
    errors: Mapping[str, float],
    rules: Mapping[str, Any],
    won_leads: int,
    allow: tuple[str, ...] = (),
) -> list[str]:
    """The value model's leakage alarm, before it is fitted: each feature alone, out of time
    (its segment medians fitted on train, judged on validation: ``errors``, mean absolute error
    of log amount per feature, and the overall median's). A feature that cuts the overall
    median's error by ``max_error_reduction`` or more alone is a field written once the deal's
    amount was known (a budget band set to the deal's after the win): training stops, naming
    it, unless it is in ``allow`` or validation has fewer than ``min_won_leads`` won leads (then
    a warning). From ``warn_error_reduction`` on, a warning. Returns the warnings."""
    base = errors.get("(overall median)")
    if not base:
        return []
    stop_at = float(rules.get("max_error_reduction", 0.8))
    warn_at = float(rules.get("warn_error_reduction", 0.5))
    enough = won_leads >= int(rules.get("min_won_leads", 20))
    stops, warnings = [], []
    for feature, err in errors.items():
        if feature == "(overall median)" or feature in allow:
            continue
        cut = 1 - err / base
        said = (
            f"{feature} alone cuts the error of log amount by {cut:.0%} "
            f"({err:.3f} vs {base:.3f} for the overall median)"
        )
        if cut >= stop_at and enough:
            stops.append(said)
        elif cut >= warn_at:
            warnings.append(said)
    if stops:
        raise LeakageError(
            f"training stopped: the value model's label leaks through {'; '.join(stops)}: a "
            "field set once the deal's amount was known. Fix the mapping (declare the field's "
            "knowledge time), or list the feature under train.allow_features if you have "
            "checked it"
        )
    for line in warnings:
        log.warning("value leakage alarm: %s", line)
    return warnings


def scaled_value_params(settings: Mapping[str, Any], n_rows: int, n_leads: int) -> dict[str, Any]:
    """LightGBM parameters of the value booster: ``value.lightgbm``, with the size-dependent
    ones left null scaled to the won rows and leads (module constants)."""
    params = {k: v for k, v in dict(settings.get("lightgbm") or {}).items() if v is not None}
    params.setdefault("min_data_in_leaf", max(MIN_LEAF_ROWS, n_rows // LEAF_SHARE))
    params.setdefault("num_leaves", int(np.clip(n_leads // LEADS_PER_LEAF, 2, MAX_LEAVES)))
    return params


@dataclass
class ValueModel:
    """Expected amount if won: a gamma (or tweedie) booster with its calibration, or the
    segment-median baseline standing in for it; and the baseline, for comparison."""

    kind: str
    baseline: SegmentMedian
    booster: lgb.Booster | None = None
    scale: float = 1.0
    log_median_offset: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)

    def expected_amount(self, x: pd.DataFrame) -> np.ndarray:
        """E[amount | won, features], per row of the model's feature matrix ``x``."""
        if self.kind == "none":
            return np.full(len(x), UNIT_AMOUNT)
        if self.booster is None:
            return self.baseline.predict(x)
        raw = self.booster.predict(x, num_iteration=self.booster.best_iteration or None)
        return self.scale * raw

    def typical_amount(self, x: pd.DataFrame) -> np.ndarray:
        """The median deal if won (what mean absolute error of log amount judges)."""
        if self.booster is None:
            return self.expected_amount(x)
        return self.expected_amount(x) * np.exp(self.log_median_offset)

    def to_meta(self) -> dict[str, Any]:
        """What ``model_meta.json`` keeps (the booster is its own file)."""
        return {
            "kind": self.kind,
            "scale": self.scale,
            "log_median_offset": self.log_median_offset,
            "baseline": self.baseline.to_dict(),
            **self.summary,
        }

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any], booster: lgb.Booster | None) -> ValueModel:
        """The model stored by :meth:`to_meta` with its booster (None unless kind lightgbm)."""
        return cls(
            kind=meta["kind"],
            baseline=SegmentMedian.from_dict(meta["baseline"]),
            booster=booster if meta["kind"] == "lightgbm" else None,
            scale=float(meta.get("scale", 1.0)),
            log_median_offset=float(meta.get("log_median_offset", 0.0)),
        )


def load_value_model(folder: str | Path, meta: Mapping[str, Any]) -> ValueModel | None:
    """The value model a `leadscore train` folder holds (its ``model_meta.json`` ``meta``, and
    :data:`VALUE_BOOSTER` beside it); None for a model trained before value models."""
    if "value" not in meta:
        return None
    path = Path(folder) / VALUE_BOOSTER
    booster = lgb.Booster(model_file=str(path)) if path.exists() else None
    return ValueModel.from_meta(meta["value"], booster)


def won_rows(frame: pd.DataFrame) -> np.ndarray:
    """Rows that teach the value model: won, with a positive amount."""
    if "won_amount" not in frame:
        return np.zeros(len(frame), dtype=bool)
    amount = frame["won_amount"].to_numpy(dtype=float)
    return (frame["label"].to_numpy() == 1) & (amount > 0)


def fit_value_model(
    settings: Mapping[str, Any],
    x_train: pd.DataFrame,
    train: pd.DataFrame,
    x_valid: pd.DataFrame,
    valid: pd.DataFrame,
) -> ValueModel:
    """The value model of ``value`` settings, from the won rows of train (fit) and validation
    (early stopping, calibration, the baseline's choice). ``x_*``: the feature matrices of the
    ``train`` / ``valid`` frames (which hold ``label``, ``won_amount`` and ``lead_id``)."""
    on_train, on_valid = won_rows(train), won_rows(valid)
    a_train = train["won_amount"].to_numpy(dtype=float)[on_train] if on_train.any() else None
    a_valid = valid["won_amount"].to_numpy(dtype=float)[on_valid] if on_valid.any() else None
    l_train = train["lead_id"].astype(str).to_numpy()[on_train]
    l_valid = valid["lead_id"].astype(str).to_numpy()[on_valid]
    counts = {
        "won_rows_train": int(on_train.sum()),
        "won_leads_train": int(pd.unique(l_train).size),
        "won_rows_validation": int(on_valid.sum()),
        "won_leads_validation": int(pd.unique(l_valid).size),
    }
    won_train = int((train["label"].to_numpy() == 1).sum())
    counts["won_rows_without_amount_train"] = won_train - counts["won_rows_train"]
    if a_train is None:
        log.warning(
            "value model: no won snapshot with an amount in the training split (%d won): every "
            "lead is worth one deal, expected value ranks as the probability does",
            won_train,
        )
        return ValueModel("none", SegmentMedian(None, {}, UNIT_AMOUNT), summary=counts)
    x_tr, x_va = x_train[on_train], x_valid[on_valid]
    baseline, errors = fit_segment_median(
        x_tr, a_train, l_train, x_va,
        a_valid if a_valid is not None else np.empty(0), l_valid,
        int(settings.get("baseline_min_leads", 10)), int(settings.get("baseline_bands", 4)),
    )  # fmt: skip
    # The five best candidates (a CRM may have hundreds of features).
    counts["baseline_errors_validation"] = dict(sorted(errors.items(), key=lambda e: e[1])[:5])
    # The alarm reads each feature finely (20 bands of a number, segments of 5 won leads): a
    # leaked amount must show however it is coded.
    leak = dict(settings.get("leakage") or {})
    _, fine = fit_segment_median(
        x_tr, a_train, l_train, x_va,
        a_valid if a_valid is not None else np.empty(0), l_valid,
        int(leak.get("min_segment_leads", 5)), int(leak.get("bands", 20)),
    )  # fmt: skip
    base_error = fine.get("(overall median)") or float("nan")
    counts["leakage_scan"] = {  # each feature's cut of the overall median's error, strongest first
        k: round(1 - v / base_error, 4)
        for k, v in sorted(fine.items(), key=lambda e: e[1])[:6]
        if k != "(overall median)"
    }
    counts["leakage_warnings"] = check_value_leakage(
        fine, leak, counts["won_leads_validation"],
        allow=tuple(settings.get("allow_features") or ()),
    )  # fmt: skip
    log.info(
        "value baseline: median amount per %s (%d levels, overall median %.0f)",
        baseline.feature or "(no segment)", len(baseline.medians), baseline.overall,
    )  # fmt: skip
    short = [
        f"{counts[key]} won leads with an amount in {split} (value.{limit}: {settings[limit]})"
        for key, split, limit in (
            ("won_leads_train", "train", "min_won_leads"),
            ("won_leads_validation", "validation", "min_won_leads_validation"),
        )
        if counts[key] < int(settings[limit])
    ]
    if short:
        log.warning(
            "value model: %s; the segment-median baseline is the value model", "; ".join(short)
        )
        return ValueModel("segment_median", baseline, summary={**counts, "below_bar": short})
    objective = str(settings.get("objective", "gamma"))
    if objective not in OBJECTIVES:
        raise ValueError(f"value.objective must be one of {sorted(OBJECTIVES)}, got {objective!r}")
    params = {
        "objective": objective,
        "metric": OBJECTIVES[objective],
        "verbose": -1,
        **scaled_value_params(settings, len(a_train), counts["won_leads_train"]),
    }
    w_train, w_valid = lead_weights(l_train), lead_weights(l_valid)
    train_set = lgb.Dataset(x_tr, label=a_train, weight=w_train, free_raw_data=False)
    valid_set = lgb.Dataset(
        x_va, label=a_valid, weight=w_valid, reference=train_set, free_raw_data=False
    )
    booster = lgb.train(
        params,
        train_set,
        num_boost_round=int(settings.get("num_boost_round", 1000)),
        valid_sets=[valid_set],
        valid_names=["validation"],
        callbacks=[
            lgb.early_stopping(int(settings.get("early_stopping_rounds", 50)), verbose=False)
        ],
    )
    raw = booster.predict(x_va, num_iteration=booster.best_iteration or None)
    scale = float(np.sum(w_valid * a_valid) / np.sum(w_valid * raw))
    offset = weighted_median(np.log(a_valid) - np.log(scale * raw), w_valid)
    model = ValueModel("lightgbm", baseline, booster, scale, offset)
    mae = log_abs_error(a_valid, model.typical_amount(x_va), w_valid)
    base_mae = log_abs_error(a_valid, baseline.predict(x_va), w_valid)
    model.summary = {
        **counts,
        "objective": objective,
        "lightgbm": {k: v for k, v in params.items() if k != "verbose"},
        "best_iteration": int(booster.best_iteration or booster.num_trees()),
        "validation_log_mae": round(mae, 5),
        "validation_log_mae_baseline": round(base_mae, 5),
    }
    log.info(
        "value model: gamma-family LightGBM (%s), %d trees on %d won leads; validation mean "
        "absolute error of log amount %.3f (baseline %.3f); scale %.3f, median offset %.3f",
        objective, model.summary["best_iteration"], counts["won_leads_train"], mae, base_mae,
        scale, offset,
    )  # fmt: skip
    return model


def expected_value(probability: np.ndarray, expected_amount: np.ndarray) -> np.ndarray:
    """Calibrated probability x expected amount if won: the revenue a lead is expected to bring."""
    return np.asarray(probability, dtype=float) * np.asarray(expected_amount, dtype=float)
