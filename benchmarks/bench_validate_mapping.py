"""Benchmark: ``validate`` through a mapping file against today's native ``validate`` and a bare
``pyarrow.parquet.read_table`` of the same files, measured in the same run.

Target (issue 13): ``validate`` with a mapping on the 1M-lead CRM (about 55M events) no slower
than today's validate, reported as events per second and peak memory next to a bare pyarrow read
of the same files. Three steps (four rows) are timed, each once, each in a fresh spawned process
(so peak memory is per step):

- ``floor``: ``pyarrow.parquet.read_table`` of every file of the HubSpot-shaped export (contacts,
  companies, engagements, deals), nothing else; the same for the native CRM's files, for
  reference;
- ``native``: today's validate of the native CRM: ``pipelines.steps.read_source`` with the native
  contract (``read_crm``) + ``features.validation.validate_crm``, as ``run_validate`` calls them
  (without writing the outputs, which is the same work on both paths);
- ``mapping``: validate of the export through ``mappings/hubspot-example.yaml``:
  ``crm_contract(params, mapping)`` + ``read_source(params, export, contract=...)`` (read, rename
  by the mapping, ids as text) + ``validate_crm(..., contract=...)`` (value maps, timestamp
  formats, the CRM's activity types, custom fields).

Each step starts with a warm-up read: every byte of the files it reads, so that all of them run
from the OS page cache and none pays for the disk. Its phases are timed by wrapping the functions
it calls and by the ``progress`` callback (one call per table read / validated).

Data: a native synthetic CRM of ``--n-leads`` (``pipelines.steps.run_generate`` with params.yaml,
``generate.n_leads`` / ``seed`` overridden; defects included) written as Parquet, and its
HubSpot-shaped re-export (``pipelines.foreign_export.run_export_foreign``, seed 0) written as
**Parquet** too: a 55M-row CSV would time pandas' CSV parser, not validation. Both go to
``benchmarks/out/validate_mapping_n{N}_seed{seed}/`` (git-ignored); ``--reuse-data`` reuses them,
``--native DIR`` takes an existing native CRM folder (with its crm_meta.json) instead of
generating one.

Peak memory is ``getrusage(RUSAGE_SELF).ru_maxrss``: the high-water mark is reset
(``/proc/self/clear_refs``) after the imports and the warm-up, so "peak Δ" is the peak during
the step minus the RSS before it (tracemalloc would miss Arrow's and numpy's allocations).
"others" is the CPU time other processes of the machine used during a step. The results are
printed and written as JSON (``--out``). With ``--profile auto`` (default) a cProfile of one more
run of the mapping step is printed when it is more than 1.2x slower than the native one.

    .venv/bin/python benchmarks/bench_validate_mapping.py                   # 1,000,000 leads
    .venv/bin/python benchmarks/bench_validate_mapping.py --n-leads 50000   # quick
    .venv/bin/python benchmarks/bench_validate_mapping.py --reuse-data --profile always
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import gc
import json
import multiprocessing as mp
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from _process import REPO, MiB
from _process import busy_seconds as _busy_seconds
from _process import cores as _cores
from _process import cpu_seconds as _cpu_seconds
from _process import load_average as _load_average
from _process import maxrss_bytes as _maxrss_bytes
from _process import reset_peak as _reset_peak
from _process import rss_bytes as _rss_bytes
from _process import setup_path as _setup_path

MAPPING = REPO / "mappings" / "hubspot-example.yaml"
NATIVE_FILES = ("leads", "accounts", "events", "opportunities")
EXPORT_FILES = ("contacts", "companies", "engagements", "deals")
SLOW = 1.2  # mapping / native above this: profile (with --profile auto)
GiB = 1024 * MiB


# ------------------------------------------------------------------------------------------------
# Helpers (run in the children)
# ------------------------------------------------------------------------------------------------
#: The field history beside them, read (and timed) when the CRM has one.
HISTORY_FILES = {"native": "field_history", "export": "property_history"}


def _files(folder: Path, stems: tuple[str, ...]) -> list[Path]:
    """The Parquet files of ``stems`` in ``folder``, plus its field history if it has one."""
    history = folder / f"{HISTORY_FILES.get(folder.name, '')}.parquet"
    extra = [history] if history.name != ".parquet" and history.exists() else []
    return [folder / f"{stem}.parquet" for stem in stems] + extra


def _warm_up(paths: list[Path]) -> int:
    """Read every byte of ``paths`` (into nothing) so the step reads from the page cache."""
    total = 0
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while chunk := f.read(64 * MiB):
                total += len(chunk)
    return total


def _params() -> dict:
    from pipelines.params import load_params

    return load_params(REPO / "params.yaml")


def _extracted_at(params: dict, folder: Path):
    from pipelines.params import section
    from pipelines.steps import resolve_extracted_at

    return resolve_extracted_at(folder, section(params, "crm").get("extracted_at"))


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------
def generate_native(n_leads: int, seed: int, native: str, oracle: str) -> dict:
    """The native synthetic CRM as Parquet (run in a child: it needs several GiB)."""
    _setup_path()
    from pipelines.steps import run_generate

    t0 = time.perf_counter()
    meta = run_generate(_params(), native, oracle, fmt="parquet", n_leads=n_leads, seed=seed)
    return {
        "seconds": time.perf_counter() - t0,
        "rows": meta["rows"],
        "peak_total": _maxrss_bytes(),
    }


def export_foreign(native: str, export: str) -> dict:
    """The native CRM re-exported as HubSpot would, written as Parquet (run in a child)."""
    _setup_path()
    from pipelines.foreign_export import run_export_foreign

    t0 = time.perf_counter()
    meta = run_export_foreign(_params(), native, export, fmt="parquet", seed=0)
    return {
        "seconds": time.perf_counter() - t0,
        "rows": meta["rows"],
        "added_engagements": meta["added_engagements"],
        "peak_total": _maxrss_bytes(),
    }


# ------------------------------------------------------------------------------------------------
# Steps: each runs in a fresh spawned process
# ------------------------------------------------------------------------------------------------
def _timed_wrapper(module, name: str, phases: dict[str, float], label: str) -> None:
    """Replace ``module.name`` by a wrapper that adds its wall time to ``phases[label]``."""
    original = getattr(module, name)
    phases[label] = 0.0  # listed in the order wrapped, even if never called

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            phases[label] = phases.get(label, 0.0) + time.perf_counter() - t

    setattr(module, name, wrapper)


def _progress_timer(per_table: dict[str, float], order: dict[str, list[str]]):
    """A ``progress(task, done, total)`` callback that records the time since its last call."""
    last = [time.perf_counter()]

    def progress(task: str, done: int, total: int) -> None:
        now = time.perf_counter()
        names = order.get(task)
        name = names[done - 1] if names and done <= len(names) else str(done)
        per_table[f"{task} {name}"] = per_table.get(f"{task} {name}", 0.0) + now - last[0]
        last[0] = now

    def restart() -> None:
        last[0] = time.perf_counter()

    return progress, restart


def _floor(folder: Path, stems: tuple[str, ...]):
    """The bare read: ``pyarrow.parquet.read_table`` of each file, nothing else."""
    import pyarrow.parquet as pq

    paths = _files(folder, stems)

    def run(phases: dict[str, float], progress, restart) -> dict:
        rows = {}
        for path in paths:  # the named tables and the field history, if there is one
            stem = path.stem
            t = time.perf_counter()
            table = pq.read_table(path)
            phases[f"read_table {stem}"] = time.perf_counter() - t
            rows[stem] = table.num_rows
        return {"rows_in": rows}

    return paths, run


def _validate(folder: Path, mapping: str | None):
    """``read_source`` + ``validate_crm`` with the native contract, or through ``mapping``."""
    import pipelines.steps as steps
    from features.contract import EXTRA_TABLES, TABLES
    from features.mapping.contract import NATIVE
    from features.validation import validate_crm

    params = _params()
    extracted_at = _extracted_at(params, folder)
    if mapping is None:
        stems, read_order = NATIVE_FILES, [*TABLES, *EXTRA_TABLES]
    else:  # read the mapping once here only to know the files: it is read again, timed, below
        contract = steps.crm_contract(params, mapping)
        stems = tuple(contract.export_tables[t] for t in NATIVE_FILES)
        read_order = list(contract.export_tables)

    def run(phases: dict[str, float], progress, restart) -> dict:
        t = time.perf_counter()
        contract = NATIVE if mapping is None else steps.crm_contract(params, mapping)
        phases["crm_contract (load the mapping)"] = time.perf_counter() - t
        restart()
        t = time.perf_counter()
        raw = steps.read_source(params, folder, progress, contract)
        phases["read_source"] = time.perf_counter() - t
        restart()
        t = time.perf_counter()
        result = validate_crm(
            raw,
            extracted_at=extracted_at,
            progress=progress,
            contract=contract,
            **steps.validation_settings(params, contract),
        )
        phases["validate_crm"] = time.perf_counter() - t
        counts = result.counts.set_index("table")
        return {
            "rows_in": {n: int(counts.at[n, "rows_in"]) for n in counts.index},
            "rows_out": {n: int(counts.at[n, "rows_out"]) for n in counts.index},
            "undeclared_types": dict(
                zip(
                    result.undeclared_types["event_type"].astype(str),
                    result.undeclared_types["rows"].astype(int).tolist(),
                    strict=True,
                )
            ),
        }

    return _files(folder, stems), run, steps, read_order


def run_step(step: str, data_dir: str, profile: bool = False) -> dict:
    """Run in a fresh spawned process: imports, warm-up read, reset the peak, time one run."""
    _setup_path()
    root = Path(data_dir)
    rss_start = _rss_bytes()
    import pipelines.steps  # noqa: F401  (every step pays the same imports before the baseline)

    # top-level phases first, the wrapped functions (inside read_source) after read_source
    phases: dict[str, float] = {"crm_contract (load the mapping)": 0.0, "read_source": 0.0}
    per_table: dict[str, float] = {}
    order: dict[str, list[str]] = {}
    if step == "floor_export":
        paths, run = _floor(root / "export", EXPORT_FILES)
    elif step == "floor_native":
        paths, run = _floor(root / "native", NATIVE_FILES)
    else:
        from features.validation import TABLE_ORDER

        mapping = str(MAPPING) if step == "mapping" else None
        folder = root / ("export" if step == "mapping" else "native")
        paths, run, steps, read_order = _validate(folder, mapping)
        order = {"read": read_order, "validate": list(TABLE_ORDER)}
        if step == "mapping":
            _timed_wrapper(steps, "read_crm", phases, "  read_crm (Parquet -> pandas)")
            _timed_wrapper(steps, "apply_mapping", phases, "  apply_mapping (rename)")
            _timed_wrapper(steps, "table_ids_as_text", phases, "  ids as text")
        else:
            _timed_wrapper(steps, "read_crm", phases, "  read_crm (Parquet -> pandas)")
    if step in ("native", "mapping"):
        phases["validate_crm"] = 0.0
    else:
        phases.clear()
    progress, restart = _progress_timer(per_table, order)
    warm = _warm_up(paths)
    gc.collect()
    peak_before = _maxrss_bytes()
    rss_before = _rss_bytes()
    reset = _reset_peak()
    cpu0, busy0 = _cpu_seconds(), _busy_seconds()
    t0 = time.perf_counter()
    if profile:
        import cProfile
        import io
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        out = run(phases, progress, restart)
        prof.disable()
    else:
        out = run(phases, progress, restart)
    seconds = time.perf_counter() - t0
    cpu = _cpu_seconds() - cpu0
    others = max(0.0, _busy_seconds() - busy0 - cpu)
    peak_after = _maxrss_bytes()
    out.update(
        step=step,
        seconds=seconds,
        cpu=cpu,
        others_cpu=others,
        phases=phases,
        per_table=per_table,
        files_mib=warm / MiB,
        rss_start=rss_start,
        rss_before=rss_before,
        # without the reset, ru_maxrss also holds the warm-up: then this is an upper bound
        peak_increment=peak_after - rss_before,
        peak_total=max(peak_before, peak_after) if not reset else peak_after,
        peak_reset=reset,
        load=_load_average(all_three=True),
    )
    if profile:
        for key, order_by in (("profile_cumulative", "cumulative"), ("profile_tottime", "tottime")):
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats(order_by).print_stats(15)
            out[key] = buf.getvalue()
    return out


# ------------------------------------------------------------------------------------------------
# Orchestration (keeps this process small: children inherit its RSS high-water mark)
# ------------------------------------------------------------------------------------------------
def _in_child(ctx, fn, *args):
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result()


def _rate(n: float, seconds: float) -> str:
    return f"{n / seconds / 1e6:.2f}M" if n / seconds >= 1e6 else f"{n / seconds:,.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--n-leads", type=int, default=1_000_000, help="leads to generate (default 1000000)"
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out-dir", default=str(REPO / "benchmarks" / "out"))
    ap.add_argument(
        "--out",
        default=str(REPO / "benchmarks" / "out" / "validate_mapping.json"),
        help="where to write the results as JSON",
    )
    ap.add_argument(
        "--reuse-data",
        action="store_true",
        help="reuse the native CRM and its export from a previous run with the same --n-leads/--seed",
    )
    ap.add_argument(
        "--native",
        type=Path,
        help="an existing native CRM folder (Parquet or CSV, with crm_meta.json) to use "
        "instead of generating one (--n-leads is then ignored)",
    )
    ap.add_argument(
        "--profile",
        choices=["auto", "always", "never"],
        default="auto",
        help=f"cProfile one more run of the mapping step (auto: if it is > {SLOW}x native)",
    )
    args = ap.parse_args(argv)

    ctx = mp.get_context("spawn")
    cores = _cores()
    started = dt.datetime.now(dt.UTC)
    print(
        f"machine: {cores} cores available (os.cpu_count() = {os.cpu_count()}), "
        f"Python {sys.version.split()[0]}; load average {_load_average(all_three=True)}"
    )
    name = f"native_{args.native.resolve().name}" if args.native else f"n{args.n_leads}"
    root = Path(args.out_dir).resolve() / f"validate_mapping_{name}_seed{args.seed}"
    info_path = root / "data.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else None
    reuse = (
        args.reuse_data
        and info is not None
        and all(p.exists() for p in _files(root / "export", EXPORT_FILES))
        and (
            args.native is not None
            or all(p.exists() for p in _files(root / "native", NATIVE_FILES))
        )
    )
    if reuse:
        print(f"data: reusing {root}")
    else:
        info = {"n_leads": args.n_leads, "seed": args.seed}
        root.mkdir(parents=True, exist_ok=True)
        if args.native is not None:
            print(f"data: native CRM {args.native}")
            native = args.native.resolve()
            native_files = _files(native, NATIVE_FILES)
            if not all(p.exists() for p in native_files):
                ap.error(f"--native {native}: expected {', '.join(NATIVE_FILES)} as Parquet")
            link = root / "native"
            if link.is_symlink():
                link.unlink()
            if not link.exists():
                link.symlink_to(native, target_is_directory=True)
            info["native"] = str(native)
        else:
            print(
                f"data: generating {args.n_leads:,} leads (seed {args.seed}) as Parquet into "
                f"{root / 'native'} ...",
                flush=True,
            )
            g = _in_child(
                ctx,
                generate_native,
                args.n_leads,
                args.seed,
                str(root / "native"),
                str(root / "oracle.parquet"),
            )
            print(
                f"  {g['seconds']:.0f} s, peak {g['peak_total'] / GiB:.1f} GiB; rows: "
                + ", ".join(f"{k} {v:,}" for k, v in g["rows"].items()),
                flush=True,
            )
            info["generate"] = g
        print(f"data: HubSpot-shaped export as Parquet into {root / 'export'} ...", flush=True)
        e = _in_child(ctx, export_foreign, str(root / "native"), str(root / "export"))
        print(
            f"  {e['seconds']:.0f} s, peak {e['peak_total'] / GiB:.1f} GiB; rows: "
            + ", ".join(f"{k} {v:,}" for k, v in e["rows"].items())
            + "; added engagements: "
            + ", ".join(f"{k} {v:,}" for k, v in e["added_engagements"].items()),
            flush=True,
        )
        info["export"] = e
        info_path.write_text(json.dumps(info, indent=2) + "\n")

    steps = [
        ("floor_export", "floor: read_table, export files"),
        ("floor_native", "floor: read_table, native files"),
        ("native", "native validate (no mapping)"),
        ("mapping", "validate with the mapping"),
    ]
    results: dict[str, dict] = {}
    for step, label in steps:
        print(f"{label} (fresh process) ...", flush=True)
        r = _in_child(ctx, run_step, step, str(root), False)
        results[step] = r
        print(
            f"  {r['seconds']:.2f} s (cpu {r['cpu']:.1f} s, other processes {r['others_cpu']:.1f}"
            f" s); peak Δ {r['peak_increment'] / MiB:,.0f} MiB, total peak "
            f"{r['peak_total'] / MiB:,.0f} MiB; files {r['files_mib']:,.0f} MiB; load average "
            f"{r['load']}" + ("" if r["peak_reset"] else "; (could not reset the RSS peak)"),
            flush=True,
        )

    fe, fn, nat, mp_ = (results[s] for s, _ in steps)
    native_events = nat["rows_in"]["events"]
    export_events = mp_["rows_in"]["events"]
    events = {
        "floor_export": fe["rows_in"]["engagements"],
        "floor_native": fn["rows_in"]["events"],
        "native": native_events,
        "mapping": export_events,
    }
    ratio_native = mp_["seconds"] / nat["seconds"]
    ratio_floor = mp_["seconds"] / fe["seconds"]
    native_floor = nat["seconds"] / fn["seconds"]
    per_event_ratio = (mp_["seconds"] / export_events) / (nat["seconds"] / native_events)

    print()
    print(
        f"validate with a mapping: {nat['rows_in']['leads']:,} lead rows, {native_events:,} "
        f"native events ({export_events:,} engagements in the export: the native events + "
        f"{export_events - native_events:,} added calls, meetings, notes); {cores} cores; one "
        f"run each"
    )
    header = (
        f"{'step':<36} {'seconds':>8} {'events':>12} {'events/s':>10} {'cpu s':>7} "
        f"{'others':>7} {'peak Δ MiB':>11} {'total peak':>11}"
    )
    print(header)
    print("-" * len(header))
    for step, label in steps:
        r = results[step]
        print(
            f"{label:<36} {r['seconds']:>8.2f} {events[step]:>12,} "
            f"{_rate(events[step], r['seconds']):>10} {r['cpu']:>7.1f} {r['others_cpu']:>7.1f} "
            f"{r['peak_increment'] / MiB:>11,.0f} {r['peak_total'] / MiB:>11,.0f}"
        )
    print(
        "peak Δ = peak RSS during the step minus the RSS before it (after imports and the "
        "warm-up read); total peak = the process's ru_maxrss; others = CPU seconds other "
        "processes used meanwhile"
    )
    print()
    print(
        f"mapping / native       = {ratio_native:.2f}x (per event {per_event_ratio:.2f}x; "
        f"target <= 1.00: no slower than today's validate)"
    )
    print(f"mapping / floor        = {ratio_floor:.2f}x (bare read_table of the export's files)")
    print(f"native / native floor  = {native_floor:.2f}x")
    for step, label in steps[2:]:
        r = results[step]
        print(f"\n{label} phases:")
        for phase, sec in r["phases"].items():
            print(f"  {phase:<40} {sec:>8.2f} s  {sec / r['seconds']:>6.1%}")
        print("  by table (progress callback):")
        for phase, sec in sorted(r["per_table"].items(), key=lambda kv: -kv[1]):
            print(f"    {phase:<38} {sec:>8.2f} s  {sec / r['seconds']:>6.1%}")
    print(
        "\nrows out (native / mapping): "
        + ", ".join(f"{t} {nat['rows_out'][t]:,} / {mp_['rows_out'][t]:,}" for t in nat["rows_out"])
    )
    if mp_["undeclared_types"]:
        print(
            "undeclared activity types (mapping path, kept and counted): "
            + ", ".join(f"{k} {v:,}" for k, v in mp_["undeclared_types"].items())
        )
    busy = [
        label
        for step, label in steps
        if results[step]["others_cpu"] > 0.1 * results[step]["seconds"]
    ]
    for label in busy:
        print(
            f"WARNING: other processes used > 10% of a core-second per second during "
            f"'{label}': its time may be inflated"
        )

    profile = None
    if args.profile == "always" or (args.profile == "auto" and ratio_native > SLOW):
        print(f"\ncProfile of one more run of the mapping step ({ratio_native:.2f}x native):")
        p = _in_child(ctx, run_step, "mapping", str(root), True)
        profile = {k: p[k] for k in ("seconds", "profile_cumulative", "profile_tottime")}
        print(p["profile_cumulative"])
        print(p["profile_tottime"])

    problems = [
        f"{t}: native keeps {nat['rows_out'][t]:,} rows, the mapping path {mp_['rows_out'][t]:,}"
        for t in ("leads", "accounts", "opportunities")
        if nat["rows_out"][t] != mp_["rows_out"][t]
    ]
    report = {
        "benchmark": "validate_mapping",
        "date": started.isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "cores": cores,
            "cpu_count": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
        "data": {"root": str(root), **(info or {})},
        "mapping": str(MAPPING.relative_to(REPO)),
        "events": events,
        "steps": {
            step: {
                "label": label,
                "events_per_s": events[step] / results[step]["seconds"],
                "peak_increment_mib": results[step]["peak_increment"] / MiB,
                "peak_total_mib": results[step]["peak_total"] / MiB,
                **results[step],
            }
            for step, label in steps
        },
        "ratios": {
            "mapping_vs_native": ratio_native,
            "mapping_vs_native_per_event": per_event_ratio,
            "mapping_vs_floor_export": ratio_floor,
            "native_vs_floor_native": native_floor,
        },
        "profile": profile,
        "problems": problems,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"\nresults written to {out}")
    if problems:
        print("CHECKS FAILED:")
        for p in problems:
            print("  " + p)
        return 1
    print("checks passed: both paths keep the same leads, accounts and opportunities")
    return 0


if __name__ == "__main__":
    sys.exit(main())
