"""Benchmark: training on a partitioned CRM. From the export to a trained model, whole in memory
(`validate`, `label`, `features`, `training-set`, `train`), partitioned on the pandas engine
(`training-set --crm`, `train`: the boosters on the parts gathered in this process) and on a
Dask LocalCluster of 2 workers (the same, the boosters fitted by ``lightgbm.dask``); time and
peak memory of each step, and the model's test ROC AUC (`evaluate`), as ratios.

On a 2-core machine a cluster cannot beat one process: what is measured is what the
partitioned path costs, and whether its model is as good. The training set of the partitioned
path is the whole CRM's row for row (tests/scale/test_partitioned_training.py); its boosters
differ by LightGBM's distributed histograms (dask) and nothing else (pandas).

Data: the CRM of ``bench_engines.py`` (``benchmarks/out/engines_n{N}_p{P}/``, made if absent).
Each run is a fresh spawned process; peaks are ``VmHWM`` (Dask workers: the largest child).

    .venv/bin/python benchmarks/bench_partitioned_training.py                       # 200,000 leads, 8 partitions
    .venv/bin/python benchmarks/bench_partitioned_training.py --leads 50000 --partitions 4   # quick
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

from _process import (
    REPO,
    MiB,
    children_peak_bytes,
    cores,
    in_spawned,
    load_average,
    peak_bytes,
    reset_peak,
    setup_path,
)

setup_path()


def _measure(kind: str, params: dict, source: str, queue) -> None:
    """Export to evaluated model in this (spawned) process; puts seconds per step and peaks."""
    setup_path()
    import logging

    from pipelines.engines import EngineSettings
    from pipelines.modeling import run_evaluate, run_train
    from pipelines.partitioned_training import run_training_set_partitioned
    from pipelines.steps import run_features, run_label, run_training_set, run_validate

    logging.basicConfig(level=logging.ERROR)
    reset_peak()
    seconds: dict[str, float] = {}
    peaks: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        clock = time.perf_counter()
        if kind == "whole":
            run_validate(params, source, t / "v", t / "r")
            run_label(params, t / "v", t / "l" / "labels.parquet")
            run_features(params, t / "v", t / "l" / "labels.parquet", t / "f" / "features.parquet")
            run_training_set(
                params, t / "f" / "features.parquet", t / "l" / "labels.parquet", t / "v", t / "s"
            )
        else:
            run_training_set_partitioned(
                params, source, t / "s", EngineSettings.from_params(params)
            )
        seconds["training_set"] = time.perf_counter() - clock
        peaks["training_set"] = peak_bytes() / MiB
        clock = time.perf_counter()
        meta = run_train(params, t / "s", t / "m", engine=EngineSettings.from_params(params))
        seconds["train"] = time.perf_counter() - clock
        peaks["train"] = peak_bytes() / MiB  # the peak so far: the larger of the two steps
        metrics = run_evaluate(params, t / "s", t / "m", t / "e")
    queue.put(
        {
            "kind": kind,
            "seconds": seconds,
            "peak_mib": peaks,
            "workers_peak_mib": children_peak_bytes() / MiB,
            "train_rows": meta["training_rows"]["train"],
            "trees": meta["best_iteration"],
            "test_roc_auc": metrics["test"]["model"]["roc_auc"],
        }
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--runs", default="whole,pandas,dask2")
    parser.add_argument("--memory-limit", default="3GiB", help="per Dask worker")
    parser.add_argument(
        "--trials",
        type=int,
        default=0,
        help="train.search.trials: the search reads the same rows on every path (the sample is "
        "the whole train split below engine.train_sample_rows), so it is left out by default",
    )
    args = parser.parse_args()

    from bench_engines import _data

    from pipelines.params import load_params

    params = load_params(REPO / "params.yaml")
    params["train"]["search"] = {**params["train"]["search"], "trials": args.trials}
    parts, whole = _data(params, args.leads, args.partitions)
    params["crm"]["extracted_at"] = json.loads((parts / "crm_meta.json").read_text())[
        "extracted_at"
    ]
    runs = {
        "whole": ("pandas", 1, whole),
        "pandas": ("pandas", 1, parts),
        "dask2": ("dask", 2, parts),
    }
    print(
        f"{args.leads:,} leads in {args.partitions} partitions; {cores()} cores; load "
        f"{load_average(True)}",
        flush=True,
    )
    results = {}
    for name in [r for r in args.runs.split(",") if r]:
        engine, workers, source = runs[name]
        p = copy.deepcopy(params)
        p["engine"] = {
            **p["engine"], "name": engine, "workers": workers, "memory_limit": args.memory_limit,
        }  # fmt: skip
        results[name] = in_spawned(_measure, name, p, str(source))
        print(json.dumps(results[name]), flush=True)
    print(
        "\n| run | training set s | train s | total s | peak MiB (training set / train) | "
        "peak MiB (workers) | test ROC AUC |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, r in results.items():
        s, m = r["seconds"], r["peak_mib"]
        print(
            f"| {name} | {s['training_set']:.1f} | {s['train']:.1f} | {sum(s.values()):.1f} | "
            f"{m['training_set']:,.0f} / {m['train']:,.0f} | {r['workers_peak_mib']:,.0f} | "
            f"{r['test_roc_auc']:.4f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
