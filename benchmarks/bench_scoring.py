"""Benchmark: scoring 1M open leads end to end and writing them to Parquet, against the work
that cannot be avoided, measured in the same process.

Target: ``ours`` within 1.5x of ``necessary``, where

- ``necessary`` = building the same features for the same snapshots
  (``features.build.build_features``) + a bare ``Booster.predict`` on the same feature matrix;
- ``ours`` = the scoring job from validated tables to files: open leads, features, calibrated
  probability, BANT gates, stages with reasons-for-stage, drift check (PSI of every feature and
  the scores), run ledger, Parquet history files and the current-scores file
  (``pipelines.score_job.run_score(..., to=<folder>)`` with ``score.reasons.top_k = 0``).

Reasons in words are measured separately (``ours + reasons``), and by
``benchmarks/bench_reasons.py`` against bare ``pred_contrib``.

Data: the demo CRM (``make demo`` output: data/validated, data/model) with its open leads
replicated under new ids until there are ``--leads`` of them (events and opportunities with
them; all history before the scoring instant), so the leads look like real ones. Reading and
validating the raw export is a separate step (``leadscore validate``) and is timed on its own.

    .venv/bin/python benchmarks/bench_scoring.py                 # 1,000,000 open leads
    .venv/bin/python benchmarks/bench_scoring.py --leads 100000  # quick
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _process import REPO, MiB, cores, maxrss_bytes, reset_peak, rss_bytes

sys.path.insert(0, str(REPO))

import yaml  # noqa: E402

from features.build import build_features  # noqa: E402
from features.readers import read_crm  # noqa: E402
from models.frame import feature_matrix  # noqa: E402
from pipelines.score_job import run_score  # noqa: E402
from pipelines.scoring import load_scoring_model, open_leads  # noqa: E402


def replicate_open_leads(
    tables: dict[str, pd.DataFrame], as_of: pd.Timestamp, target: int, max_age: int | None
):
    """Tables whose open leads (as of ``as_of``) are the demo's open leads copied to ``target``."""
    snapshots, _ = open_leads(tables, as_of, max_age)
    ids = pd.Index(snapshots["lead_id"])
    copies = int(np.ceil(target / len(ids)))
    leads = tables["leads"]
    leads = leads[leads["lead_id"].isin(ids)].reset_index(drop=True)
    n = len(leads)
    position = pd.Series(np.arange(n), index=leads["lead_id"].to_numpy())
    new_ids = pd.Index([f"R{c:04d}-{i}" for c in range(copies) for i in leads["lead_id"]])

    def repeat_rows(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        codes = position.reindex(frame["lead_id"].to_numpy()).to_numpy()
        keep = ~np.isnan(codes)
        frame, codes = frame[keep].reset_index(drop=True), codes[keep].astype(np.int64)
        out = frame.iloc[np.tile(np.arange(len(frame)), copies)].reset_index(drop=True)
        replica = np.repeat(np.arange(copies), len(frame))
        return out, np.tile(codes, copies) + replica * n

    big_leads = leads.iloc[np.tile(np.arange(n), copies)].reset_index(drop=True)
    big_leads["lead_id"] = new_ids.to_numpy()
    events, codes = repeat_rows(tables["events"])
    events["lead_id"] = pd.Categorical.from_codes(codes, categories=new_ids).astype(str)
    opps, opp_codes = repeat_rows(tables["opportunities"])
    opps["lead_id"] = new_ids.to_numpy()[opp_codes]
    opps["opportunity_id"] = [f"O{i}" for i in range(len(opps))]
    big = {
        "leads": big_leads.head(target * 1),
        "accounts": tables["accounts"],
        "events": events,
        "opportunities": opps,
    }
    keep_ids = set(big["leads"]["lead_id"])
    big["events"] = events[events["lead_id"].isin(keep_ids)].reset_index(drop=True)
    big["opportunities"] = opps[opps["lead_id"].isin(keep_ids)].reset_index(drop=True)
    history = tables.get("field_history")
    if history is not None:  # scoring reads BANT and firmographics as of now from it: time that
        of_leads = (history["entity"].astype(str) == "leads").to_numpy()
        changes, change_codes = repeat_rows(
            history[of_leads].rename(columns={"entity_id": "lead_id"})
        )
        changes["lead_id"] = new_ids.to_numpy()[change_codes]
        changes = changes[changes["lead_id"].isin(keep_ids)].rename(
            columns={"lead_id": "entity_id"}
        )
        big["field_history"] = pd.concat([history[~of_leads], changes], ignore_index=True)
    return big


def timed(label: str, fn, results: dict[str, dict]):
    reset_peak()
    before = rss_bytes()
    start = time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - start
    results[label] = {"seconds": seconds, "peak_increment_mib": (maxrss_bytes() - before) / MiB}
    print(
        f"  {label:<44}{seconds:>8.1f} s   peak +{results[label]['peak_increment_mib']:,.0f} MiB",
        flush=True,
    )
    return value


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=1_000_000)
    parser.add_argument("--data", type=Path, default=REPO / "data")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument(
        "--reasons",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Also time a run with reasons in words.",
    )
    args = parser.parse_args()

    params = yaml.safe_load(args.params.read_text())
    tables = read_crm(args.data / "validated")
    as_of = pd.Timestamp(
        json.loads((args.data / "validated" / "crm_meta.json").read_text())["extracted_at"]
    )
    meta = json.loads((args.data / "model" / "model_meta.json").read_text())
    max_age = (meta.get("population") or {}).get("max_age_days")
    big = replicate_open_leads(tables, as_of, args.leads, max_age)
    model = load_scoring_model(str(args.data / "model"))
    builders, behavioral = model.feature_config(params["features"])
    snapshots, counts = open_leads(big, as_of, max_age)
    print(
        f"scoring benchmark: {counts['open']:,} open leads, {len(big['events']):,} events, "
        f"{model.scorer.booster.num_trees()} trees x {len(model.features)} features, {cores()} cores"
    )
    results: dict[str, dict] = {}
    print("necessary work:")
    features = timed(
        "build_features", lambda: build_features(big, snapshots, builders, behavioral), results
    )
    x = feature_matrix(features, model.features)
    timed("bare Booster.predict", functools.partial(model.scorer.booster.predict, x), results)
    del features, x  # free them before our run
    necessary = results["build_features"]["seconds"] + results["bare Booster.predict"]["seconds"]

    print("ours:")
    quiet = copy.deepcopy(params)
    quiet["score"].update(model_uri=str(args.data / "model"), rejects=None)
    quiet["score"]["reasons"] = {**quiet["score"].get("reasons", {}), "top_k": 0}
    with tempfile.TemporaryDirectory(prefix="leadscore-bench-") as tmp:
        summary = timed(
            "run_score -> Parquet (no reasons)",
            lambda: run_score(quiet, big, to=str(Path(tmp) / "a"), as_of=str(as_of), create=True),
            results,
        )
        written = pd.read_parquet(
            Path(tmp) / "a" / "lead_scores.parquet", columns=["lead_id", "probability"]
        )
        if args.reasons:
            explained = copy.deepcopy(quiet)
            explained["score"]["reasons"]["top_k"] = 3
            timed(
                "run_score -> Parquet (with reasons)",
                lambda: run_score(
                    explained, big, to=str(Path(tmp) / "b"), as_of=str(as_of), create=True
                ),
                results,
            )
    ours = results["run_score -> Parquet (no reasons)"]["seconds"]
    ok = summary["leads_written"] == counts["open"] == len(written)
    print(
        f"\nours / necessary = {ours:.1f} / {necessary:.1f} s = {ours / necessary:.2f}x (target <= 1.5x); "
        f"{counts['open'] / ours:,.0f} leads/s; all {counts['open']:,} written: {ok}"
    )
    if args.reasons:
        with_reasons = results["run_score -> Parquet (with reasons)"]["seconds"]
        print(
            f"with reasons in words: {with_reasons:.1f} s = {with_reasons / necessary:.2f}x necessary"
        )
    print(f"peak resident memory of this process: {maxrss_bytes() / MiB:,.0f} MiB")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
