"""Benchmark: ``features.behavioral.build_behavioral`` against DuckDB SQL and polars.

The same aggregation (every feature of the behavioral builder, see its docstrings) is computed by

- ``ours``:   ``build_behavioral(events, snapshots, BehavioralParams())`` on pandas frames;
- ``duckdb``: one SQL query (join events to snapshots on lead_id with timestamp < as_of,
  conditional aggregation) on in-memory DuckDB tables, materialised into a DuckDB table;
- ``polars``: a lazy join + group_by aggregation, collected into a polars DataFrame;
- ``ours_parts``: ours per partition, as the partitioned CRM runs it (features/partitioned.py:
  leads co-partitioned by a hash of their id), one partition per core in worker processes that
  hold their events already (loaded with the data, not timed); the time includes sending the
  features back and putting them in the snapshots' order.

Every engine starts from the same Parquet files (written once per run into ``benchmarks/out/``,
which is git-ignored) and runs in a fresh spawned process, so peak memory is per engine. Only the
aggregation is timed: the input is loaded into the engine's native in-memory form first. Peak
memory is ``getrusage(RUSAGE_SELF).ru_maxrss`` in the engine's process; the high-water mark is
reset right after loading (``/proc/self/clear_refs``), so "peak increment" is the peak reached
during the aggregation minus the RSS after loading; "total peak" is the process's overall peak.
The orchestrating process imports nothing heavy before the engines run, because a spawned child
inherits its parent's high-water mark at exec time.

Afterwards every engine's result must equal ours on every feature: integers exactly, floats with
a relative tolerance of 1e-6 (NaN where ours is NaN). The script exits non-zero if they differ.

    .venv/bin/python benchmarks/bench_behavioral.py                    # 100,000 leads, ~5M events
    .venv/bin/python benchmarks/bench_behavioral.py --n-leads 20000 --repeat 3 --engines ours,duckdb
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing as mp
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from _process import REPO, MiB
from _process import cores as _cores
from _process import maxrss_bytes as _maxrss_bytes
from _process import reset_peak as _reset_peak
from _process import rss_bytes as _rss_bytes
from _process import setup_path as _setup_path

ENGINES = ("ours", "ours_parts", "duckdb", "polars")
DAY_US = 86_400_000_000
RTOL = 1e-6


# ------------------------------------------------------------------------------------------------
# Helpers (run in the children)
# ------------------------------------------------------------------------------------------------


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------
def prepare_data(n_leads: int, seed: int, data_dir: str, scenario: str = "training") -> dict:
    """Generate the CRM, clean the defects the brief names, write events + snapshots Parquet."""
    _setup_path()

    from features.snapshots import snapshots_after_creation
    from pipelines.synthetic_crm import SyntheticCRMConfig, generate_crm

    t0 = time.perf_counter()
    crm = generate_crm(SyntheticCRMConfig(n_leads=n_leads, seed=seed))
    gen_s = time.perf_counter() - t0
    leads = crm.tables["leads"].drop_duplicates("lead_id", ignore_index=True)
    events = crm.tables["events"]
    n_raw = len(events)
    keep = events["lead_id"].isin(leads["lead_id"]) & (events["timestamp"] < crm.extracted_at)
    events = events.loc[keep, ["lead_id", "timestamp", "event_type"]].reset_index(drop=True)
    # Plain text ids and types, as a CRM export has them (the generator writes dictionaries).
    events = events.astype({"lead_id": "str", "event_type": "str"})
    events["timestamp"] = events["timestamp"].astype("datetime64[us]")
    if scenario == "training":  # a training-set snapshot: creation day + 30 days
        snapshots = snapshots_after_creation(leads, [30])
    else:  # a nightly scoring run: every lead as of the extraction, all history visible
        snapshots = leads[["lead_id"]].assign(as_of=crm.extracted_at)
    snapshots["as_of"] = snapshots["as_of"].astype("datetime64[us]")
    out = Path(data_dir)
    out.mkdir(parents=True, exist_ok=True)
    events.to_parquet(out / "events.parquet", index=False)
    snapshots.to_parquet(out / "snapshots.parquet", index=False)
    n_before = int(
        (events["timestamp"] < events["lead_id"].map(snapshots.set_index("lead_id")["as_of"])).sum()
    )
    return {
        "generate_s": gen_s,
        "n_leads": len(leads),
        "n_events_raw": n_raw,
        "n_events": len(events),
        "n_events_before_as_of": n_before,
        "n_snapshots": len(snapshots),
        "events_mib": (out / "events.parquet").stat().st_size / MiB,
        "snapshots_mib": (out / "snapshots.parquet").stat().st_size / MiB,
        "events_mem_mib": events.memory_usage(deep=True).sum() / MiB,
    }


# ------------------------------------------------------------------------------------------------
# Engines: each returns (load, run, save) closures over its own native frames
# ------------------------------------------------------------------------------------------------
def _feature_names() -> list[str]:
    from features.behavioral import BehavioralParams, behavioral_specs

    return [s.name for s in behavioral_specs(BehavioralParams())]


def _ours(data_dir: Path, threads: int):
    import pandas as pd

    from features.behavioral import BehavioralParams, build_behavioral

    events = pd.read_parquet(data_dir / "events.parquet")
    snapshots = pd.read_parquet(data_dir / "snapshots.parquet")
    params = BehavioralParams()

    def run():
        return build_behavioral(events, snapshots, params)

    def save(result, path: Path) -> None:
        pd.concat([snapshots[["lead_id", "as_of"]], result], axis=1).to_parquet(path, index=False)

    return run, save, "1 (numpy, single-threaded)"


_PARTS: dict = {}


def _load_parts(data_dir: str, n: int) -> None:
    """In a worker: every partition's events and snapshots (the worker takes any of them)."""
    _setup_path()
    import pandas as pd

    from features.partitioned import partition_of

    events = pd.read_parquet(Path(data_dir) / "events.parquet")
    snapshots = pd.read_parquet(Path(data_dir) / "snapshots.parquet")
    e_part, s_part = partition_of(events["lead_id"], n), partition_of(snapshots["lead_id"], n)
    for k in range(n):
        _PARTS[k] = (
            events[e_part == k].reset_index(drop=True),
            snapshots[s_part == k].reset_index(drop=True),
        )


def _behavioral_part(k: int):
    from features.behavioral import BehavioralParams, build_behavioral

    events, snapshots = _PARTS[k]
    return k, build_behavioral(events, snapshots, BehavioralParams())


def _ours_parts(data_dir: Path, threads: int):
    import numpy as np
    import pandas as pd

    from features.partitioned import partition_of

    snapshots = pd.read_parquet(data_dir / "snapshots.parquet")
    n = max(threads, 1)
    where = partition_of(snapshots["lead_id"], n)
    positions = {k: np.flatnonzero(where == k) for k in range(n)}
    pool = ProcessPoolExecutor(
        n, mp_context=mp.get_context("spawn"), initializer=_load_parts, initargs=(str(data_dir), n)
    )
    list(pool.map(abs, range(n)))  # every worker started and loaded (not timed)

    def run():
        parts = dict(pool.map(_behavioral_part, range(n)))
        order = np.concatenate([positions[k] for k in range(n)])
        together = pd.concat([parts[k] for k in range(n)], ignore_index=True)
        return together.iloc[np.argsort(order, kind="stable")].reset_index(drop=True)

    def save(result, path: Path) -> None:
        pd.concat([snapshots[["lead_id", "as_of"]], result], axis=1).to_parquet(path, index=False)
        pool.shutdown()

    return run, save, f"{n} worker processes, one partition each"


def duckdb_query() -> str:
    """The behavioral features as one DuckDB query over tables ``events`` and ``snapshots``.

    Conditional aggregation written as ``count_if(...)`` / ``min(CASE ...)`` / ``count(DISTINCT
    CASE ...)``: on DuckDB 2.0 that runs ~1.7x faster than the same query with ``FILTER (WHERE
    ...)`` clauses, and the benchmark should give DuckDB its best fair shot.
    """
    from features.behavioral import BehavioralParams
    from features.contract import EVENT_TYPES

    p = BehavioralParams()
    weights = p.weights()
    day = f"CAST({DAY_US} AS DOUBLE)"
    # A company action (a sales email) is history, not engagement: the totals count the lead's.
    own = {t.name: t.actor == "lead" for t in p.types()}
    types = ",\n    ".join(
        f"('{t}', {i}, CAST({float(weights[i])!r} AS DOUBLE), {str(own[t]).upper()})"
        for i, t in enumerate(EVENT_TYPES)
    )
    aggs: list[str] = []
    final: list[str] = []
    for w in p.windows_days:
        for i, t in enumerate(EVENT_TYPES):
            aggs.append(f"count_if(code = {i} AND age_us <= {w * DAY_US}) AS n_{t}_{w}d")
            final.append(f"coalesce(a.n_{t}_{w}d, 0) AS n_{t}_{w}d")
    for i, t in enumerate(EVENT_TYPES):
        aggs.append(f"min(CASE WHEN code = {i} THEN age_us END) / {day} AS days_since_last_{t}")
        final.append(f"a.days_since_last_{t}")
    aggs.append(f"min(CASE WHEN own THEN age_us END) / {day} AS days_since_last_event")
    final.append("a.days_since_last_event")
    for w in p.windows_days:
        aggs.append(f"count_if(own AND age_us <= {w * DAY_US}) AS events_{w}d")
        aggs.append(
            f"count(DISTINCT CASE WHEN own AND age_us <= {w * DAY_US} THEN day END) "
            f"AS active_days_{w}d"
        )
        final.append(f"coalesce(a.events_{w}d, 0) AS events_{w}d")
        final.append(f"coalesce(a.active_days_{w}d, 0) AS active_days_{w}d")
    half_life = f"CAST({float(p.half_life_days)!r} AS DOUBLE)"
    aggs.append(
        f"sum(CASE WHEN own THEN weight * pow(CAST(0.5 AS DOUBLE), age_us / {day} / {half_life}) "
        "END) AS engagement_score"
    )
    final.append("coalesce(a.engagement_score, CAST(0 AS DOUBLE)) AS engagement_score")
    recent_us = p.trend_recent_days * DAY_US
    base_us = (p.trend_recent_days + p.trend_baseline_days) * DAY_US
    aggs.append(f"count_if(own AND age_us <= {recent_us}) AS trend_recent")
    aggs.append(f"count_if(own AND age_us > {recent_us} AND age_us <= {base_us}) AS trend_baseline")
    final.append(
        "log2(CAST(coalesce(a.trend_recent, 0) + 1 AS DOUBLE) / "
        f"(coalesce(a.trend_baseline, 0) * {p.trend_recent_days} / {p.trend_baseline_days} + 1))"
        " AS engagement_trend"
    )
    sep = ",\n    "
    return f"""
WITH types(event_type, code, weight, own) AS (VALUES
    {types}
),
e AS (
    SELECT s.lead_id, s.as_of, t.code, t.weight, t.own,
           epoch_us(s.as_of) - epoch_us(ev.timestamp) AS age_us,
           CAST(ev.timestamp AS DATE) AS day
    FROM snapshots s
    JOIN events ev ON ev.lead_id = s.lead_id AND ev.timestamp < s.as_of
    JOIN types t ON t.event_type = ev.event_type
),
a AS (
    SELECT lead_id, as_of,
    {sep.join(aggs)}
    FROM e GROUP BY lead_id, as_of
)
SELECT s.lead_id, s.as_of,
    {sep.join(final)}
FROM snapshots s LEFT JOIN a ON a.lead_id = s.lead_id AND a.as_of = s.as_of
"""


def _duckdb(data_dir: Path, threads: int):
    import duckdb

    con = duckdb.connect()
    con.execute(f"SET threads = {threads}")
    con.execute("SET preserve_insertion_order = false")
    for name in ("events", "snapshots"):
        con.execute(
            f"CREATE TABLE {name} AS SELECT * FROM read_parquet('{data_dir / (name + '.parquet')}')"
        )
    query = duckdb_query()
    actual_threads = con.execute("SELECT current_setting('threads')").fetchone()[0]

    def run():
        con.execute(f"CREATE OR REPLACE TABLE result AS {query}")
        return "result"

    def save(result, path: Path) -> None:
        con.execute(f"COPY {result} TO '{path}' (FORMAT parquet)")

    return run, save, f"{actual_threads} (SET threads = {threads})"


def polars_plan(events, snapshots):
    """The behavioral features as a polars lazy query over ``events`` and ``snapshots``."""
    import polars as pl

    from features.behavioral import BehavioralParams
    from features.contract import EVENT_TYPES

    p = BehavioralParams()
    types = pl.LazyFrame(
        {
            "event_type": list(EVENT_TYPES),
            "code": list(range(len(EVENT_TYPES))),
            "weight": p.weights().tolist(),
            # A company action (a sales email) is history: the totals count the lead's own.
            "own": [{t.name: t.actor == "lead" for t in p.types()}[t] for t in EVENT_TYPES],
        },
        schema={"event_type": pl.String, "code": pl.Int8, "weight": pl.Float64, "own": pl.Boolean},
    )
    age, code, own = pl.col("age_us"), pl.col("code"), pl.col("own")
    aggs: list[pl.Expr] = []
    for w in p.windows_days:
        for i, t in enumerate(EVENT_TYPES):
            aggs.append(((code == i) & (age <= w * DAY_US)).sum().alias(f"n_{t}_{w}d"))
    for i, t in enumerate(EVENT_TYPES):
        aggs.append((age.filter(code == i).min() / float(DAY_US)).alias(f"days_since_last_{t}"))
    aggs.append((age.filter(own).min() / float(DAY_US)).alias("days_since_last_event"))
    for w in p.windows_days:
        aggs.append(((age <= w * DAY_US) & own).sum().alias(f"events_{w}d"))
        aggs.append(
            pl.col("day").filter((age <= w * DAY_US) & own).n_unique().alias(f"active_days_{w}d")
        )
    decay = pl.lit(0.5).pow(age / float(DAY_US) / float(p.half_life_days))
    aggs.append((pl.col("weight") * decay).filter(own).sum().alias("engagement_score"))
    recent_us = p.trend_recent_days * DAY_US
    base_us = (p.trend_recent_days + p.trend_baseline_days) * DAY_US
    aggs.append(((age <= recent_us) & own).sum().alias("trend_recent"))
    aggs.append(((age > recent_us) & (age <= base_us) & own).sum().alias("trend_baseline"))
    per_snapshot = (
        snapshots.lazy()
        .join(events.lazy(), on="lead_id", how="inner")
        .filter(pl.col("timestamp") < pl.col("as_of"))
        .join(types, on="event_type", how="inner")
        .with_columns(
            age_us=pl.col("as_of").dt.epoch("us") - pl.col("timestamp").dt.epoch("us"),
            day=pl.col("timestamp").dt.date(),
        )
        .group_by("lead_id", "as_of")
        .agg(aggs)
    )
    names = _feature_names()
    counts = [n for n in names if n.startswith(("n_", "events_", "active_days_"))]
    recent = pl.col("trend_recent").fill_null(0).cast(pl.Float64)
    baseline = pl.col("trend_baseline").fill_null(0)
    expected = baseline * p.trend_recent_days / p.trend_baseline_days
    return (
        snapshots.lazy()
        .join(per_snapshot, on=["lead_id", "as_of"], how="left")
        .with_columns(
            pl.col(counts).fill_null(0),
            pl.col("engagement_score").fill_null(0.0),
            ((recent + 1.0) / (expected + 1.0)).log(2).alias("engagement_trend"),
        )
        .select(["lead_id", "as_of", *names])
    )


def _polars(data_dir: Path, threads: int):
    import polars as pl

    events = pl.read_parquet(data_dir / "events.parquet")
    snapshots = pl.read_parquet(data_dir / "snapshots.parquet")

    def run():
        return polars_plan(events, snapshots).collect()

    def save(result, path: Path) -> None:
        result.write_parquet(path)

    return run, save, f"{pl.thread_pool_size()} (polars thread pool)"


def run_engine(engine: str, data_dir: str, repeat: int, profile: bool) -> dict:
    """Run in a fresh spawned process: load, reset the peak, time ``repeat`` runs, save."""
    _setup_path()
    data = Path(data_dir)
    threads = _cores()
    rss_start = _rss_bytes()
    t0 = time.perf_counter()
    engines = {"ours": _ours, "ours_parts": _ours_parts, "duckdb": _duckdb, "polars": _polars}
    run, save, thread_note = engines[engine](data, threads)
    load_s = time.perf_counter() - t0
    gc.collect()
    peak_before = _maxrss_bytes()
    rss_loaded = _rss_bytes()
    reset = _reset_peak()
    times = []
    result = None
    for _ in range(repeat):
        result = None
        gc.collect()
        t = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - t)
    peak_after = _maxrss_bytes()
    out = {
        "engine": engine,
        "threads": thread_note,
        "times": times,
        "load_s": load_s,
        "rss_start": rss_start,
        "rss_loaded": rss_loaded,
        "peak_total": max(peak_before, peak_after),
        # without the reset, ru_maxrss also holds the loading peak: then this is a lower bound
        "peak_increment": peak_after - rss_loaded,
        "peak_reset": reset,
        "result_path": str(data / f"result_{engine}.parquet"),
    }
    save(result, Path(out["result_path"]))
    if profile and engine == "ours":
        import cProfile
        import io
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        run()
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(18)
        out["profile"] = buf.getvalue()
    return out


# ------------------------------------------------------------------------------------------------
# Correctness
# ------------------------------------------------------------------------------------------------
def compare(reference_path: str, other_path: str, engine: str, max_show: int = 5) -> list[str]:
    """Mismatches of ``other`` against ``reference`` (empty when every feature agrees)."""
    _setup_path()
    import numpy as np
    import pandas as pd

    names = _feature_names()
    keys = ["lead_id", "as_of"]
    ref = pd.read_parquet(reference_path).sort_values(keys, ignore_index=True)
    oth = pd.read_parquet(other_path).sort_values(keys, ignore_index=True)
    problems: list[str] = []
    missing = [n for n in names if n not in oth.columns]
    if missing:
        return [f"{engine}: missing columns {missing}"]
    if len(ref) != len(oth):
        return [f"{engine}: {len(oth)} rows, ours has {len(ref)}"]
    for k in keys:
        if not (ref[k].to_numpy() == oth[k].to_numpy()).all():
            return [f"{engine}: the ({', '.join(keys)}) keys differ from ours"]
    for n in names:
        a = ref[n].to_numpy()
        b = oth[n].to_numpy(dtype="float64", na_value=np.nan)
        if a.dtype.kind in "iu":
            bad = ~(a.astype("float64") == b)
            how = "exact"
        else:
            a = a.astype("float64")
            both_nan = np.isnan(a) & np.isnan(b)
            bad = ~(both_nan | np.isclose(b, a, rtol=RTOL, atol=0.0))
            how = f"rtol {RTOL:g}"
        if bad.any():
            idx = np.flatnonzero(bad)[:max_show]
            rows = ", ".join(
                f"{ref.at[i, 'lead_id']}@{ref.at[i, 'as_of'].date()}: ours {a[i].item()!r} vs {b[i].item()!r}"
                for i in idx
            )
            problems.append(f"{engine}: {n} differs ({how}) on {int(bad.sum())} rows, e.g. {rows}")
    return problems


# ------------------------------------------------------------------------------------------------
# Orchestration (keeps this process small: children inherit its RSS high-water mark)
# ------------------------------------------------------------------------------------------------
def _in_child(ctx, fn, *args):
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result()


def _available(engine: str) -> bool:
    import importlib.util

    return engine.startswith("ours") or importlib.util.find_spec(engine) is not None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--n-leads", type=int, default=100_000, help="leads to generate (default 100000)"
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per engine; best is reported")
    ap.add_argument(
        "--engines",
        default=",".join(ENGINES),
        help="comma-separated subset of "
        + ",".join(ENGINES)
        + " (ours always runs: it is the reference)",
    )
    ap.add_argument("--out-dir", default=str(REPO / "benchmarks" / "out"))
    ap.add_argument(
        "--reuse-data", action="store_true", help="reuse Parquet files from a previous run"
    )
    ap.add_argument(
        "--profile", action="store_true", help="also print a cProfile of one run of ours"
    )
    ap.add_argument(
        "--scenario",
        choices=["training", "scoring"],
        default="training",
        help="training: one snapshot per lead at creation + 30 days (most events are "
        "after as_of); scoring: every lead as of the extraction (all events visible)",
    )
    args = ap.parse_args(argv)

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        ap.error(f"unknown engines {unknown}; choose from {ENGINES}")
    engines = ["ours", *[e for e in ENGINES if e in engines and e != "ours"]]
    skipped = [e for e in engines if not _available(e)]
    engines = [e for e in engines if e not in skipped]

    ctx = mp.get_context("spawn")
    cores = _cores()
    data_dir = Path(args.out_dir) / f"behavioral_{args.scenario}_n{args.n_leads}_seed{args.seed}"
    print(
        f"machine: {cores} cores available (os.cpu_count() = {os.cpu_count()}), "
        f"Python {sys.version.split()[0]}"
    )
    meta_path = data_dir / "sizes.txt"
    if args.reuse_data and meta_path.exists():
        print(f"data: reusing {data_dir}")
        print(meta_path.read_text(), end="")
    else:
        print(f"data: generating {args.n_leads:,} leads (seed {args.seed}) ...", flush=True)
        m = _in_child(ctx, prepare_data, args.n_leads, args.seed, str(data_dir), args.scenario)
        text = (
            f"  generated in {m['generate_s']:.1f} s; {m['n_leads']:,} leads (duplicates dropped), "
            f"{m['n_snapshots']:,} snapshots ({args.scenario} scenario: as_of = "
            f"{'creation day + 30 d' if args.scenario == 'training' else 'the extraction time'})\n"
            f"  events: {m['n_events']:,} after dropping {m['n_events_raw'] - m['n_events']:,} "
            f"defect rows (unknown lead / at or after extraction); "
            f"{m['n_events_before_as_of']:,} are before their snapshot's as_of\n"
            f"  Parquet: events {m['events_mib']:.1f} MiB, snapshots {m['snapshots_mib']:.1f} MiB "
            f"in {data_dir}; events in pandas {m['events_mem_mib']:.0f} MiB\n"
            f"n_events={m['n_events']}\n"
        )
        meta_path.write_text(text)
        print(text, end="")
    n_events = int(meta_path.read_text().rsplit("n_events=", 1)[1])

    results = []
    for engine in engines:
        print(f"running {engine} ({args.repeat} timed runs, fresh process) ...", flush=True)
        r = _in_child(ctx, run_engine, engine, str(data_dir), args.repeat, args.profile)
        print(
            f"  threads: {r['threads']}; load {r['load_s']:.2f} s; runs: "
            + ", ".join(f"{t:.3f}" for t in r["times"])
            + " s"
            + ("" if r["peak_reset"] else "; (could not reset the RSS peak after loading)")
        )
        results.append(r)
    if skipped:
        print(f"skipped (not importable): {', '.join(skipped)}")

    ours = results[0]
    best_ours = min(ours["times"])
    print()
    print(f"behavioral features, {n_events:,} events, best of {args.repeat}, {cores} cores")
    header = (
        f"{'engine':<8} {'seconds':>9} {'events/s':>12} {'peak Δ MiB':>11} "
        f"{'total peak':>11} {'time/ours':>10} {'mem/ours':>9}  threads"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        best = min(r["times"])
        inc = r["peak_increment"] / MiB
        print(
            f"{r['engine']:<8} {best:>9.3f} {n_events / best:>12,.0f} {inc:>11.0f} "
            f"{r['peak_total'] / MiB:>11.0f} {best / best_ours:>10.2f} "
            f"{inc / max(ours['peak_increment'] / MiB, 1e-9):>9.2f}  {r['threads']}"
        )
    print(
        "peak Δ = peak RSS during the timed runs minus RSS after loading the input; "
        "total peak = the process's ru_maxrss"
    )
    parts = next((r for r in results if r["engine"] == "ours_parts"), None)
    for r in results[1:]:
        if r is parts:
            print(
                f"ours per partition ({parts['threads']}): {best_ours / min(r['times']):.2f}x "
                "the speed of ours in one process"
            )
            continue
        verdict = "no slower" if best_ours <= min(r["times"]) else "SLOWER"
        print(
            f"target 'ours no slower than {r['engine']}': ours is {verdict} "
            f"({r['engine']} / ours time = {min(r['times']) / best_ours:.2f})"
        )
        if parts is not None:  # issue 18: per partition, at least polars' speed
            ratio = min(r["times"]) / min(parts["times"])
            print(
                f"target 'ours per partition no slower than {r['engine']}': "
                f"{'no slower' if ratio >= 1 else 'SLOWER'} ({r['engine']} / ours_parts time = "
                f"{ratio:.2f})"
            )
    if "profile" in ours:
        print("\ncProfile of one run of ours (cumulative):")
        print(ours["profile"])

    problems: list[str] = []
    for r in results[1:]:
        problems += compare(ours["result_path"], r["result_path"], r["engine"])
    print()
    if problems:
        print("RESULTS DIFFER:")
        for p in problems:
            print("  " + p)
        return 1
    checked = ", ".join(r["engine"] for r in results[1:]) or "nothing (only ours ran)"
    print(
        f"results match: {checked} equal ours on all {len(_feature_names())} features "
        f"(integers exactly, floats rtol {RTOL:g})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
