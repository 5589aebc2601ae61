"""Lead-clustered bootstrap intervals for ROC AUC, PR AUC and ECE, and for comparisons of scorers.

Test rows are snapshots and one lead contributes several rows, so rows are not independent: a
row-level bootstrap understates the spread. Here the leads (groups) are resampled with replacement
and every row of a drawn lead comes along, as often as the lead was drawn. Each replicate is a
vector of integer row weights (exact multinomial counts per lead, no Poisson approximation), and
every scorer is evaluated on the same weights in the same replicate (a paired bootstrap), so a
difference such as model - baseline gets its own interval instead of two overlapping ones.

Speed: each scorer is sorted once. A chunk of replicates is a (chunk, rows) weight matrix; ROC AUC,
average precision and ECE come from cumulative sums of the weights along the sorted order, i.e.
O(rows) per replicate in vectorized numpy, and are exactly the weighted metrics (tests compare them
with scikit-learn and with physically repeated rows; tied scores are one threshold).

ECE: the equal-count bins are recomputed in every replicate over the repeated rows (not frozen
from the full-data order), so each replicate's ECE is the ECE of that resample. ECE is biased
upwards by sampling noise and duplicated leads add noise, so its bootstrap distribution sits above
the point estimate and the percentile interval may even exclude it on small data: read its width,
and use the paired difference to compare scorers.

Intervals are plain percentile intervals of the replicates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

METRICS = ("roc_auc", "pr_auc", "ece")
HIGHER_IS_BETTER = {"roc_auc": True, "pr_auc": True, "ece": False}
# A ratio (model / oracle) only reads as "share of the attainable" for metrics where higher is better.
RATIO_METRICS = ("roc_auc", "pr_auc")


@dataclass(frozen=True)
class _Ranked:
    """One scorer sorted once by descending score; a replicate only needs indices into this order."""

    order: np.ndarray  # row ids by descending score, ties in row order (as metrics._bins)
    take: np.ndarray  # [pad, group code of each sorted row]: pad points at an all-zero column
    y: np.ndarray  # outcomes in sorted order
    p: np.ndarray  # [0, scores in sorted order] (aligned with the padded weight matrix)
    pos_take: np.ndarray  # group code of each positive, in sorted order
    start: np.ndarray  # per positive: first sorted position of its tie group
    end: np.ndarray  # per positive: one past the last sorted position of its tie group
    start_pos: np.ndarray  # per positive: positives before its tie group
    end_pos: np.ndarray  # per positive: positives up to the end of its tie group
    pos_before: np.ndarray  # per sorted position j = 0..n: number of positives before j


def _rank(y: np.ndarray, p: np.ndarray, codes: np.ndarray, pad: int) -> _Ranked:
    order = np.argsort(-p, kind="stable")
    ps, ys = p[order], y[order]
    n = len(ps)
    # Tied scores form one threshold: they share the 0.5 AUC credit and one precision point.
    new = np.ones(n, dtype=bool)
    new[1:] = ps[1:] != ps[:-1]
    tie = np.cumsum(new) - 1
    starts = np.flatnonzero(new)
    ends = np.append(starts[1:], n)
    pos = np.flatnonzero(ys == 1)
    pos_before = np.concatenate([[0], np.cumsum(ys)])
    start, end = starts[tie[pos]], ends[tie[pos]]
    return _Ranked(
        order=order,
        take=np.concatenate([[pad], codes[order]]),
        y=ys.astype(float),
        p=np.concatenate([[0.0], ps]),
        pos_take=codes[order][pos],
        start=start,
        end=end,
        start_pos=pos_before[start],
        end_pos=pos_before[end],
        pos_before=pos_before,
    )


def _metrics_from_counts(
    r: _Ranked,
    counts: np.ndarray,
    metrics: Iterable[str],
    ece_bins: int,
    work: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Weighted metrics for each row of ``counts`` (replicates x groups, plus a zero pad column).

    ``work``: optional C-ordered float64 buffer of shape (>= 2, replicates, rows + 1), reused across
    calls so that large matrices are not allocated (and page-faulted) per chunk. Returns one array
    per metric (nan where a replicate has a single class) and ``valid``.
    """
    metrics = set(metrics)
    k, n1 = counts.shape[0], len(r.take)
    n = n1 - 1
    if work is None:
        work = np.empty((2 if "ece" in metrics else 1, k, n1))
    # (k, n+1) weights in sorted order; column 0 is the zero pad, so cumulative sums start at 0.
    # np.take along axis 1 is C-ordered and much faster than counts[:, idx].
    buf = np.take(counts, r.take, axis=1, out=work[0, :k], mode="clip")  # clip: unbuffered out
    rows = np.arange(k)[:, None]
    w_pos = np.take(counts, r.pos_take, axis=1)
    cum_pos = np.zeros((k, len(r.pos_take) + 1))
    np.cumsum(w_pos, axis=1, out=cum_pos[:, 1:])
    cum_wp = None
    if "ece" in metrics:
        cum_wp = np.multiply(buf, r.p, out=work[1, :k])
        np.cumsum(cum_wp, axis=1, out=cum_wp)
    # One running sum over the flattened matrix: row i holds (weight before replicate i) + its own
    # exclusive cumulative weights, so the whole buffer is monotone and a single searchsorted
    # finds bin edges for every replicate at once (used by ECE).
    flat = buf.ravel()
    np.cumsum(flat, out=flat)
    buf = flat.reshape(k, n1)
    base = buf[:, :1]
    total = buf[:, n] - buf[:, 0]
    pos_total = cum_pos[:, -1]
    neg_total = total - pos_total
    valid = (pos_total > 0) & (neg_total > 0)
    safe_pos = np.where(valid, pos_total, 1.0)
    safe_neg = np.where(valid, neg_total, 1.0)
    out: dict[str, np.ndarray] = {"valid": valid}

    # Per positive: weight and positive weight scoring >= its score (through the end of its tie
    # group) and > its score (before the start of the group).
    w_end = np.take(buf, r.end, axis=1) - base
    tp_end = np.take(cum_pos, r.end_pos, axis=1)
    if "roc_auc" in metrics:
        neg_end = w_end - tp_end
        neg_start = np.take(buf, r.start, axis=1) - base - np.take(cum_pos, r.start_pos, axis=1)
        # Negatives strictly below + half the tied negatives = neg_total - (neg_end + neg_start) / 2.
        credit = neg_total[:, None] - 0.5 * (neg_end + neg_start)
        auc = np.einsum("ij,ij->i", w_pos, credit) / (safe_pos * safe_neg)
        out["roc_auc"] = np.where(valid, auc, np.nan)
    if "pr_auc" in metrics:
        # sklearn's step AP: sum over thresholds of (R_k - R_{k-1}) P_k; each positive adds its
        # weight / total positives times the precision at its (tie group's) threshold.
        precision = tp_end / np.where(w_end > 0, w_end, 1.0)
        ap = np.einsum("ij,ij->i", w_pos, precision) / safe_pos
        out["pr_auc"] = np.where(valid, ap, np.nan)
    if "ece" in metrics:
        out["ece"] = np.where(valid, _ece(r, buf, cum_pos, cum_wp, total, ece_bins, rows), np.nan)
    return out


def _ece(r, buf, cum_pos, cum_wp, total, n_bins, rows) -> np.ndarray:
    """Equal-count ECE of each replicate, as if its rows were physically repeated by their weights.

    Bins are recomputed per replicate (not fixed from the full data): copy number q of the sorted
    repeated rows falls in bin floor(q * n_bins / total), exactly as metrics._bins does, and a row
    whose copies straddle a bin edge is split between the two bins.
    """
    n = buf.shape[1] - 1
    b = np.arange(1, n_bins)
    edges = np.ceil(b * total[:, None] / n_bins)  # first copy of bins 1..n_bins-1
    inside = edges < total[:, None]
    target = edges + buf[:, :1]
    idx = np.searchsorted(buf.reshape(-1), target.ravel(), side="right").reshape(target.shape) - 1
    j = np.clip(idx - rows * (n + 1), 0, n - 1)  # sorted row holding the edge copy
    partial = target - buf[rows, j]  # copies of row j before the edge
    f_y = cum_pos[rows, r.pos_before[j]] + partial * r.y[j]
    f_p = cum_wp[rows, j] + partial * r.p[j + 1]
    f_y = np.where(inside, f_y, cum_pos[:, -1:])
    f_p = np.where(inside, f_p, cum_wp[:, -1:])
    zero = np.zeros((len(total), 1))
    f_y = np.hstack([zero, f_y, cum_pos[:, -1:]])
    f_p = np.hstack([zero, f_p, cum_wp[:, -1:]])
    gap = np.abs(np.diff(f_y, axis=1) - np.diff(f_p, axis=1)).sum(axis=1)
    return gap / np.where(total > 0, total, 1.0)


def _check(y, scores: Mapping[str, Any]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    y = np.asarray(y)
    if y.ndim != 1 or not np.isin(y, (0, 1)).all():
        raise ValueError("y must be a 1-d array of 0/1 outcomes")
    arrays = {}
    for name, p in scores.items():
        p = np.asarray(p, dtype=float)
        if p.shape != y.shape:
            raise ValueError(f"scores[{name!r}] has shape {p.shape}, y has {y.shape}")
        if not np.isfinite(p).all():
            raise ValueError(f"scores[{name!r}] has non-finite values")
        arrays[name] = p
    return y.astype(int), arrays


def weighted_metrics(y, p, weights, ece_bins: int = 20) -> dict[str, float]:
    """ROC AUC, average precision and equal-count ECE of ``p`` under non-negative frequency weights.

    Equal to scikit-learn's ``roc_auc_score`` / ``average_precision_score`` with ``sample_weight``
    and to ``metrics.expected_calibration_error`` on rows repeated ``weights`` times.
    """
    y, arrays = _check(y, {"p": p})
    w = np.asarray(weights, dtype=float)
    if w.shape != y.shape or (w < 0).any():
        raise ValueError("weights must be non-negative and of the same length as y")
    n = len(y)
    r = _rank(y, arrays["p"], np.arange(n), pad=n)
    got = _metrics_from_counts(r, np.append(w, 0.0)[None, :], METRICS, ece_bins)
    return {m: float(got[m][0]) for m in METRICS}


def group_counts(rng: np.random.Generator, n_groups: int, k: int) -> np.ndarray:
    """``k`` bootstrap replicates over ``n_groups`` groups: how often each group was drawn
    (exact multinomial counts, int64 draws consumed value by value, so replicates do not depend
    on how many are drawn at once), a (k, n_groups) array."""
    draws = rng.integers(0, n_groups, size=(k, n_groups))
    draws += (np.arange(k) * n_groups)[:, None]
    return np.bincount(draws.ravel(), minlength=k * n_groups).reshape(k, n_groups)


def percentile_interval(values: np.ndarray, point: float, alpha: float) -> dict[str, float | None]:
    """{value: ``point``, low, high}: the ``alpha`` percentile interval of the replicates."""
    if len(values) == 0:
        return {"value": float(point), "low": None, "high": None}
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return {"value": float(point), "low": float(low), "high": float(high)}


def clustered_bootstrap(
    y,
    scores: Mapping[str, Any],
    groups,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    metrics: Iterable[str] = METRICS,
    pairs: Iterable[tuple[str, str]] = (("model", "baseline"),),
    ratios: Iterable[tuple[str, str]] = (("model", "oracle"),),
    ece_bins: int = 20,
    max_chunk_bytes: int = 200_000_000,
) -> dict[str, Any]:
    """Percentile intervals from a bootstrap over groups (leads), paired across scorers.

    Returns plain numbers (JSON-ready): ``scorers[name][metric]`` = {value, low, high} with value the
    metric on the full data; ``differences["a_vs_b"][metric]`` = {value, low, high,
    share_first_better} for a - b (better = higher, lower for ECE); ``ratios["a_over_b"][metric]``
    for a / b (ROC AUC, PR AUC). Pairs and ratios naming an absent scorer are skipped. Replicates
    that draw a single class are skipped and counted in ``skipped_one_class``.
    """
    metrics = tuple(metrics)
    if not metrics or not set(metrics) <= set(METRICS):
        raise ValueError(f"metrics must be a non-empty subset of {METRICS}, got {metrics}")
    if n_boot < 1 or not 0 < alpha < 1 or ece_bins < 1:
        raise ValueError("need n_boot >= 1, 0 < alpha < 1 and ece_bins >= 1")
    y, arrays = _check(y, scores)
    if not arrays:
        raise ValueError("no scores given")
    groups = np.asarray(groups)
    if groups.shape != y.shape:
        raise ValueError(f"groups has shape {groups.shape}, y has {y.shape}")
    codes, uniques = pd.factorize(groups)
    if (codes < 0).any():
        raise ValueError("groups has missing values")
    n, n_groups = len(y), len(uniques)
    if len(np.unique(y)) < 2:
        raise ValueError("y needs both outcomes")
    pairs, ratios = list(pairs), list(ratios)
    absent = [ab for ab in pairs + ratios if not set(ab) <= set(arrays)]
    if absent:  # e.g. no oracle on this split: not an error
        log.info("clustered bootstrap: skipping comparisons with absent scorers: %s", absent)
    pairs = [ab for ab in pairs if ab not in absent]
    ratios = [ab for ab in ratios if ab not in absent]

    started = time.perf_counter()
    ranked = {name: _rank(y, p, codes, pad=n_groups) for name, p in arrays.items()}
    # Weight of a row = times its group was drawn; the full data is every group drawn once.
    full = np.append(np.ones(n_groups), 0.0)[None, :]
    point = {}
    for name, r in ranked.items():
        got = _metrics_from_counts(r, full, metrics, ece_bins)
        point[name] = {m: float(got[m][0]) for m in metrics}
    reps = {name: {m: np.empty(n_boot) for m in metrics} for name in arrays}
    valid = np.empty(n_boot, dtype=bool)
    # Working set per replicate: two (rows+1) float64 buffers, the draws and counts, positive temps.
    per_rep = 8 * (3 * (n + 1) + 3 * n_groups + 10 * int(y.sum()))
    chunk = int(max(1, min(n_boot, max_chunk_bytes // per_rep)))
    work = np.empty((2 if "ece" in metrics else 1, chunk, n + 1))
    # int64 draws consume the stream value by value, so the replicates do not depend on the chunk.
    rng = np.random.default_rng(seed)
    for lo in range(0, n_boot, chunk):
        k = min(chunk, n_boot - lo)
        # Exact multinomial counts per group; the extra last column is the zero pad.
        counts = np.zeros((k, n_groups + 1))
        counts[:, :n_groups] = group_counts(rng, n_groups, k)
        for name, r in ranked.items():
            got = _metrics_from_counts(r, counts, metrics, ece_bins, work)
            for m in metrics:
                reps[name][m][lo : lo + k] = got[m]
        valid[lo : lo + k] = got["valid"]  # depends on the counts and y only, not the scorer
    keep = np.flatnonzero(valid)

    result: dict[str, Any] = {
        "method": "lead-clustered percentile bootstrap",
        "n_boot": int(n_boot),
        "valid": int(len(keep)),
        "skipped_one_class": int(n_boot - len(keep)),
        "alpha": float(alpha),
        "seed": int(seed),
        "rows": int(n),
        "groups": int(n_groups),
        "ece_bins": int(ece_bins),
        "scorers": {
            name: {
                m: percentile_interval(reps[name][m][keep], point[name][m], alpha) for m in metrics
            }
            for name in arrays
        },
        "differences": {},
        "ratios": {},
    }
    for a, b in pairs:
        entry = {}
        for m in metrics:
            diff = reps[a][m][keep] - reps[b][m][keep]
            entry[m] = percentile_interval(diff, point[a][m] - point[b][m], alpha)
            better = diff > 0 if HIGHER_IS_BETTER[m] else diff < 0
            entry[m]["share_first_better"] = float(better.mean()) if len(keep) else None
        result["differences"][f"{a}_vs_{b}"] = entry
    for a, b in ratios:
        entry = {}
        for m in (m for m in metrics if m in RATIO_METRICS):
            with np.errstate(divide="ignore", invalid="ignore"):  # a 0 denominator -> inf / nan
                ratio = reps[a][m][keep] / reps[b][m][keep]
                entry[m] = percentile_interval(ratio, np.divide(point[a][m], point[b][m]), alpha)
        result["ratios"][f"{a}_over_{b}"] = entry
    log.info(
        "clustered bootstrap: %d replicates (%d skipped), %d rows in %d groups, %d scorers, %.1fs",
        n_boot, n_boot - len(keep), n, n_groups, len(arrays), time.perf_counter() - started,
    )  # fmt: skip
    if not len(keep):
        log.warning("clustered bootstrap: every replicate had a single class; no intervals")
    return result


def format_intervals(result: Mapping[str, Any], digits: int = 4) -> str:
    """The output of ``clustered_bootstrap`` as aligned text lines, one per scorer/comparison and metric."""

    def fmt(x, sign=""):
        return "n/a" if x is None else f"{x:{sign}.{digits}f}"

    lines = [
        f"{result['method']}: {result['valid']} of {result['n_boot']} replicates, "
        f"{result['groups']} groups, {result['rows']} rows, {1 - result['alpha']:.0%} intervals"
    ]
    for section, sign in (("scorers", ""), ("differences", "+"), ("ratios", "")):
        for name, entry in result[section].items():
            for m, iv in entry.items():
                line = f"{name:<28} {m:<8} {fmt(iv['value'], sign)} [{fmt(iv['low'], sign)}, {fmt(iv['high'], sign)}]"
                if "share_first_better" in iv and iv["share_first_better"] is not None:
                    line += f"  first better in {iv['share_first_better']:.0%}"
                lines.append(line)
    return "\n".join(lines)
