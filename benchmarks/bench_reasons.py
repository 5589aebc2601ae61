"""Benchmark: SHAP contributions for reasons, ``models.contributions`` against LightGBM.

Target: reasons (top contributions for and against) for 1,000,000 leads, with exactly the values
LightGBM's ``pred_contrib`` gives. Three things are timed in this one process, on the same
feature matrix (best of ``--repeat``, interleaved so that drifting load hits all alike):

- ``predict``: bare ``booster.predict(x)`` (probabilities; the reference for "how fast can the
  model be evaluated at all");
- ``pred_contrib``: ``booster.predict(x, pred_contrib=True)`` (path-dependent TreeSHAP);
- ``ours``: ``TreeContributions(booster).contributions(x)`` (per-tree lookup tables; built once,
  its build time is reported apart).

LightGBM runs with the booster's own ``num_threads``; ours is single-threaded numpy.

Data: rows resampled (with replacement, ``--seed``) from ``data/training/*.parquet`` (written by
``make demo``), turned into the model's feature matrix by ``models.frame.feature_matrix`` with
the features of ``model_meta.json`` next to the model (text -> ``category``).

Correctness (exit status 1 if it fails): on ``--sample`` random rows, max |ours - pred_contrib|
<= 1e-9 and the top-3 features for and against (as ``models.reasons`` ranks them, with its
default 0.01 log-odds floor) are the same in every row. Peak memory: ``ru_maxrss`` with the
high-water mark reset (``/proc/self/clear_refs``) right before each timed call; "peak Δ" = that
peak minus the RSS before the call (it includes the returned array: rows x 75 float64).

    .venv/bin/python benchmarks/bench_reasons.py                  # 1,000,000 rows
    .venv/bin/python benchmarks/bench_reasons.py --rows 100000    # quick
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path

from _process import REPO, MiB
from _process import cores as _cores
from _process import cpu_seconds as _cpu_seconds
from _process import load_average as _load
from _process import maxrss_bytes as _maxrss_bytes
from _process import reset_peak as _reset_peak
from _process import rss_bytes as _rss_bytes
from _process import setup_path as _setup_path

ATOL = 1e-9  # ours vs pred_contrib (expected: ~1e-15)


def build_rows(training_dir: Path, names: list[str], rows: int, seed: int):
    """``rows`` rows resampled from the training-set splits, as the model's feature matrix."""
    import numpy as np
    import pandas as pd

    from models.frame import feature_matrix

    files = sorted(training_dir.glob("*.parquet"))
    if not files:
        raise SystemExit(f"no Parquet files in {training_dir}: run `make demo` first")
    frame = pd.concat([pd.read_parquet(f, columns=names) for f in files], ignore_index=True)
    pick = np.random.default_rng(seed).integers(0, len(frame), size=rows)
    return feature_matrix(frame.iloc[pick].reset_index(drop=True), names), len(frame), files


def timed(fn):
    """Run ``fn()``; its result, wall seconds, CPU seconds and peak memory increment."""
    gc.collect()
    before = _rss_bytes()
    _reset_peak()
    cpu, t = _cpu_seconds(), time.perf_counter()
    result = fn()
    seconds, cpu = time.perf_counter() - t, _cpu_seconds() - cpu
    return result, {"seconds": seconds, "cpu": cpu, "peak": _maxrss_bytes() - before}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows to explain (default 1000000)")
    ap.add_argument("--model", default="data/model/booster.txt", help="LightGBM model file")
    ap.add_argument("--training", default="data/training", help="directory of training-set Parquet")
    ap.add_argument("--repeat", type=int, default=1, help="timed runs of each; best is reported")
    ap.add_argument("--sample", type=int, default=50_000, help="rows checked against pred_contrib")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args(argv)

    _setup_path()
    import lightgbm as lgb
    import numpy as np

    from models.contributions import TreeContributions
    from models.reasons import _ranked

    model = Path(args.model) if Path(args.model).is_absolute() else REPO / args.model
    training = Path(args.training) if Path(args.training).is_absolute() else REPO / args.training
    booster = lgb.Booster(model_file=str(model))
    meta_path = model.with_name("model_meta.json")
    names = (
        json.loads(meta_path.read_text())["features"]
        if meta_path.exists()
        else booster.feature_name()
    )
    print(
        f"machine: {_cores()} cores available, Python {sys.version.split()[0]}, LightGBM "
        f"{lgb.__version__}, numpy {np.__version__}; load average {_load()}"
    )

    t = time.perf_counter()
    x, pool, files = build_rows(training, names, args.rows, args.seed)
    print(
        f"data: {len(x):,} rows resampled from {pool:,} rows of "
        f"{', '.join(f.name for f in files)} ({time.perf_counter() - t:.1f} s); "
        f"{x.shape[1]} features, {sum(str(d) == 'category' for d in x.dtypes)} categorical"
    )

    t = time.perf_counter()
    fast = TreeContributions(booster)
    plan_start = time.perf_counter()
    plan = fast._plan(*fast._iterations(0, None))  # built on first use otherwise: time it here
    build_s, plan_s = plan_start - t, time.perf_counter() - plan_start
    nodes = max((len(tr.nodes) for tr in fast._trees), default=0)
    print(
        f"model: {booster.num_trees()} trees (at most {nodes} internal nodes), best iteration "
        f"{booster.best_iteration}, num_threads {booster.params.get('num_threads', 'default')}; "
        f"ours: {fast.tabled_trees} trees tabled in {len(plan.groups)} groups "
        f"({sum(len(g.outputs) for g in plan.groups)} lookups per row), "
        f"{len(plan.fallback)} LightGBM run(s); built in {build_s:.2f} s + plan {plan_s:.2f} s"
    )

    rng = np.random.default_rng(args.seed + 1)
    sample = np.sort(rng.choice(len(x), size=min(args.sample, len(x)), replace=False))
    runs: dict[str, list[dict]] = {"predict": [], "pred_contrib": [], "ours": []}
    ref_sample = ours_sample = None
    for i in range(args.repeat):
        print(f"run {i + 1}/{args.repeat}: load average {_load()}", flush=True)
        _, r = timed(lambda: booster.predict(x))
        runs["predict"].append(r)
        print(f"  predict       {r['seconds']:8.2f} s", flush=True)
        ref, r = timed(lambda: booster.predict(x, pred_contrib=True))
        runs["pred_contrib"].append(r)
        ref_sample = ref[sample]
        del ref
        print(f"  pred_contrib  {r['seconds']:8.2f} s", flush=True)
        ours, r = timed(lambda: fast.contributions(x))
        runs["ours"].append(r)
        ours_sample = ours[sample]
        del ours
        print(f"  ours          {r['seconds']:8.2f} s", flush=True)

    best = {k: min(v, key=lambda r: r["seconds"]) for k, v in runs.items()}
    rows = len(x)
    print()
    print(
        f"{rows:,} rows x {x.shape[1]} features, {booster.num_trees()} trees; best of "
        f"{args.repeat}; LightGBM num_threads {booster.params.get('num_threads', 'default')}, "
        "ours 1 thread"
    )
    header = f"{'measurement':<14} {'seconds':>8} {'cpu s':>7} {'rows/s':>11} {'peak Δ MiB':>11}"
    print(header)
    print("-" * len(header))
    for name, r in best.items():
        print(
            f"{name:<14} {r['seconds']:>8.2f} {r['cpu']:>7.1f} {rows / r['seconds']:>11,.0f} "
            f"{r['peak'] / MiB:>11.0f}"
        )
    ours_s = best["ours"]["seconds"]
    print(
        f"ours vs pred_contrib: {best['pred_contrib']['seconds'] / ours_s:.1f}x faster; "
        f"ours vs predict: {best['predict']['seconds'] / ours_s:.2f}x the speed of predict"
    )
    print(f"process peak RSS {_maxrss_bytes() / MiB:.0f} MiB")

    diff = float(np.max(np.abs(ours_sample - ref_sample)))
    n_feat = booster.num_feature()
    differ = 0
    for sign in (1, -1):
        top_o, real_o = _ranked(ours_sample[:, :n_feat], 3, sign, 0.01)
        top_r, real_r = _ranked(ref_sample[:, :n_feat], 3, sign, 0.01)
        differ += int(
            np.any((np.where(real_o, top_o, -1) != np.where(real_r, top_r, -1)), axis=1).sum()
        )
    ev = float(np.max(np.abs(ours_sample[:, -1] - ref_sample[:, -1])))
    print(
        f"check on {len(sample):,} rows: max |ours - pred_contrib| {diff:.3g} (expected value "
        f"column {ev:.3g}); rows whose top-3 reasons for/against differ: {differ}"
    )
    if not diff <= ATOL or differ:
        print("CHECK FAILED")
        return 1
    print("check passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
