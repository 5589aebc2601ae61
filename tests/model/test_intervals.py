"""Lead-clustered bootstrap: exact weighted metrics, interval behaviour, pairing, reproducibility."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from models.intervals import (
    METRICS,
    _metrics_from_counts,
    _rank,
    clustered_bootstrap,
    format_intervals,
    weighted_metrics,
)
from models.metrics import expected_calibration_error, score_report


def _leads(n_leads: int, rows_per_lead: int, seed: int = 0, duplicate: bool = False):
    """Leads with a latent propensity; each lead has several snapshot rows (duplicates if asked)."""
    rng = np.random.default_rng(seed)
    q = rng.beta(1, 6, size=n_leads)
    groups = np.repeat(np.arange(n_leads), rows_per_lead)
    if duplicate:  # every row of a lead is the same row: outcome and score
        y = np.repeat(rng.uniform(size=n_leads) < q, rows_per_lead).astype(int)
        p = np.repeat(np.clip(q + rng.normal(0, 0.05, n_leads), 0, 1), rows_per_lead)
    else:
        y = (rng.uniform(size=groups.size) < q[groups]).astype(int)
        p = np.clip(q[groups] + rng.normal(0, 0.05, groups.size), 0, 1)
    return y, p, groups


@pytest.mark.parametrize("ties", ["none", "heavy", "binary"])
def test_weighted_metrics_equal_sklearn_and_repeated_rows(ties):
    rng = np.random.default_rng(3)
    n = 2_000
    y = (rng.uniform(size=n) < 0.25).astype(int)
    p = np.clip(rng.normal(0.3 + 0.2 * y, 0.15), 0, 1)
    if ties == "heavy":
        p = np.round(p, 1)  # ~10 distinct scores, positives and negatives tied
    elif ties == "binary":
        p = (p > 0.4).astype(float)
    w = rng.integers(0, 4, size=n)  # bootstrap-like counts, many zeros
    got = weighted_metrics(y, p, w, ece_bins=7)
    rep_y, rep_p = np.repeat(y, w), np.repeat(p, w)
    for reference in (
        {"roc_auc": roc_auc_score(y, p, sample_weight=w)},
        {"pr_auc": average_precision_score(y, p, sample_weight=w)},
        {"roc_auc": roc_auc_score(rep_y, rep_p), "pr_auc": average_precision_score(rep_y, rep_p)},
        {"ece": expected_calibration_error(rep_y, rep_p, 7)},
    ):
        for metric, value in reference.items():
            assert got[metric] == pytest.approx(value, abs=1e-12), metric


def test_a_chunk_of_replicates_is_scored_row_by_row_exactly():
    # Several replicates at once (the flattened running sum spans them), one of them single-class.
    rng = np.random.default_rng(4)
    n_groups = 60
    groups = rng.integers(0, n_groups, size=300)
    y = (rng.uniform(size=300) < 0.3).astype(int)
    p = np.round(rng.uniform(size=300) * 0.5 + 0.3 * y, 1)
    counts = rng.multinomial(n_groups, np.full(n_groups, 1 / n_groups), size=5).astype(float)
    counts[2] = np.where(np.isin(np.arange(n_groups), groups[y == 1]), 0, counts[2])  # no positives
    padded = np.hstack([counts, np.zeros((5, 1))])
    got = _metrics_from_counts(_rank(y, p, groups, pad=n_groups), padded, METRICS, 5)
    assert got["valid"].tolist() == [True, True, False, True, True]
    assert np.isnan(got["roc_auc"][2])
    for i in (0, 1, 3, 4):
        w = counts[i][groups]
        assert got["roc_auc"][i] == pytest.approx(roc_auc_score(y, p, sample_weight=w), abs=1e-12)
        assert got["pr_auc"][i] == pytest.approx(
            average_precision_score(y, p, sample_weight=w), abs=1e-12
        )
        ece = expected_calibration_error(
            np.repeat(y, w.astype(int)), np.repeat(p, w.astype(int)), 5
        )
        assert got["ece"][i] == pytest.approx(ece, abs=1e-12)


def test_point_estimates_are_the_score_report():
    y, p, groups = _leads(300, 3)
    result = clustered_bootstrap(y, {"model": p}, groups, n_boot=20)
    report = score_report(y, p, ece_bins=20)
    for metric in METRICS:
        assert result["scorers"]["model"][metric]["value"] == pytest.approx(
            report[metric], abs=1e-12
        )


def test_interval_contains_the_point_and_narrows_with_more_clusters():
    widths = []
    for n_leads in (100, 2_000):
        y, p, groups = _leads(n_leads, 3, seed=1)
        result = clustered_bootstrap(y, {"model": p}, groups, n_boot=300, seed=2)
        model = result["scorers"]["model"]
        # ECE is biased upwards under resampling, so its point estimate may sit at the low end.
        for metric in ("roc_auc", "pr_auc"):
            assert model[metric]["low"] <= model[metric]["value"] <= model[metric]["high"]
        widths.append({m: model[m]["high"] - model[m]["low"] for m in METRICS})
    for metric in METRICS:
        assert widths[1][metric] < 0.5 * widths[0][metric], metric


def test_clustered_interval_is_wider_than_rows_when_a_lead_repeats_its_rows():
    # 5 identical snapshots per lead carry the information of one row: a row-level bootstrap
    # pretends there are 5x more independent rows and is about sqrt(5) ~ 2.2x too narrow.
    y, p, groups = _leads(400, 5, seed=3, duplicate=True)
    clustered = clustered_bootstrap(y, {"model": p}, groups, n_boot=400)
    rows = clustered_bootstrap(y, {"model": p}, np.arange(len(y)), n_boot=400)
    for metric in ("roc_auc", "pr_auc"):
        wide = clustered["scorers"]["model"][metric]
        narrow = rows["scorers"]["model"][metric]
        assert wide["high"] - wide["low"] > 1.6 * (narrow["high"] - narrow["low"]), metric
    assert clustered["groups"] == 400 and rows["groups"] == 2_000


def test_identical_scorers_differ_by_exactly_zero_and_a_real_gap_is_found():
    y, p, groups = _leads(500, 3, seed=4)
    noisy = np.clip(p + np.random.default_rng(5).normal(0, 0.3, p.size), 0, 1)
    result = clustered_bootstrap(
        y,
        {"model": p, "copy": p.copy(), "noisy": noisy},
        groups,
        n_boot=200,
        pairs=[("model", "copy"), ("model", "noisy")],
        ratios=[("model", "copy")],
    )
    for metric in METRICS:
        same = result["differences"]["model_vs_copy"][metric]
        assert (same["value"], same["low"], same["high"]) == (0.0, 0.0, 0.0)
        assert same["share_first_better"] == 0.0
    for metric in ("roc_auc", "pr_auc"):
        ratio = result["ratios"]["model_over_copy"][metric]
        assert (ratio["value"], ratio["low"], ratio["high"]) == (1.0, 1.0, 1.0)
        # Paired replicates: a real gap has an interval clear of zero.
        gap = result["differences"]["model_vs_noisy"][metric]
        assert gap["low"] > 0 and gap["share_first_better"] == 1.0


def test_same_seed_same_result_whatever_the_chunk_size():
    y, p, groups = _leads(200, 4, seed=6)
    scores = {"model": p, "baseline": p**2}
    first = clustered_bootstrap(y, scores, groups, n_boot=50, seed=7)
    chunked = clustered_bootstrap(y, scores, groups, n_boot=50, seed=7, max_chunk_bytes=1)
    other = clustered_bootstrap(y, scores, groups, n_boot=50, seed=8)
    assert first == chunked
    assert first["scorers"]["model"]["roc_auc"] != other["scorers"]["model"]["roc_auc"]


def test_single_class_replicates_are_skipped_and_counted():
    # One positive lead among ten: about (9/10)^10 = 35% of the replicates draw no positive.
    groups = np.repeat(np.arange(10), 2)
    y = np.zeros(20, dtype=int)
    y[:2] = 1
    p = np.linspace(0.9, 0.1, 20)
    result = clustered_bootstrap(y, {"model": p}, groups, n_boot=400)
    assert 0.2 * 400 < result["skipped_one_class"] < 0.5 * 400
    assert result["valid"] + result["skipped_one_class"] == 400
    assert result["scorers"]["model"]["roc_auc"]["low"] == 1.0  # every valid replicate is perfect


def test_output_is_json_ready_printable_and_skips_absent_scorers():
    y, p, groups = _leads(100, 2, seed=8)
    result = clustered_bootstrap(y, {"model": p, "baseline": p**3}, groups, n_boot=30)
    assert set(result["differences"]) == {"model_vs_baseline"} and result["ratios"] == {}
    assert json.loads(json.dumps(result, allow_nan=False)) == result
    text = format_intervals(result)
    assert "model_vs_baseline" in text and "roc_auc" in text and "first better in" in text


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="0/1"):
        clustered_bootstrap([0, 2], {"model": [0.1, 0.2]}, [1, 2])
    with pytest.raises(ValueError, match="shape"):
        clustered_bootstrap([0, 1], {"model": [0.1, 0.2]}, [1, 2, 3])
    with pytest.raises(ValueError, match="subset"):
        clustered_bootstrap([0, 1], {"model": [0.1, 0.2]}, [1, 2], metrics=["log_loss"])


def test_score_report_ece_bins_and_top_decile_calibration():
    # 20 rows: the top decile is the two highest scores (0.9 with a win, 0.7 with a loss).
    p = np.array([0.9, 0.7] + [0.1] * 18)
    y = np.array([1, 0, 1] + [0] * 17)
    report = score_report(y, p)
    assert report["ece_bins"] == 20
    # 20 bins of one row each: mean |y - p| = (0.1 + 0.7 + 0.9 + 17 x 0.1) / 20.
    assert report["ece"] == pytest.approx(0.17)
    assert report["top_decile_predicted"] == pytest.approx(0.8)
    assert report["top_decile_observed"] == pytest.approx(0.5)
    # Inside the decile, 10 bins over two rows = one row per bin: (|1 - 0.9| + |0 - 0.7|) / 2.
    assert report["ece_top_decile"] == pytest.approx(0.4)
    assert report["lift_top_decile"] == pytest.approx(5.0)  # 0.5 / base rate 0.1
    assert score_report(y, p, ece_bins=10)["ece"] == pytest.approx(0.15)  # bins of two rows
