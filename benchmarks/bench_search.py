"""Benchmark: the hyperparameter search's cost as a ratio to one bare ``lightgbm.train``.

Target (issue 14): on ~1M training snapshots, what ``models.search.search_params`` costs,
reported as a ratio to one bare ``lightgbm.train`` with the same base params, both measured in
this one process (one after the other, so the same load hits both):

- ``search``: ``search_params(x_train, y_train, x_stop, y_stop, base, ...)`` called exactly as
  ``pipelines.modeling.fit_settings`` calls it: base = ``scaled_defaults(rows, positives)``
  overridden by params.yaml's ``train.lightgbm``; round cap and patience from
  ``scaled_rounds(base learning rate)`` unless ``train.num_boost_round`` /
  ``early_stopping_rounds`` are set; budget ``train.search`` (trials, timeout_s, seed;
  ``--trials`` / ``--timeout`` override it); ``train.monotone_increasing``. Every trial is
  logged by ``search_params`` itself.
- ``reference``: ``lgb.train(params, lgb.Dataset(x_train, y_train), num_boost_round=R)`` with
  exactly the dict the search's base trial (trial 0) handed to ``lgb.train`` (recorded by
  wrapping ``lgb.train``) and R = the trees the base trial chose (its best iteration): the work
  of one fit of the chosen size, without validation set or early-stopping patience. Dataset
  construction is timed with it. Check (exit 1 if not): its validation log loss equals the base
  trial's (deterministic=true: the same model).

Data (seeded): a synthetic matrix of ``--rows`` rows (default 1,000,000): 40 numeric features
(6 counts named as params.yaml's monotone features, with a positive effect; 3% missing values in
some; about half are noise) and 3 pandas category columns (8, 30 and 15 levels), labels drawn
from a known logistic model with interactions (positive rate ~3%); validation (the part of
validation the search early-stops on) ``--rows / 4`` rows drawn the same way. Or ``--training
DIR``: a training set written by ``leadscore training-set`` (train/validation parquet), prepared
as ``run_train`` prepares it (category grouping, early-stopping part of validation by lead).

Memory: ``ru_maxrss``; the high-water mark is reset (``/proc/self/clear_refs``) before each
measurement, so "peak Δ" is its peak minus the RSS before it. "others" is the CPU time other
processes used meanwhile (LightGBM's OpenMP threads slow down sharply when a core is taken).
Results: a table on stdout and JSON in ``--out`` (default ``benchmarks/out/search_n{rows}.json``).

    .venv/bin/python benchmarks/bench_search.py                           # 1,000,000 rows
    .venv/bin/python benchmarks/bench_search.py --rows 50000 --trials 3   # smoke (< 1 min)
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import logging
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from _process import REPO, MiB
from _process import busy_seconds as _busy_seconds
from _process import cores as _cores
from _process import cpu_seconds as _cpu_seconds
from _process import load_average as _load
from _process import maxrss_bytes as _maxrss_bytes
from _process import reset_peak as _reset_peak
from _process import rss_bytes as _rss_bytes
from _process import setup_path as _setup_path

log = logging.getLogger("bench_search")

POSITIVE_RATE = 0.03
N_NUMERIC = 40
MISSING_SHARE = 0.03  # of the values of the features that have missing values
LOGLOSS_ATOL = 1e-6  # reference vs base trial (expected: the same model, equal to ~1e-12)
PROBABILITY_CLIP = 1e-15


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------
def _levels(prefix: str, n: int) -> list[str]:
    return [f"{prefix}_{i:02d}" for i in range(n)]


# Category columns: name -> (levels, Zipf exponent of their frequencies).
CATEGORIES = {"source": (8, 0.8), "country": (30, 1.2), "industry": (15, 0.6)}


def _category_effects(seed: int) -> dict[str, np.ndarray]:
    """Fixed (per seed) log-odds effect of each category level."""
    rng = np.random.default_rng([seed, 1])
    return {name: rng.normal(0, 0.4, n) for name, (n, _) in CATEGORIES.items()}


def _logit(x: pd.DataFrame, codes: dict[str, np.ndarray], effects: dict[str, np.ndarray]):
    """The known model's log-odds, without its intercept."""
    f = x.fillna(0.0).to_numpy()
    mono = f[:, :6]  # the monotone count features
    z = 0.35 * np.log1p(mono[:, 0]) + 0.6 * np.log1p(mono[:, 1]) + 0.8 * np.log1p(mono[:, 2])
    z += 0.5 * np.log1p(mono[:, 3]) + 0.4 * np.log1p(mono[:, 4]) + 0.3 * np.log1p(mono[:, 5])
    g = f[:, 6:]  # x_06 .. x_39; x_22 .. x_39 are noise
    z += 0.5 * g[:, 0] - 0.4 * g[:, 1] + 0.3 * g[:, 2] + 0.25 * np.tanh(g[:, 3])
    z += 0.6 * (g[:, 4] > 1.0) - 0.5 * (g[:, 5] < -0.5) + 0.2 * np.sin(2 * g[:, 6])
    z += 0.3 * np.log1p(np.abs(g[:, 7])) + 0.15 * g[:, 8:16].sum(axis=1) / 2
    z += 0.35 * g[:, 0] * g[:, 1] + 0.3 * (g[:, 2] > 0) * (mono[:, 1] > 0)  # interactions
    z += 0.25 * g[:, 9] * g[:, 10] - 0.2 * np.maximum(g[:, 11], 0) * g[:, 12]
    for name, c in codes.items():
        z += effects[name][c]
    z += 0.4 * (codes["industry"] % 3 == 0) * g[:, 3]  # a category x numeric interaction
    return z


def _draw(rows: int, rng: np.random.Generator, monotone: list[str], effects):
    numeric = {}
    for i in range(N_NUMERIC):
        name = monotone[i] if i < len(monotone) else f"x_{i:02d}"
        if i < 6:  # counts: most leads none, a few many
            v = rng.poisson(rng.gamma(0.3, 1.0 + i, rows)).astype(np.float64)
        elif i % 4 == 1:
            v = rng.lognormal(0, 1, rows) - np.exp(0.5)  # skewed, centred
        elif i % 4 == 2:
            v = rng.uniform(-2, 2, rows)
        else:
            v = rng.normal(0, 1, rows)
        if i % 5 == 4:
            v[rng.random(rows) < MISSING_SHARE] = np.nan
        numeric[name] = v
    x = pd.DataFrame(numeric)
    codes = {}
    for name, (n, zipf) in CATEGORIES.items():
        weights = 1.0 / np.arange(1, n + 1) ** zipf
        codes[name] = rng.choice(n, size=rows, p=weights / weights.sum())
        x[name] = pd.Categorical.from_codes(codes[name], categories=_levels(name, n))
    return x, _logit(x[list(numeric)], codes, effects)


def _intercept(z: np.ndarray, rate: float) -> float:
    """The intercept that gives the mean probability ``rate`` (bisection)."""
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if np.mean(1 / (1 + np.exp(-(z + mid)))) < rate:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def synthetic(rows: int, valid_rows: int, seed: int, monotone: list[str]) -> dict:
    """Train and validation matrices, labels and the validation rows' true probabilities."""
    rng = np.random.default_rng(seed)
    effects = _category_effects(seed)
    names = list(monotone[:6]) + [f"m_{i}" for i in range(len(monotone), 6)]
    x_train, z_train = _draw(rows, rng, names, effects)
    x_valid, z_valid = _draw(valid_rows, rng, names, effects)
    b0 = _intercept(z_train, POSITIVE_RATE)
    p_train = 1 / (1 + np.exp(-(z_train + b0)))
    p_valid = 1 / (1 + np.exp(-(z_valid + b0)))
    return {
        "x_train": x_train,
        "y_train": (rng.random(rows) < p_train).astype(int),
        "x_valid": x_valid,
        "y_valid": (rng.random(valid_rows) < p_valid).astype(int),
        "p_valid": p_valid,
        "source": f"synthetic (seed {seed})",
    }


def project_training(training: Path, params: dict) -> dict:
    """A ``leadscore training-set`` folder, prepared as ``run_train`` prepares it: category
    grouping fitted on train, the early-stopping part of validation (by lead)."""
    from models.frame import feature_matrix, feature_names
    from pipelines.modeling import _labels, calibration_holdout, read_split
    from pipelines.params import category_grouper, section

    train, valid = read_split(training, "train"), read_split(training, "validation")
    names = feature_names(train)
    x_train = feature_matrix(train, names)
    grouper = category_grouper(params).fit(x_train)
    x_train, x_valid = grouper.transform(x_train), feature_matrix(valid, names, grouper)
    y_train, y_valid = _labels(train, "train"), _labels(valid, "validation")
    fraction = float(section(params, "calibration").get("holdout_fraction", 0.5))
    held = calibration_holdout(valid["lead_id"], fraction)
    return {
        "x_train": x_train,
        "y_train": y_train,
        "x_valid": x_valid[~held],
        "y_valid": y_valid[~held],
        "p_valid": None,
        "source": str(training),
    }


def _log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


# ------------------------------------------------------------------------------------------------
# Measurement
# ------------------------------------------------------------------------------------------------
def _record_lgb_train(calls: list[dict]) -> None:
    """Wrap ``lightgbm.train`` to record each call's params, rounds actually run and seconds
    (after early stopping ``lgb.train`` returns the booster cut to its best iteration)."""
    import lightgbm as lgb

    original = lgb.train

    @functools.wraps(original)
    def recording(params, train_set, num_boost_round=100, *args, **kwargs):
        call = {"params": copy.deepcopy(dict(params)), "num_boost_round": num_boost_round}
        call["rounds"] = 0
        calls.append(call)

        def count(env) -> None:
            call["rounds"] = env.iteration - env.begin_iteration + 1

        count.order = 0  # before early stopping, which ends a round by raising
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), count]
        t = time.perf_counter()
        try:
            return original(params, train_set, num_boost_round, *args, **kwargs)
        finally:
            call["seconds"] = time.perf_counter() - t

    lgb.train = recording


class _Meter:
    """Wall, CPU, other processes' CPU and peak memory of a block."""

    def __enter__(self) -> _Meter:
        self.rss_before = _rss_bytes()
        self.reset = _reset_peak()
        self.cpu, self.busy, self.t = _cpu_seconds(), _busy_seconds(), time.perf_counter()
        self.load_before = _load()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self.t
        self.cpu = _cpu_seconds() - self.cpu
        self.others = max(0.0, _busy_seconds() - self.busy - self.cpu)
        self.peak_delta = _maxrss_bytes() - self.rss_before

    def as_dict(self) -> dict:
        return {
            "seconds": self.seconds,
            "cpu": self.cpu,
            "others_cpu": self.others,
            "peak_increment": self.peak_delta,
            "peak_reset": self.reset,
            "load_before": self.load_before,
            "load_after": _load(),
        }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="train rows (default 1,000,000)")
    ap.add_argument("--valid-rows", type=int, default=None, help="default: --rows / 4")
    ap.add_argument("--seed", type=int, default=7, help="data seed")
    ap.add_argument("--params", default=str(REPO / "params.yaml"))
    ap.add_argument("--trials", type=int, default=None, help="default: train.search.trials")
    ap.add_argument("--timeout", type=float, default=None, help="default: train.search.timeout_s")
    ap.add_argument(
        "--training",
        default=None,
        help="a `leadscore training-set` folder to use instead of synthetic data (--rows ignored)",
    )
    ap.add_argument("--out", default=None, help="JSON (default benchmarks/out/search_n{rows}.json)")
    args = ap.parse_args(argv)

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    _setup_path()
    import lightgbm as lgb
    import optuna

    from models.search import search_params
    from pipelines.modeling import search_setup
    from pipelines.params import load_params, section

    params = load_params(args.params)
    settings = section(params, "train")
    monotone = list(settings.get("monotone_increasing", []))
    log.info(
        "machine: %d cores available (os.cpu_count() = %s), Python %s, LightGBM %s, Optuna %s; "
        "load average %s",
        _cores(), os.cpu_count(), sys.version.split()[0], lgb.__version__, optuna.__version__,
        _load(all_three=True),
    )  # fmt: skip

    t = time.perf_counter()
    if args.training:
        data = project_training(Path(args.training), params)
    else:
        valid_rows = args.valid_rows or max(1, args.rows // 4)
        data = synthetic(args.rows, valid_rows, args.seed, monotone)
    x_train, y_train, x_valid, y_valid = (
        data[k] for k in ("x_train", "y_train", "x_valid", "y_valid")
    )
    n_rows, n_pos = len(y_train), int(y_train.sum())
    n_cat = int(sum(isinstance(d, pd.CategoricalDtype) for d in x_train.dtypes))
    log.info(
        "data (%s, %.1f s): train %s rows x %d features (%d categorical), positive rate %.4f; "
        "validation %s rows, positive rate %.4f",
        data["source"], time.perf_counter() - t, f"{n_rows:,}", x_train.shape[1], n_cat,
        n_pos / n_rows, f"{len(y_valid):,}", y_valid.mean(),
    )  # fmt: skip
    oracle = None if data["p_valid"] is None else _log_loss(y_valid, data["p_valid"])
    if oracle is not None:
        log.info("validation log loss of the true probabilities: %.5f", oracle)

    # ---- exactly as pipelines.modeling.fit_settings
    setup = search_setup(settings, n_rows, n_pos)
    scaled, base, rounds, budget = setup.scaled, setup.base, setup.rounds, dict(setup.budget)
    if args.trials is not None:
        budget["trials"] = args.trials
    if args.timeout is not None:
        budget["timeout_s"] = args.timeout
    n_trials = int(budget.get("trials", 0))
    timeout_s = None if budget.get("timeout_s") is None else float(budget["timeout_s"])
    monotone_used = monotone if args.training else [m for m in monotone if m in x_train.columns]
    log.info("base params: %s", json.dumps(base, sort_keys=True))
    log.info(
        "search: %d trials, timeout %s s, seed %s; round cap %d, patience %d",
        n_trials, timeout_s, budget.get("seed", 0), rounds["num_boost_round"],
        rounds["early_stopping_rounds"],
    )  # fmt: skip

    calls: list[dict] = []
    _record_lgb_train(calls)
    with _Meter() as search_meter:
        result = search_params(
            x_train, y_train, x_valid, y_valid, base,
            n_trials=n_trials,
            timeout_s=timeout_s,
            num_boost_round=rounds["num_boost_round"],
            early_stopping_rounds=rounds["early_stopping_rounds"],
            monotone_increasing=monotone_used,
            seed=int(budget.get("seed", 0)),
        )  # fmt: skip
    search_calls = list(calls)
    trials = result.trials
    base_trees = int(trials["trees"].iloc[0])
    best_trees = int(result.best_iteration)
    log.info(
        "search done: %.1f s, %d trials, load average %s", search_meter.seconds, result.n_trials,
        _load(),
    )  # fmt: skip

    # ---- the reference: one bare lgb.train of the base trial's params and chosen size
    ref_params = dict(search_calls[0]["params"])
    log.info("reference: bare lgb.train, %d rounds (the base trial's trees) ...", base_trees)
    with _Meter() as ref_meter:
        t0 = time.perf_counter()
        train_set = lgb.Dataset(x_train, label=y_train, params=dict(ref_params)).construct()
        construct_s = time.perf_counter() - t0
        booster = lgb.train(dict(ref_params), train_set, num_boost_round=base_trees)
    ref_rounds = calls[-1]["rounds"]
    ref_loss = _log_loss(y_valid, booster.predict(x_valid))
    ok = ref_rounds == base_trees and abs(ref_loss - result.base_score) <= LOGLOSS_ATOL
    log.info(
        "reference: %.1f s (Dataset.construct %.1f s); validation log loss %.6f (base trial "
        "%.6f); load average %s",
        ref_meter.seconds, construct_s, ref_loss, result.base_score, _load(),
    )  # fmt: skip

    # ---- report
    ref_s, search_s = ref_meter.seconds, search_meter.seconds
    total_rounds = sum(c["rounds"] for c in search_calls)
    ratio = search_s / ref_s
    rows = [
        ("reference: bare lgb.train", ref_meter, 1, base_trees, ref_rounds, ref_loss),
        ("search_params", search_meter, result.n_trials, best_trees, total_rounds, None),
    ]
    print()
    print(
        f"{n_rows:,} train rows x {x_train.shape[1]} features ({n_cat} categorical), "
        f"{len(y_valid):,} validation rows, {n_pos:,} positives; budget {n_trials} trials / "
        f"{timeout_s} s; LightGBM {lgb.__version__}, num_threads "
        f"{ref_params.get('num_threads', 'default')}; {_cores()} cores"
    )
    header = (
        f"{'measurement':<28} {'seconds':>8} {'cpu s':>7} {'others':>7} {'trials':>6} "
        f"{'trees':>6} {'rounds run':>10} {'vs bare':>8} {'peak Δ MiB':>11}"
    )
    print(header)
    print("-" * len(header))
    for name, m, n, trees, run, _ in rows:
        print(
            f"{name:<28} {m.seconds:>8.1f} {m.cpu:>7.1f} {m.others:>7.1f} {n:>6} {trees:>6} "
            f"{run:>10,} {m.seconds / ref_s:>8.2f} {m.peak_delta / MiB:>11.0f}"
        )
    # Trial 0 inside the search: one early-stopped fit of the base params (no CPU figures).
    base_s = float(trials["seconds"].iloc[0])
    base_row = f"{base_s:>8.1f} {'':>7} {'':>7} {1:>6} {base_trees:>6}"
    base_row += f" {search_calls[0]['rounds']:>10,} {base_s / ref_s:>8.2f}"
    print(f"{'  of which trial 0 (base)':<28} {base_row}")
    per_trial = f"{search_s / result.n_trials:>8.1f} {'':>7} {'':>7} {'':>6} {'':>6}"
    per_trial += f" {total_rounds / result.n_trials:>10,.0f} {ratio / result.n_trials:>8.2f}"
    print(f"{'  per trial':<28} {per_trial}")
    print()
    in_train = sum(c["seconds"] for c in search_calls)
    print(
        f"time per boosting round: reference {1000 * ref_s / ref_rounds:.1f} ms, search "
        f"{1000 * search_s / total_rounds:.1f} ms ({1000 * in_train / total_rounds:.1f} ms in "
        f"lgb.train, which builds the Datasets and evaluates validation each round; "
        f"{search_s - in_train:.1f} s outside it: Optuna, the search's own work)"
    )
    print(
        f"search / bare train = {ratio:.2f}x ({ratio / result.n_trials:.2f}x per trial; "
        f"{total_rounds / ref_rounds:.2f}x the boosting rounds). Base trial: {base_trees} trees, "
        f"validation log loss {result.base_score:.5f}; best trial {result.best_trial}: "
        f"{best_trees} trees, {result.best_score:.5f} "
        f"({(result.best_score - result.base_score) / result.base_score:+.2%})"
        + (f"; true probabilities {oracle:.5f}" if oracle is not None else "")
        + f". Peak RSS of the process {_maxrss_bytes() / MiB:,.0f} MiB."
    )
    busy = search_meter.others + ref_meter.others
    if busy > 0.1 * (search_meter.cpu + ref_meter.cpu):
        print(
            f"warning: other processes used {busy:.0f} CPU s during the measurements: "
            "the machine was shared, absolute times are inflated"
        )
    if not ok:
        print(
            f"CHECK FAILED: the reference ran {ref_rounds} rounds (want {base_trees}) and its "
            f"validation log loss {ref_loss:.8f} differs from the base trial's "
            f"{result.base_score:.8f}"
        )

    out = Path(args.out or REPO / "benchmarks" / "out" / f"search_n{n_rows}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": _cores(),
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "lightgbm": lgb.__version__,
            "optuna": optuna.__version__,
        },
        "args": vars(args),
        "data": {
            "source": data["source"],
            "rows": n_rows,
            "positives": n_pos,
            "valid_rows": len(y_valid),
            "valid_positives": int(y_valid.sum()),
            "features": x_train.shape[1],
            "categorical": n_cat,
            "oracle_valid_logloss": oracle,
        },
        "scaled_defaults": scaled,
        "base_params": base,
        "rounds": rounds,
        "budget": {"trials": n_trials, "timeout_s": timeout_s, "seed": budget.get("seed", 0)},
        "monotone_increasing": monotone_used,
        "search": {**search_meter.as_dict(), **result.to_dict()},
        "search_lgb_calls": [
            {k: c[k] for k in ("num_boost_round", "rounds", "seconds")} for c in search_calls
        ],
        "reference": {
            **ref_meter.as_dict(),
            "construct_s": construct_s,
            "rounds": ref_rounds,
            "valid_logloss": ref_loss,
            "params": ref_params,
        },
        "ratio": ratio,
        "ratio_per_trial": ratio / result.n_trials,
        "rounds_ratio": total_rounds / ref_rounds,
        "search_seconds_in_lgb_train": in_train,
        "base_trees": base_trees,
        "base_trial_seconds": base_s,
        "base_trial_rounds": search_calls[0]["rounds"],
        "best_trees": best_trees,
        "base_logloss": result.base_score,
        "best_logloss": result.best_score,
        "peak_rss": _maxrss_bytes(),
        "check_passed": ok,
    }
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"results: {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
