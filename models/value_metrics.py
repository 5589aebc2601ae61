"""Evaluation of expected value against revenue actually won: what a sales leader checks.

On the out-of-time test split, each snapshot has a revenue (the amount won in its label window,
0 if not won) and scores: the expected value (probability x expected amount), the probability
alone, and the baseline's expected value (logistic probability x segment median).

- :func:`value_gains_table`: per equal-count bin of a score (highest first), the revenue won and
  the cumulative share of it captured: the value gains curve.
- :func:`value_deciles`: per decile of expected value, the expected value summed next to the
  revenue won (is the sum of expected value a forecast one can hold against revenue?).
- :func:`value_intervals`: lead-clustered bootstrap intervals (rows of one lead are not
  independent) of the share of revenue the top ``share`` of snapshots capture, per scorer and
  paired differences, and of the mean absolute error of log amount on won snapshots (value model
  against its baseline), each lead weighing 1 there as in training.

Shares of rows are by row weight: in a bootstrap replicate a lead drawn twice counts twice. Tied
scores are broken by row order, as :func:`models.metrics.gains_table` does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import pandas as pd

from models.intervals import group_counts, percentile_interval

log = logging.getLogger(__name__)


def _order(score: np.ndarray) -> np.ndarray:
    return np.argsort(-np.asarray(score, dtype=float), kind="stable")


def captured_share(
    revenue: np.ndarray, score: np.ndarray, share: float, weights: np.ndarray | None = None
) -> np.ndarray:
    """Share of the revenue in the top ``share`` of rows by ``score``: one number, or one per
    row of a (replicates x rows) ``weights`` matrix (rows weighted, e.g. bootstrap counts)."""
    revenue = np.asarray(revenue, dtype=float)
    order = _order(score)
    w = np.ones((1, len(revenue))) if weights is None else np.atleast_2d(weights)
    w = w[:, order]
    cum = np.cumsum(w, axis=1)
    # The copies of each row (a weight counts copies) that lie inside the share: a row whose
    # copies straddle the edge counts in part, exactly as the repeated rows would.
    inside = np.floor(share * cum[:, -1:] - (cum - w) + 1e-9)
    taken = np.clip(inside, 0.0, w)
    won = revenue[order]
    total = (w * won).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (taken * won).sum(axis=1) / total
    return out if weights is not None else out[:1]


def value_gains_table(
    revenue: np.ndarray, scores: Mapping[str, np.ndarray], n_bins: int = 10
) -> pd.DataFrame:
    """Per scorer and equal-count bin (1 = highest scores): rows, revenue won, won snapshots,
    cumulative share of rows and of revenue (the value gains curve)."""
    revenue = np.asarray(revenue, dtype=float)
    frames = []
    for name, score in scores.items():
        order = _order(score)
        bins = np.empty(len(revenue), dtype=int)
        bins[order] = np.arange(len(revenue)) * n_bins // max(len(revenue), 1)
        frame = pd.DataFrame({"bin": bins + 1, "revenue": revenue, "won": revenue > 0})
        table = frame.groupby("bin").agg(
            rows=("revenue", "size"), revenue=("revenue", "sum"), won=("won", "sum")
        )
        table["cumulative_share_of_rows"] = table["rows"].cumsum() / table["rows"].sum()
        table["cumulative_share_of_revenue"] = table["revenue"].cumsum() / max(
            table["revenue"].sum(), np.finfo(float).tiny
        )
        frames.append(table.reset_index().rename(columns={"bin": "decile"}).assign(scorer=name))
    return pd.concat(frames, ignore_index=True)


def value_deciles(revenue: np.ndarray, expected: np.ndarray, n_bins: int = 10) -> pd.DataFrame:
    """Per equal-count bin of expected value (1 = highest): rows, expected value summed, revenue
    won summed, and their ratio (1: the expected value forecasts the revenue of its decile)."""
    table = value_gains_table(revenue, {"expected_value": expected}, n_bins)
    order = _order(expected)
    bins = np.empty(len(expected), dtype=int)
    bins[order] = np.arange(len(expected)) * n_bins // max(len(expected), 1)
    table["expected_value"] = np.bincount(bins, weights=expected, minlength=n_bins)[: len(table)]
    with np.errstate(invalid="ignore", divide="ignore"):
        table["revenue_over_expected"] = table["revenue"] / table["expected_value"]
    return table[["decile", "rows", "won", "expected_value", "revenue", "revenue_over_expected"]]


def _lead_draws(
    codes: np.ndarray, n_groups: int, n_boot: int, seed: int, chunk: int
) -> Iterator[np.ndarray]:
    """Row weights of bootstrap replicates, a (chunk x rows) matrix at a time: each lead drawn
    with replacement (:func:`models.intervals.group_counts`), its rows weighted by its count."""
    rng = np.random.default_rng(seed)
    for lo in range(0, n_boot, chunk):
        yield group_counts(rng, n_groups, min(chunk, n_boot - lo))[:, codes].astype(float)


def _interval(values: np.ndarray, point: float, alpha: float) -> dict[str, float | None]:
    """:func:`models.intervals` percentile interval of the finite replicates (a replicate with
    no revenue has no share)."""
    return percentile_interval(values[np.isfinite(values)], point, alpha)


def _share(diff: np.ndarray, better) -> float | None:
    """The share of replicates where the first scorer is better (None: no finite replicate)."""
    finite = diff[np.isfinite(diff)]
    return float(np.mean(better(finite, 0))) if len(finite) else None


def value_intervals(
    revenue: np.ndarray,
    scores: Mapping[str, np.ndarray],
    groups: np.ndarray,
    shares: tuple[float, ...] = (0.1,),
    pairs: tuple[tuple[str, str], ...] = (),
    log_errors: Mapping[str, np.ndarray] | None = None,
    error_pairs: tuple[tuple[str, str], ...] = (),
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    max_chunk_bytes: int = 100_000_000,
) -> dict[str, Any]:
    """Lead-clustered bootstrap of the revenue captured by the top ``shares`` of rows per
    scorer (and of paired differences ``a - b``), and of mean absolute log errors.

    ``log_errors``: per name, |log amount - log prediction| on the rows with a won amount and NaN
    elsewhere; each lead's won rows weigh 1 in total (as the value model trained), times its
    bootstrap count. Returns JSON-ready {value, low, high} entries."""
    revenue = np.asarray(revenue, dtype=float)
    codes, uniques = pd.factorize(np.asarray(groups))
    n, n_groups = len(revenue), len(uniques)
    errors = {k: np.asarray(v, dtype=float) for k, v in (log_errors or {}).items()}
    lead_w = None
    if errors:
        won = np.isfinite(next(iter(errors.values())))
        per_lead = np.bincount(codes[won], minlength=n_groups)
        lead_w = np.where(won, 1.0 / np.maximum(per_lead[codes], 1), 0.0)
    chunk = int(max(1, min(n_boot, max_chunk_bytes // (8 * 4 * max(n, 1)))))
    reps: dict[str, list[np.ndarray]] = {}
    for w in _lead_draws(codes, n_groups, n_boot, seed, chunk):
        for name, score in scores.items():
            for share in shares:
                reps.setdefault(f"{name}@{share:g}", []).append(
                    captured_share(revenue, score, share, w)
                )
        for name, err in errors.items():
            ww = w * lead_w
            with np.errstate(invalid="ignore", divide="ignore"):
                got = (ww * np.nan_to_num(err)).sum(axis=1) / ww.sum(axis=1)
            reps.setdefault(f"log_mae:{name}", []).append(got)
    drawn = {k: np.concatenate(v) for k, v in reps.items()}
    out: dict[str, Any] = {
        "method": "lead-clustered percentile bootstrap",
        "n_boot": int(n_boot),
        "alpha": float(alpha),
        "seed": int(seed),
        "rows": int(n),
        "leads": int(n_groups),
        "captured": {},
        "captured_differences": {},
        "log_mae": {},
        "log_mae_differences": {},
    }
    for share in shares:
        key = f"top_{share:g}"
        point = {name: float(captured_share(revenue, s, share)[0]) for name, s in scores.items()}
        out["captured"][key] = {
            name: _interval(drawn[f"{name}@{share:g}"], point[name], alpha) for name in scores
        }
        out["captured_differences"][key] = {}
        for a, b in pairs:
            diff = drawn[f"{a}@{share:g}"] - drawn[f"{b}@{share:g}"]
            entry = _interval(diff, point[a] - point[b], alpha)
            entry["share_first_better"] = _share(diff, np.greater)
            out["captured_differences"][key][f"{a}_vs_{b}"] = entry
    if errors:
        point = {
            name: float(np.sum(lead_w * np.nan_to_num(e)) / np.sum(lead_w))
            for name, e in errors.items()
        }
        for name in errors:
            out["log_mae"][name] = _interval(drawn[f"log_mae:{name}"], point[name], alpha)
        for a, b in error_pairs:
            diff = drawn[f"log_mae:{a}"] - drawn[f"log_mae:{b}"]
            entry = _interval(diff, point[a] - point[b], alpha)
            entry["share_first_better"] = _share(diff, np.less)
            out["log_mae_differences"][f"{a}_vs_{b}"] = entry
    return out


def list_change(
    revenue: np.ndarray,
    won: np.ndarray,
    by_probability: np.ndarray,
    by_value: np.ndarray,
) -> dict[str, Any]:
    """How a list of leads (boolean masks of the same rows) changes when ranked by value instead
    of probability: sizes, overlap, rows entering and leaving, and the conversions and revenue
    each list holds."""
    by_probability, by_value = np.asarray(by_probability, bool), np.asarray(by_value, bool)
    revenue, won = np.asarray(revenue, dtype=float), np.asarray(won, dtype=bool)

    def held(mask: np.ndarray) -> dict[str, float]:
        return {
            "rows": int(mask.sum()),
            "conversions": int(won[mask].sum()),
            "revenue": float(revenue[mask].sum()),
        }

    return {
        "by_probability": held(by_probability),
        "by_value": held(by_value),
        "in_both": int((by_probability & by_value).sum()),
        "entering": held(by_value & ~by_probability),
        "leaving": held(by_probability & ~by_value),
    }
