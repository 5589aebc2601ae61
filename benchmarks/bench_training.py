"""Benchmark: training the propensity model against a bare ``lightgbm.train`` on the same matrix.

Target: training on ~1M snapshots x the project's features within 2x the time of a bare
``lightgbm.train`` with the same parameters on the same matrix. Three things are timed, each in
a fresh spawned process (so peak memory is per measurement):

- ``ours: train_booster``: ``models.boosting.train_booster`` on matrices prepared as
  ``pipelines.modeling.run_train`` prepares them (``feature_matrix``: text -> category), with
  ``train.lightgbm`` / ``num_boost_round`` / ``early_stopping_rounds`` (and
  ``monotone_increasing``, passed as ``run_train`` passes it) from the params file;
  early-stopped on the validation split (so it also builds the validation Dataset and evaluates
  the validation log loss after every tree).
- ``reference``: ``lgb.train(params, lgb.Dataset(x_train, y_train), num_boost_round=N)`` with
  exactly the parameter dict ours handed to ``lgb.train`` (recorded by wrapping ``lgb.train`` in
  ours' process: objective binary, seed, num_threads, ...) and N = the trees ours built
  (``booster.current_iteration()``: best iteration + the early-stopping patience), no
  validation set. The Dataset is constructed first (with the same params, as ``lgb.train``
  would) so that its construction is timed on its own; "reference" = construction + training.
- ``ours: run_train``: the whole ``pipelines.modeling.run_train(params, training, out)`` step:
  reads the Parquet splits, trains the booster, fits the calibrator (cross-validated choice of
  isotonic / sigmoid on validation), chooses cutoffs, fits the logistic-regression baseline and
  saves the artifacts. Its phases are timed by wrapping the functions ``run_train`` calls
  (microseconds of overhead); ``--profile`` adds a cProfile of one more run.

Data: the project's own pipeline (``leadscore generate / validate / label / features /
training-set``) with a copy of params.yaml (``generate.n_leads`` / ``seed`` overridden, ``split``
as in params.yaml; refreshed on ``--reuse-data``, so the train settings are always current),
written to ``benchmarks/out/train_bench/`` (git-ignored). About 2.2 train
snapshots per lead: the default 460,000 leads give ~1M train rows.

Correctness (exit status 1 if any fails): the reference built as many trees as ours, its raw
scores on the validation split equal ours' (all trees; LightGBM is run with deterministic=true,
so the two boosters must be the same model), and ``run_train`` chose the same best iteration as
``train_booster``. Peak memory is ``getrusage(RUSAGE_SELF).ru_maxrss``; the high-water mark is
reset (``/proc/self/clear_refs``) right before the timed part, so "peak increment" is the peak
during it minus the RSS before it. For ``run_train`` that includes reading the Parquet files.

    .venv/bin/python benchmarks/bench_training.py                    # 460,000 leads, ~1M rows
    .venv/bin/python benchmarks/bench_training.py --reuse-data       # skip the data pipeline
    .venv/bin/python benchmarks/bench_training.py --n-leads 20000    # quick
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from _process import REPO, MiB
from _process import busy_seconds as _busy_seconds
from _process import cores as _cores
from _process import cpu_seconds as _cpu_seconds
from _process import load_average as _load
from _process import maxrss_bytes as _maxrss_bytes
from _process import reset_peak as _reset_peak
from _process import rss_bytes as _rss_bytes
from _process import setup_path as _setup_path

ATOL = 1e-9  # raw-score agreement between ours and the reference (expected: identical)


# ------------------------------------------------------------------------------------------------
# Helpers (run in the children)
# ------------------------------------------------------------------------------------------------


def _load_matrices(params_path: str, training_dir: str):
    """Train / validation matrices and labels exactly as ``run_train`` builds them."""
    _setup_path()
    from models.frame import feature_matrix, feature_names
    from pipelines.modeling import _labels, _split
    from pipelines.params import load_params, section

    params = load_params(params_path)
    training = Path(training_dir)
    train, valid = _split(training, "train"), _split(training, "validation")
    names = feature_names(train)
    x_train, x_valid = feature_matrix(train, names), feature_matrix(valid, names)
    y_train, y_valid = _labels(train, "train"), _labels(valid, "validation")
    return x_train, y_train, x_valid, y_valid, section(params, "train")


def _record_lgb_train(calls: list[dict]):
    """Wrap ``lightgbm.train`` to record its params and the boosting rounds it actually ran.

    The rounds are counted by an added callback: after early stopping, ``lgb.train`` returns the
    booster cut to its best iteration, so ``current_iteration()`` no longer shows them.
    """
    import copy

    import lightgbm as lgb

    original = lgb.train

    @functools.wraps(original)
    def recording(params, train_set, num_boost_round=100, *args, **kwargs):
        call = {
            "params": copy.deepcopy(dict(params)),
            "num_boost_round": num_boost_round,
            "rounds": 0,
        }
        calls.append(call)

        def count(env) -> None:
            call["rounds"] = env.iteration - env.begin_iteration + 1

        count.order = 0  # before early stopping, which ends a round by raising
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), count]
        return original(params, train_set, num_boost_round, *args, **kwargs)

    lgb.train = recording
    return original


# ------------------------------------------------------------------------------------------------
# The three measurements
# ------------------------------------------------------------------------------------------------
def run_ours_booster(params_path: str, training_dir: str, work_dir: str) -> dict:
    """``train_booster`` on prepared matrices; saves its raw validation scores."""
    _setup_path()
    import numpy as np

    from models.boosting import train_booster
    from pipelines.modeling import search_setup

    t = time.perf_counter()
    x_train, y_train, x_valid, y_valid, settings = _load_matrices(params_path, training_dir)
    load_s = time.perf_counter() - t
    calls: list[dict] = []
    _record_lgb_train(calls)
    kwargs = {}
    if "monotone_increasing" in inspect.signature(train_booster).parameters:  # as run_train
        kwargs["monotone_increasing"] = list(settings.get("monotone_increasing", []))
    rss_loaded = _rss_bytes()
    reset = _reset_peak()
    cpu, busy, t = _cpu_seconds(), _busy_seconds(), time.perf_counter()
    # The search's starting point, as `leadscore train` fits it (scaled to the data, then what
    # train.lightgbm sets; rounds from the learning rate unless set).
    setup = search_setup(settings, len(y_train), int(np.sum(y_train)))
    booster = train_booster(
        x_train, y_train, x_valid, y_valid,
        params=setup.base,
        num_boost_round=setup.rounds["num_boost_round"],
        early_stopping_rounds=setup.rounds["early_stopping_rounds"],
        **kwargs,
    )  # fmt: skip
    seconds, cpu = time.perf_counter() - t, _cpu_seconds() - cpu
    others = _busy_seconds() - busy - cpu
    peak = _maxrss_bytes()
    scores_path = Path(work_dir) / "ours_valid_raw.npy"
    # the returned booster holds its best iteration's trees (lgb.train cuts the rest)
    np.save(scores_path, booster.predict(x_valid, raw_score=True))
    return {
        "seconds": seconds,
        "cpu": cpu,
        "others_cpu": others,
        "load_s": load_s,
        "rows": len(x_train),
        "valid_rows": len(x_valid),
        "features": x_train.shape[1],
        "categorical": int(sum(str(d) == "category" for d in x_train.dtypes)),
        "trees": calls[0]["rounds"],
        "kept_trees": booster.current_iteration(),
        "best_iteration": booster.best_iteration,
        "early_stopping_rounds": int(settings["early_stopping_rounds"]),
        "num_boost_round": int(settings["num_boost_round"]),
        "lgb_params": calls[0]["params"],
        "peak_increment": peak - rss_loaded,
        "peak_total": _maxrss_bytes(),
        "peak_reset": reset,
        "scores_path": str(scores_path),
    }


def run_reference(
    params_path: str,
    training_dir: str,
    lgb_params: dict,
    rounds: int,
    best_iteration: int,
    ours_scores_path: str,
) -> dict:
    """Bare ``lgb.train`` with ours' params for ``rounds`` trees; compares raw validation scores."""
    _setup_path()
    import lightgbm as lgb
    import numpy as np

    t = time.perf_counter()
    x_train, y_train, x_valid, _, _ = _load_matrices(params_path, training_dir)
    load_s = time.perf_counter() - t
    rss_loaded = _rss_bytes()
    reset = _reset_peak()
    cpu, busy, t0 = _cpu_seconds(), _busy_seconds(), time.perf_counter()
    # lgb.train would merge the params into the Dataset before constructing it: do it here so
    # that the construction (binning) can be timed on its own.
    train_set = lgb.Dataset(x_train, label=y_train, params=dict(lgb_params)).construct()
    t1 = time.perf_counter()
    booster = lgb.train(dict(lgb_params), train_set, num_boost_round=rounds)
    t2, cpu = time.perf_counter(), _cpu_seconds() - cpu
    others = _busy_seconds() - busy - cpu
    peak = _maxrss_bytes()
    raw = booster.predict(x_valid, num_iteration=best_iteration, raw_score=True)
    ours = np.load(ours_scores_path)
    diff = float(np.max(np.abs(raw - ours))) if len(raw) == len(ours) else float("inf")
    return {
        "construct_s": t1 - t0,
        "train_s": t2 - t1,
        "seconds": t2 - t0,
        "cpu": cpu,
        "others_cpu": others,
        "load_s": load_s,
        "trees": booster.current_iteration(),
        "max_abs_diff": diff,
        "lightgbm": lgb.__version__,
        "peak_increment": peak - rss_loaded,
        "peak_total": _maxrss_bytes(),
        "peak_reset": reset,
    }


def _instrument_run_train(phases: dict[str, float]) -> None:
    """Time the phases of ``run_train`` by wrapping what it calls (in this process only)."""
    import types

    import joblib

    import pipelines.modeling as m
    from models.calibration import ProbabilityCalibrator

    def timed(name, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                phases[name] = phases.get(name, 0.0) + time.perf_counter() - t

        return wrapper

    def train_booster(*args, **kwargs):
        booster = timed("train_booster", original_train)(*args, **kwargs)
        booster.save_model = timed("save artifacts", booster.save_model)
        return booster

    def logistic_baseline(*args, **kwargs):
        pipe = original_baseline(*args, **kwargs)

        def fit(*fargs, **fkwargs):
            pipe.__dict__.pop("fit", None)  # the saved baseline must not carry the wrapper
            return timed("baseline: logistic regression fit", type(pipe).fit)(
                pipe, *fargs, **fkwargs
            )

        pipe.fit = fit
        return pipe

    original_train, original_baseline = m.train_booster, m.logistic_baseline
    m._split = timed("read Parquet (train + validation)", m._split)
    m.feature_matrix = timed("feature_matrix (text -> category)", m.feature_matrix)
    m.train_booster = train_booster
    m.predict_scores = timed("predict validation scores (2x)", m.predict_scores)
    ProbabilityCalibrator.fit = timed(
        "calibrator fit (CV choice + refit)", ProbabilityCalibrator.fit
    )
    m.choose_cutoffs = timed("choose cutoffs", m.choose_cutoffs)
    m.logistic_baseline = logistic_baseline
    m.joblib = types.SimpleNamespace(dump=timed("save artifacts", joblib.dump))


def run_ours_pipeline(params_path: str, training_dir: str, model_dir: str, profile: bool) -> dict:
    """The whole ``run_train`` step (Parquet in, artifacts out)."""
    _setup_path()
    import lightgbm  # noqa: F401  (imports are not part of the step)
    import sklearn.linear_model  # noqa: F401

    import pipelines.modeling as m
    from pipelines.params import load_params

    params = load_params(params_path)
    shutil.rmtree(model_dir, ignore_errors=True)
    phases: dict[str, float] = {}
    if profile:
        import cProfile
        import io
        import pstats

        prof = cProfile.Profile()
        prof.enable()
        m.run_train(params, training_dir, model_dir)
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(30)
        return {"profile": buf.getvalue()}
    _instrument_run_train(phases)
    calls: list[dict] = []
    _record_lgb_train(calls)
    rss_before = _rss_bytes()
    reset = _reset_peak()
    cpu, busy, t = _cpu_seconds(), _busy_seconds(), time.perf_counter()
    meta = m.run_train(params, training_dir, model_dir)
    seconds, cpu = time.perf_counter() - t, _cpu_seconds() - cpu
    others = _busy_seconds() - busy - cpu
    peak = _maxrss_bytes()
    return {
        "seconds": seconds,
        "cpu": cpu,
        "others_cpu": others,
        "phases": phases,
        "trees": calls[0]["rounds"] if calls else None,
        "best_iteration": int(meta["best_iteration"]),
        "calibration": meta["calibration"]["method"],
        "lgb_params": calls[0]["params"] if calls else None,
        "peak_increment": peak - rss_before,
        "peak_total": _maxrss_bytes(),
        "peak_reset": reset,
    }


# ------------------------------------------------------------------------------------------------
# Data: the project's own pipeline, through its CLI
# ------------------------------------------------------------------------------------------------
def write_params(root: Path, n_leads: int, seed: int) -> dict:
    """``root/params.yaml``: a copy of the project's params.yaml with n_leads / seed overridden."""
    import yaml  # light: the orchestrator stays small

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["generate"]["n_leads"] = n_leads
    params["generate"]["seed"] = seed
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return params


def build_data(root: Path, n_leads: int, seed: int) -> dict:
    """Run leadscore generate / validate / label / features / training-set into ``root``."""
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    params = write_params(root, n_leads, seed)
    rel = root.relative_to(REPO) if root.is_relative_to(REPO) else root
    p = ["-p", str(rel / "params.yaml")]
    labels = str(rel / "labels" / "labelled_snapshots.parquet")
    steps = {
        "generate": [
            "generate",
            *p,
            "--n-leads",
            str(n_leads),
            "--seed",
            str(seed),
            "--out",
            str(rel / "crm"),
            "--oracle",
            str(rel / "oracle.parquet"),
        ],
        "validate": [
            "validate",
            str(rel / "crm"),
            *p,
            "--out",
            str(rel / "validated"),
            "--rejects",
            str(rel / "rejects"),
        ],
        "label": ["label", *p, "--validated", str(rel / "validated"), "--out", labels],
        "features": [
            "features",
            *p,
            "--validated",
            str(rel / "validated"),
            "--snapshots",
            labels,
            "--out",
            str(rel / "features" / "features.parquet"),
        ],
        "training-set": [
            "training-set",
            *p,
            "--features",
            str(rel / "features" / "features.parquet"),
            "--snapshots",
            labels,
            "--validated",
            str(rel / "validated"),
            "--out",
            str(rel / "training"),
        ],
    }
    exe = str(Path(sys.executable).with_name("leadscore"))
    times = {}
    for name, cmd in steps.items():
        print(f"  leadscore -q {' '.join(cmd)}", flush=True)
        t = time.perf_counter()
        subprocess.run([exe, "-q", *cmd], cwd=REPO, check=True)
        times[name] = time.perf_counter() - t
        print(f"    {times[name]:.1f} s", flush=True)
    manifest = json.loads((root / "training" / "manifest.json").read_text())
    info = {
        "n_leads": n_leads,
        "seed": seed,
        "step_seconds": times,
        "splits": {k: v["rows"] for k, v in manifest["splits"].items()},
        "positive_rate": {k: v["positive_rate"] for k, v in manifest["splits"].items()},
        "n_features": manifest["n_features"],
        "split_days": {k: params["split"][k] for k in ("validation_days", "test_days")},
    }
    (root / "data.json").write_text(json.dumps(info, indent=2) + "\n")
    return info


# ------------------------------------------------------------------------------------------------
# Orchestration (keeps this process small: children inherit its RSS high-water mark)
# ------------------------------------------------------------------------------------------------
def _in_child(ctx, fn, *args):
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(fn, *args).result()


def _best(runs: list[dict]) -> dict:
    return min(runs, key=lambda r: r["seconds"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--n-leads",
        type=int,
        default=460_000,
        help="leads to generate (default 460000: ~1M train snapshots)",
    )
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="timed runs of each measurement (fresh process each); best is reported",
    )
    ap.add_argument("--out-dir", default=str(REPO / "benchmarks" / "out" / "train_bench"))
    ap.add_argument(
        "--reuse-data",
        action="store_true",
        help="reuse the training set of a previous run with the same --n-leads/--seed",
    )
    ap.add_argument(
        "--profile", action="store_true", help="also print a cProfile of one more run of run_train"
    )
    args = ap.parse_args(argv)

    ctx = mp.get_context("spawn")
    cores = _cores()
    root = Path(args.out_dir).resolve()
    print(
        f"machine: {cores} cores available (os.cpu_count() = {os.cpu_count()}), "
        f"Python {sys.version.split()[0]}; load average {_load()}"
    )
    info_path = root / "data.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else None
    if (
        args.reuse_data
        and info
        and info["n_leads"] == args.n_leads
        and info["seed"] == args.seed
        and (root / "training" / "train.parquet").exists()
    ):
        print(f"data: reusing {root} (its params.yaml refreshed from the project's)")
        write_params(root, args.n_leads, args.seed)
    else:
        print(
            f"data: building {args.n_leads:,} leads (seed {args.seed}) with the project's "
            f"pipeline into {root} ...",
            flush=True,
        )
        info = build_data(root, args.n_leads, args.seed)
        print(f"  pipeline total {sum(info['step_seconds'].values()):.0f} s")
    s = info["splits"]
    print(
        f"  splits: train {s['train']:,} rows (positive rate {info['positive_rate']['train']:.4f}),"
        f" validation {s['validation']:,}, test {s['test']:,}; {info['n_features']} features; "
        f"split.validation_days {info['split_days']['validation_days']}, "
        f"test_days {info['split_days']['test_days']}"
    )

    params_path, training = str(root / "params.yaml"), str(root / "training")
    model_dir = str(root / "model")
    ours: list[dict] = []
    refs: list[dict] = []
    pipes: list[dict] = []
    for i in range(args.repeat):  # interleaved, so that drifting load hits all three alike
        run = f"run {i + 1}/{args.repeat}"
        print(f"ours: train_booster, {run} (fresh process) ...", flush=True)
        r = _in_child(ctx, run_ours_booster, params_path, training, str(root))
        print(
            f"  {r['seconds']:.2f} s (cpu {r['cpu']:.1f} s, other processes {r['others_cpu']:.1f}"
            f" s); {r['trees']} rounds run = best "
            f"iteration {r['best_iteration']} + {r['early_stopping_rounds']} patience (capped "
            f"at {r['num_boost_round']}); load {r['load_s']:.1f} s; load average {_load()}",
            flush=True,
        )
        ours.append(r)
        o = ours[0]
        if i == 0:
            print(f"  params handed to lgb.train: {json.dumps(o['lgb_params'], sort_keys=True)}")
        print(
            f"reference: bare lgb.train, {o['trees']} rounds, {run} (fresh process) ...", flush=True
        )
        r = _in_child(
            ctx,
            run_reference,
            params_path,
            training,
            o["lgb_params"],
            o["trees"],
            o["best_iteration"],
            o["scores_path"],
        )
        print(
            f"  {r['seconds']:.2f} s (cpu {r['cpu']:.1f} s, other processes "
            f"{r['others_cpu']:.1f} s; Dataset.construct "
            f"{r['construct_s']:.2f} s + train {r['train_s']:.2f} s); max |raw score - ours| "
            f"{r['max_abs_diff']:.2e}; load average {_load()}",
            flush=True,
        )
        refs.append(r)
        print(f"ours: run_train, {run} (fresh process) ...", flush=True)
        r = _in_child(ctx, run_ours_pipeline, params_path, training, model_dir, False)
        print(
            f"  {r['seconds']:.2f} s (cpu {r['cpu']:.1f} s, other processes "
            f"{r['others_cpu']:.1f} s); best iteration "
            f"{r['best_iteration']}, calibration {r['calibration']}; load average {_load()}",
            flush=True,
        )
        pipes.append(r)
    o, ref, pipe = _best(ours), _best(refs), _best(pipes)

    # ------------------------------------------------------------------------------ report
    lgb_params = o["lgb_params"]
    rows, feats = o["rows"], o["features"]
    threads = lgb_params.get("num_threads", "default")
    print()
    print(
        f"training: {rows:,} train rows x {feats} features ({o['categorical']} categorical), "
        f"validation {o['valid_rows']:,} rows; {o['trees']} trees built ({o['best_iteration']} "
        f"kept); LightGBM {ref['lightgbm']}, num_threads {threads}; {cores} cores; "
        f"best of {args.repeat}"
    )
    header = (
        f"{'measurement':<32} {'seconds':>8} {'cpu s':>7} {'others':>7} "
        f"{'vs reference':>13} {'peak Δ MiB':>11} {'total peak':>11}"
    )
    print(header)
    print("-" * len(header))

    def line(name: str, seconds: float, r: dict | None = None) -> None:
        cpu = f"{r['cpu']:>7.1f} {r['others_cpu']:>7.1f}" if r else f"{'':>7} {'':>7}"
        rat = f"{seconds / ref['seconds']:>13.2f}" if r else f"{'':>13}"
        mem = (
            f"{r['peak_increment'] / MiB:>11.0f} {r['peak_total'] / MiB:>11.0f}"
            if r
            else f"{'':>11} {'':>11}"
        )
        print(f"{name:<32} {seconds:>8.2f} {cpu} {rat} {mem}")

    line("reference: Dataset.construct", ref["construct_s"])
    line("reference: lgb.train", ref["train_s"])
    line("reference (construct + train)", ref["seconds"], ref)
    line("ours: train_booster", o["seconds"], o)
    line("ours: run_train (whole step)", pipe["seconds"], pipe)
    print(
        "cpu s = this process's CPU time; others = CPU seconds other processes of the "
        "machine used meanwhile (contention: LightGBM's OpenMP threads slow down sharply when "
        "a core is taken)"
    )
    print(
        "peak Δ = peak RSS during the timed part minus RSS before it (run_train: includes "
        "reading Parquet); total peak = the process's ru_maxrss"
    )
    print()
    print("run_train phases:")
    accounted = 0.0
    for name, sec in sorted(pipe["phases"].items(), key=lambda kv: -kv[1]):
        accounted += sec
        print(f"  {name:<40} {sec:>8.2f} s  {sec / pipe['seconds']:>6.1%}")
    other = pipe["seconds"] - accounted
    print(f"  {'other (meta, manifest, ...)':<40} {other:>8.2f} s  {other / pipe['seconds']:>6.1%}")
    print()
    for name, sec in (("train_booster", o["seconds"]), ("run_train", pipe["seconds"])):
        ratio = sec / ref["seconds"]
        verdict = "MEETS" if ratio <= 2.0 else "MISSES"
        print(
            f"target 'within 2x of bare lightgbm.train': ours {name} {verdict} it "
            f"({ratio:.2f}x the reference)"
        )
    busy = [
        (name, r)
        for name, runs in (("reference", refs), ("train_booster", ours), ("run_train", pipes))
        for r in runs
        if r["others_cpu"] > 0.1 * r["seconds"]
    ]
    for name, r in busy:
        print(
            f"WARNING: other processes used {r['others_cpu']:.0f} CPU s during a {name} run "
            f"of {r['seconds']:.0f} s: its time is inflated; rerun with --reuse-data on a "
            "quiet machine (or --repeat 2+)"
        )
    if args.profile:
        print("\ncProfile of one more run of run_train (cumulative):", flush=True)
        print(_in_child(ctx, run_ours_pipeline, params_path, training, model_dir, True)["profile"])

    problems: list[str] = []
    expected = min(o["best_iteration"] + o["early_stopping_rounds"], o["num_boost_round"])
    if o["trees"] != expected:
        problems.append(
            f"ours ran {o['trees']} rounds, expected min(best iteration + patience, "
            f"num_boost_round) = {expected}"
        )
    if any(r["trees"] != o["trees"] or r["best_iteration"] != o["best_iteration"] for r in ours):
        problems.append(
            f"train_booster runs differ: {[(r['best_iteration'], r['trees']) for r in ours]}"
        )
    if any(r["trees"] != o["trees"] for r in refs):
        problems.append(
            f"the reference built {[r['trees'] for r in refs]} trees, ours {o['trees']}"
        )
    worst = max(r["max_abs_diff"] for r in refs)
    if not worst <= ATOL:
        problems.append(
            f"raw validation scores (first {o['best_iteration']} trees) differ: "
            f"max |reference - ours| {worst:.3g} > {ATOL:g}"
        )
    for r in pipes:
        if r["best_iteration"] != o["best_iteration"] or r["trees"] != o["trees"]:
            problems.append(
                f"run_train: best iteration {r['best_iteration']}, {r['trees']} "
                f"rounds; train_booster: {o['best_iteration']}, {o['trees']}"
            )
        if r["lgb_params"] != lgb_params:
            problems.append(
                f"run_train handed lgb.train other params than train_booster did: {r['lgb_params']}"
            )
    print()
    if problems:
        print("CHECKS FAILED:")
        for p in problems:
            print("  " + p)
        return 1
    print(
        f"checks passed: the reference built the same {o['trees']} trees as ours (raw "
        f"validation scores of the first {o['best_iteration']} agree within {ATOL:g}: max "
        f"diff {worst:.1e}); run_train ran the same rounds with the same params and chose the "
        f"same best iteration"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
