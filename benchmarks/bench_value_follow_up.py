"""Benchmark: the nightly job with lead value and follow-up fields, against the same job without
them, measured in the same process.

Target: ``with`` within 1.1x of ``without``, where both are the scoring job from validated tables
to Parquet files (``pipelines.score_job.run_score``, reasons in words included, as the nightly
job runs), on the second night (the sink holds the first night's stages, as in production):

- ``without``: the model without its value model (``value`` taken out of a copy of its
  ``model_meta.json``), and no company activity read (no follow-up: ``last_sales_touch_at`` and
  ``follow_up_due`` are left empty);
- ``with``: the model as trained: expected amount and value, the reasons for the amount, the last
  sales touch of each lead, the stage carried over from the night before, follow_up_due.

Runs alternate, and so does their order (without then with, with then without, ...): the second
run of a pair is slower (measured: with always second, 1.30x; alternated, 1.07x); the best of
``--repeat`` is the figure, the medians are printed beside it.
Data: the demo CRM (``make demo`` output) with its open leads replicated, as
``benchmarks/bench_scoring.py`` does.

    .venv/bin/python benchmarks/bench_value_follow_up.py                 # 100,000 open leads
    .venv/bin/python benchmarks/bench_value_follow_up.py --no-reasons    # the strict comparison
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from _process import REPO, MiB, cores, maxrss_bytes

sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).parent))

import yaml  # noqa: E402
from bench_scoring import replicate_open_leads  # noqa: E402

from features.readers import read_crm  # noqa: E402
from models.value import VALUE_BOOSTER  # noqa: E402
from pipelines import score_job  # noqa: E402
from pipelines.scoring import open_leads  # noqa: E402


def without_value(model: Path, to: Path) -> Path:
    """A copy of the model folder whose metadata has no value model."""
    shutil.copytree(model, to)
    meta = json.loads((to / "model_meta.json").read_text())
    meta.pop("value", None)
    (to / "model_meta.json").write_text(json.dumps(meta))
    (to / VALUE_BOOSTER).unlink(missing_ok=True)
    return to


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--leads", type=int, default=100_000)
    parser.add_argument("--data", type=Path, default=REPO / "data")
    parser.add_argument("--params", type=Path, default=REPO / "params.yaml")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument(
        "--reasons",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="Reasons in words in both variants, as the nightly job writes them (--no-reasons: "
        "without, so that the value and follow-up work is a larger share).",
    )
    args = parser.parse_args()

    params = yaml.safe_load(args.params.read_text())
    tables = read_crm(args.data / "validated")
    as_of = pd.Timestamp(
        json.loads((args.data / "validated" / "crm_meta.json").read_text())["extracted_at"]
    )
    meta = json.loads((args.data / "model" / "model_meta.json").read_text())
    if "value" not in meta:
        print("the model in data/model has no value model: run `make demo` first")
        return 1
    max_age = (meta.get("population") or {}).get("max_age_days")
    big = replicate_open_leads(tables, as_of, args.leads, max_age)
    _, counts = open_leads(big, as_of, max_age)
    print(
        f"value and follow-up benchmark: {counts['open']:,} open leads, {len(big['events']):,} "
        f"events, {cores()} cores, best of {args.repeat}, "
        f"{'with' if args.reasons else 'without'} reasons in words"
    )
    seconds: dict[str, list[float]] = {"without": [], "with": []}
    company_types = score_job.company_types
    with tempfile.TemporaryDirectory(prefix="leadscore-bench-") as tmp:
        plain = without_value(args.data / "model", Path(tmp) / "model-without-value")
        for attempt in range(args.repeat):
            for variant in ("with", "without") if attempt % 2 else ("without", "with"):
                settings = copy.deepcopy(params)
                model = plain if variant == "without" else args.data / "model"
                settings["score"].update(model_uri=str(model), rejects=None)
                settings["score"]["drift"] = {**settings["score"]["drift"], "plot": None}
                if not args.reasons:
                    settings["score"]["reasons"] = {**settings["score"]["reasons"], "top_k": 0}
                score_job.company_types = (lambda *_: []) if variant == "without" else company_types
                sink = Path(tmp) / f"{variant}-{attempt}"
                night = pd.Timestamp(as_of) - pd.Timedelta(days=3)
                score_job.run_score(settings, big, to=str(sink), as_of=str(night), create=True)
                start = time.perf_counter()
                summary = score_job.run_score(
                    settings, big, to=str(sink), as_of=str(as_of), create=True
                )
                seconds[variant].append(time.perf_counter() - start)
                follow = summary.get("follow_up") or {}
                print(
                    f"  {variant:<8} night 2: {seconds[variant][-1]:6.1f} s, "
                    f"{summary['leads_written']:,} written, follow-up due {follow.get('due')}",
                    flush=True,
                )
        score_job.company_types = company_types
        current = pd.read_parquet(Path(tmp) / f"with-{args.repeat - 1}" / "lead_scores.parquet")
    best = {k: min(v) for k, v in seconds.items()}
    median = {k: float(pd.Series(v).median()) for k, v in seconds.items()}
    ratio = best["with"] / best["without"]
    filled = current["expected_value"].notna().mean()
    print(
        f"\nwith / without = {best['with']:.1f} / {best['without']:.1f} s = {ratio:.3f}x "
        f"(target <= 1.1x); expected value on {filled:.0%} of the leads; "
        f"{counts['open'] / best['with']:,.0f} leads/s with"
    )
    print(
        f"medians: {median['with']:.1f} / {median['without']:.1f} s = "
        f"{median['with'] / median['without']:.3f}x"
    )
    print(f"peak resident memory of this process: {maxrss_bytes() / MiB:,.0f} MiB")
    return 0 if ratio <= 1.1 else 1


if __name__ == "__main__":
    sys.exit(main())
