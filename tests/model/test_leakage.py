"""The leakage alarm: a feature alone, out of time, that tells the outcome too well is named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score

from models.leakage import (
    LeakageError,
    LeakageRules,
    _auc_from_counts,
    check_leakage,
    check_model,
    single_feature_scan,
    suspects,
    warnings_for,
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=2, max_size=60).filter(
        lambda rows: len({y for _, y in rows}) == 2
    )
)
def test_auc_from_grouped_counts_is_the_roc_auc(rows):
    score = np.array([s for s, _ in rows], dtype=float)
    y = np.array([y for _, y in rows], dtype=float)
    values = np.unique(score)
    pos = np.array([((score == v) & (y == 1)).sum() for v in values], dtype=float)
    neg = np.array([((score == v) & (y == 0)).sum() for v in values], dtype=float)
    assert _auc_from_counts(values, pos, neg) == pytest.approx(roc_auc_score(y, score))


def _splits(seed: int = 0, n: int = 4000):
    """Two periods of leads: weak honest signals, and one field written after the outcome."""
    rng = np.random.default_rng(seed)

    def period(n: int) -> tuple[pd.DataFrame, np.ndarray]:
        signal = rng.normal(size=n)
        y = (rng.random(n) < 1 / (1 + np.exp(-(-2.5 + 0.8 * signal)))).astype(int)
        source = np.where(rng.random(n) < 0.5 + 0.1 * y, "referral", "paid_search")
        frame = pd.DataFrame(
            {
                "visits": signal + rng.normal(size=n),
                "source": pd.Categorical(source, categories=["paid_search", "referral"]),
                "noise": rng.normal(size=n),
                # A rep fills the deal size in once the lead has bought: present for winners.
                "deal_size": np.where(y == 1, rng.lognormal(10, 1, n), np.nan),
            }
        )
        frame.loc[rng.random(n) < 0.02, "deal_size"] = 5_000.0  # and for a few others
        return frame, y

    return (*period(n), *period(n))


def test_a_field_filled_after_the_outcome_is_named_and_stops_training():
    x_train, y_train, x_valid, y_valid = _splits()
    scan = single_feature_scan(x_train, y_train, x_valid, y_valid)
    assert scan["feature"].iloc[0] == "deal_size" and scan["auc"].iloc[0] > 0.95
    honest = scan.set_index("feature").loc[["visits", "source", "noise"], "auc"]
    assert (honest < 0.75).all() and 0.4 < honest["noise"] < 0.6
    row = scan.set_index("feature").loc["deal_size"]
    assert row["present_converted"] == 1.0 and row["present_other"] < 0.05
    with pytest.raises(LeakageError) as stop:
        check_leakage(scan)
    message = str(stop.value)
    assert "\n" not in message
    assert "deal_size: AUC " in message and "filled for 100% of converted leads" in message
    assert "known only after the outcome?" in message and "train.allow_features" in message
    # Checked by the user and kept: training goes on.
    check_leakage(scan, LeakageRules(allow=("deal_size",)))


def test_chance_is_judged_by_won_leads_not_by_their_rows():
    # Validation: 2 won leads with 3 snapshots each, 300 other leads with 2 snapshots each; a
    # feature ranks the 6 positive rows on top by chance (they belong to 2 leads).
    rng = np.random.default_rng(0)
    x_train = pd.DataFrame({"active_days": rng.integers(0, 7, 1000)})
    y_train = (rng.uniform(size=1000) < 0.05).astype(int)
    y_valid = np.r_[np.ones(6, dtype=int), np.zeros(600, dtype=int)]
    x_valid = pd.DataFrame({"active_days": np.r_[np.full(6, 6), rng.integers(0, 7, 600)]})
    x_train.loc[y_train == 1, "active_days"] = 6  # the training split agrees: a real signal?
    leads = np.r_[np.repeat(["w1", "w2"], 3), np.repeat([f"o{i}" for i in range(300)], 2)]
    by_rows = single_feature_scan(x_train, y_train, x_valid, y_valid)
    by_leads = single_feature_scan(x_train, y_train, x_valid, y_valid, groups=leads)
    assert by_rows["auc"].iloc[0] == by_leads["auc"].iloc[0] > 0.9
    assert by_leads["se"].iloc[0] > 1.5 * by_rows["se"].iloc[0]
    assert by_leads["won_leads"].iloc[0] == 2 and by_rows["won_leads"].iloc[0] == 6
    # Six rows look sure; two leads do not (even with no floor on won leads).
    anyone = LeakageRules(min_won_leads=1)
    assert suspects(by_rows, anyone)["feature"].tolist() == ["active_days"]
    assert suspects(by_leads, anyone).empty
    # Under train.leakage.min_won_leads, no verdict stops training: a warning says why.
    assert suspects(by_rows).empty
    check_leakage(by_rows)
    lines = warnings_for(by_rows)
    assert lines[0].startswith("active_days: AUC") and "only 6 won lead(s)" in lines[-1]
    assert check_model(0.99, by_rows) is not None  # a warning, not a stop
    with pytest.raises(LeakageError):
        check_model(0.99, by_rows, anyone)


def test_honest_features_pass():
    x_train, y_train, x_valid, y_valid = _splits(seed=1)
    scan = single_feature_scan(
        x_train.drop(columns="deal_size"), y_train, x_valid.drop(columns="deal_size"), y_valid
    )
    assert suspects(scan).empty
    check_leakage(scan)


def test_far_above_every_other_feature_is_named_below_the_absolute_threshold():
    scan = pd.DataFrame(
        {
            "feature": ["duration", "age", "month", "noise"],
            "auc": [0.84, 0.70, 0.66, 0.50],
            "missing_auc": 0.5,
            "present_converted": 1.0,
            "present_other": 1.0,
            "levels": 20,
        }
    )
    found = suspects(scan, LeakageRules(max_auc=0.9, far_above=0.1, min_auc_far=0.75))
    assert found["feature"].tolist() == ["duration"]
    assert "next best 0.700" in found["why"].iloc[0]
    # Close to the next feature, or weak overall: no alarm.
    assert suspects(scan.assign(auc=[0.78, 0.70, 0.66, 0.5])).empty
    assert suspects(scan.assign(auc=[0.72, 0.55, 0.52, 0.5])).empty


def test_unseen_levels_and_missing_values_read_as_their_own_slot():
    x_train = pd.DataFrame({"stage": pd.Categorical(["a", "b", None, "a"] * 50)})
    x_valid = pd.DataFrame({"stage": pd.Series(["a", "c", None, "b"] * 50, dtype="str")})
    y = np.array([1, 0, 0, 0] * 50)
    scan = single_feature_scan(x_train, y, x_valid, y)
    assert scan["levels"].iloc[0] == 2
    assert scan["auc"].iloc[0] > 0.9  # "a" converts in both periods
    assert scan["present_converted"].iloc[0] == 1.0


def _training_folder(tmp_path, leak: bool):
    """A training-set folder (train and validation splits) with or without the leaky field."""
    x_train, y_train, x_valid, y_valid = _splits(seed=3)
    folder = tmp_path / "training"
    folder.mkdir()
    start = pd.Timestamp("2024-01-01")
    for name, x, y, offset in (
        ("train", x_train, y_train, 0),
        ("validation", x_valid, y_valid, 200),
    ):
        frame = x if leak else x.drop(columns="deal_size")
        frame = frame.assign(
            lead_id=[f"{name[0]}{i}" for i in range(len(frame))],
            as_of=start + pd.to_timedelta(offset + np.arange(len(frame)) % 150, "D"),
            label=y,
        )
        frame.to_parquet(folder / f"{name}.parquet", index=False)
    return folder


def _train(tmp_path, folder, allow=()):
    from pathlib import Path

    import yaml
    from typer.testing import CliRunner

    from pipelines.cli import app
    from pipelines.params import load_params

    params = load_params(Path(__file__).resolve().parents[2] / "params.yaml")
    params["train"]["allow_features"] = list(allow)
    params["train"]["monotone_increasing"] = []
    params["train"]["num_boost_round"] = 50
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    out = tmp_path / "model"
    result = CliRunner().invoke(
        app, ["train", "-p", str(path), "--training", str(folder), "--out", str(out)]
    )
    return result, out


def test_train_stops_and_names_the_column_before_writing_anything(tmp_path):
    result, out = _train(tmp_path, _training_folder(tmp_path, leak=True))
    assert result.exit_code == 1, result.output
    error = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "deal_size: AUC" in error[0], result.output
    assert "Traceback" not in result.output
    assert not out.exists()  # a refusal leaves nothing half written


def test_an_allowed_feature_trains_and_is_recorded_with_the_model(tmp_path):
    import json

    result, out = _train(tmp_path, _training_folder(tmp_path, leak=True), allow=["deal_size"])
    assert result.exit_code == 0, result.output
    meta = json.loads((out / "model_meta.json").read_text())
    assert meta["leakage_scan"]["allowed_features"] == ["deal_size"]
    assert meta["leakage_scan"]["strongest"][0]["feature"] == "deal_size"


def test_strong_features_are_named_in_warnings_and_a_too_good_model_stops():
    from models.leakage import check_model, warnings_for

    scan = pd.DataFrame(
        {
            "feature": ["authority", "timeline", "visits", "noise"],
            "auc": [0.82, 0.80, 0.74, 0.50],
            "missing_auc": 0.5,
            "present_converted": [0.89, 0.85, 1.0, 1.0],
            "present_other": [0.73, 0.64, 1.0, 1.0],
            "levels": 6,
        }
    )
    rules = LeakageRules(max_auc=0.9, warn_auc=0.8, max_model_auc=0.95)
    assert suspects(scan, rules).empty  # no stop: several strong features, none far above
    lines = warnings_for(scan, rules)
    assert [line.split(":")[0] for line in lines] == ["authority", "timeline"]
    assert "filled for 89% of converted leads, 73% of the others" in lines[0]
    assert warnings_for(scan, LeakageRules(warn_auc=0.8, allow=("authority",)))[0].startswith(
        "timeline"
    )
    assert check_model(0.85, scan, rules) is None
    assert "0.929: too good for lead data?" in check_model(0.929, scan, rules)
    with pytest.raises(LeakageError, match="authority 0.820"):
        check_model(0.96, scan, rules)
    # A feature the user checked and kept explains a model up to far_above over it: a warning.
    kept = LeakageRules(max_auc=0.9, warn_auc=0.8, max_model_auc=0.95, allow=("authority",))
    assert "too good" in check_model(0.96, scan.assign(auc=[0.90, 0.8, 0.74, 0.5]), kept)
    with pytest.raises(LeakageError):  # far above even the kept feature: a leak elsewhere
        check_model(0.96, scan, kept)


def test_a_small_validation_split_does_not_stop_training_on_chance():
    from models.leakage import auc_standard_error

    # 5 positives: an AUC of 0.91 could be 0.73 (two standard errors down): chance, maybe.
    se = auc_standard_error(0.91, 5, 600)
    assert 0.08 < se < 0.1
    scan = pd.DataFrame(
        {
            "feature": ["visits", "source"],
            "auc": [0.91, 0.62],
            "missing_auc": 0.5,
            "present_converted": 1.0,
            "present_other": 1.0,
            "levels": 20,
            "se": [se, auc_standard_error(0.62, 5, 600)],
        }
    )
    assert suspects(scan).empty
    # The same AUCs on a large split: named.
    large = scan.assign(se=[auc_standard_error(0.91, 300, 15_000), 0.01])
    assert suspects(large)["feature"].tolist() == ["visits"]
