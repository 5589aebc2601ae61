"""Benchmark: ``leadscore partition`` copying an export larger than one table at a time fits.

``chunked``: ``run_partition`` as shipped, every table read and written
``partition.read_chunk_rows`` rows at a time (out of core). ``whole tables``: the same with one
chunk per table (each table read whole, one after the other: the peak of the largest table).
``reference``: a bare pyarrow read of each file and a bare ``pq.write_table`` of it, table after
table, in the same kind of fresh process: the I/O no copy can skip (no hashing into partitions).

Peak memory is the spawned process's own high-water mark (``VmHWM``). Data: the whole export of
``bench_engines.py`` (``benchmarks/out/engines_n{N}_p8/whole``, made if absent).

    .venv/bin/python benchmarks/bench_partition.py                  # 1,000,000 leads
    .venv/bin/python benchmarks/bench_partition.py --leads 200000   # quick
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import time
from pathlib import Path

from _process import REPO, MiB, cores, in_spawned, load_average, peak_bytes, reset_peak, setup_path

setup_path()


def _partition(params: dict, source: str, chunk_rows: int, queue) -> None:
    """One ``run_partition`` in this (spawned) process: seconds and peak."""
    setup_path()
    import logging

    from pipelines.partition import run_partition

    logging.basicConfig(level=logging.ERROR)
    params = copy.deepcopy(params)
    params["partition"]["read_chunk_rows"] = chunk_rows
    reset_peak()
    with tempfile.TemporaryDirectory() as tmp:
        clock = time.perf_counter()
        meta = run_partition(params, source, Path(tmp) / "parts")
        seconds = time.perf_counter() - clock
    queue.put({"seconds": seconds, "peak_mib": peak_bytes() / MiB, "rows": meta["rows"]})


def _reference(source: str, queue) -> None:
    """Each table read whole by pyarrow and written back by pyarrow, one after the other."""
    import pyarrow.parquet as pq

    reset_peak()
    with tempfile.TemporaryDirectory() as tmp:
        clock = time.perf_counter()
        for path in sorted(Path(source).glob("*.parquet")):
            pq.write_table(pq.read_table(path), Path(tmp) / path.name)
        seconds = time.perf_counter() - clock
    queue.put({"seconds": seconds, "peak_mib": peak_bytes() / MiB})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=8, help="of the cached data folder")
    args = parser.parse_args()

    from bench_engines import _data

    from pipelines.params import load_params
    from pipelines.partition import read_chunk_rows

    params = load_params(REPO / "params.yaml")
    _, whole = _data(params, args.leads, args.partitions)
    rows = read_chunk_rows(params)
    print(f"{args.leads:,} leads; {cores()} cores; load {load_average(True)}", flush=True)
    runs = {
        f"chunked ({rows:,} rows a chunk)": in_spawned(_partition, params, str(whole), rows),
        "whole tables (one chunk a table)": in_spawned(_partition, params, str(whole), 10**12),
        "reference: pyarrow read + write": in_spawned(_reference, str(whole)),
    }
    print(json.dumps(runs, default=str), flush=True)
    reference = runs["reference: pyarrow read + write"]["seconds"]
    print("\n| run | seconds | vs reference | peak MiB |\n|---|---|---|---|")
    for name, run in runs.items():
        ratio = run["seconds"] / reference
        print(f"| {name} | {run['seconds']:.1f} | {ratio:.2f} | {run['peak_mib']:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
