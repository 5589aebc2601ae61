"""Benchmark: explaining leads (contributions, grouping, words) against the contributions alone.

Target (issue 15): explaining 100,000 snapshots, i.e. what the CRM's reasons and the registered
model's output cost (``LeadExplainer.contributions`` then ``LeadExplainer.reasons``: groups summed
from the catalog, the strongest member and its recency said in words), at no more than 1.2x the
fast contributions alone on the same rows, and at least 20x faster than bare LightGBM
``pred_contrib``. Timed in this one process on the same feature matrix, interleaved, best of
``--repeat``:

- ``pred_contrib``: ``booster.predict(x, pred_contrib=True)`` (LightGBM's TreeSHAP);
- ``contributions``: ``LeadExplainer.contributions(x)`` (the exact fast path);
- ``explain``: contributions, then ``LeadExplainer.reasons`` (3 each way) on the same rows, with
  the explainer's phrase book kept from the previous call (as the nightly job's batches and the
  registered model's calls keep it: each distinct value is described the first time only);
- ``explain_new_book``: the same with an empty phrase book (every phrase described again).

Data: rows resampled from ``data/training/*.parquet`` (``make demo``) and the model in
``data/model`` with its catalog (or, for a model trained before the catalog was stored, the
builders' specs). Check (exit 1 if not): contributions equal ``pred_contrib`` to 1e-9.

    .venv/bin/python benchmarks/bench_explain.py                  # 100,000 rows
    .venv/bin/python benchmarks/bench_explain.py --rows 20000     # quick
"""

from __future__ import annotations

import argparse
import json
import sys

from _process import REPO
from _process import cores as _cores
from _process import load_average as _load
from _process import setup_path as _setup_path
from bench_reasons import build_rows, timed

ATOL = 1e-9


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--model", default="data/model", help="a `leadscore train` folder")
    ap.add_argument("--training", default="data/training")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", default="benchmarks/out/explain.json")
    args = ap.parse_args(argv)

    _setup_path()
    import numpy as np
    import pandas as pd

    from pipelines.params import load_params, section
    from pipelines.scoring import explainer_for, load_scoring_model

    model = load_scoring_model(str(REPO / args.model))
    names = model.features
    x, pool, _ = build_rows(REPO / args.training, names, args.rows, args.seed)
    # The reasons read the leads' values as the training set holds them (text, not category).
    features = pd.DataFrame(
        {c: x[c].astype(object) if isinstance(x[c].dtype, pd.CategoricalDtype) else x[c] for c in x}
    )
    # The labels and groups the scoring job uses for this model.
    explainer = explainer_for(model, section(load_params(REPO / "params.yaml"), "features"))
    print(
        f"machine: {_cores()} cores, load {_load()}; {len(x):,} rows from {pool:,}; "
        f"{len(names)} features in {len(explainer.groups.keys)} groups; "
        f"{model.scorer.booster.num_trees()} trees"
    )
    # Built once per model and process, not per call: the lookup tables and the compiled reasons
    # kernel (numba, cached on disk after the first run).
    explainer.reasons(features.head(1000), explainer.contributions(x.head(1000)))

    def explain():
        contributions = explainer.contributions(x)
        return explainer.reasons(features, contributions)

    def explain_new_book():
        explainer.phrases.clear()
        return explain()

    runs: dict[str, list[dict]] = {
        "pred_contrib": [], "contributions": [], "explain": [], "explain_new_book": []
    }  # fmt: skip
    for _ in range(args.repeat):
        reference, r = timed(lambda: model.scorer.booster.predict(x, pred_contrib=True))
        runs["pred_contrib"].append(r)
        ours, r = timed(lambda: explainer.contributions(x))
        runs["contributions"].append(r)
        said, r = timed(explain)
        runs["explain"].append(r)
        _, r = timed(explain_new_book)
        runs["explain_new_book"].append(r)
    best = {k: min(v, key=lambda r: r["seconds"]) for k, v in runs.items()}
    diff = float(np.max(np.abs(ours - reference)))
    over = best["explain"]["seconds"] / best["contributions"]["seconds"]
    over_new = best["explain_new_book"]["seconds"] / best["contributions"]["seconds"]
    faster = best["pred_contrib"]["seconds"] / best["explain"]["seconds"]
    for k, r in best.items():
        print(f"  {k:16s} {r['seconds']:7.2f} s  ({r['cpu']:.2f} s CPU)")
    print(
        f"explain / contributions alone: {over:.2f}x (target <= 1.2; {over_new:.2f}x with a new "
        f"phrase book); pred_contrib / explain: "
        f"{faster:.1f}x (target >= 20); max |contributions - pred_contrib| {diff:.2g}; "
        f"rows with a reason: {(said['reasons_for'] != '').mean():.0%} for, "
        f"{(said['reasons_against'] != '').mean():.0%} against"
    )
    out = REPO / args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "rows": len(x),
                "best_seconds": {k: r["seconds"] for k, r in best.items()},
                "explain_over_contributions": over,
                "explain_new_book_over_contributions": over_new,
                "pred_contrib_over_explain": faster,
                "max_abs_diff": diff,
                "load_average": _load(),
            },
            indent=1,
        )
        + "\n"
    )
    return 0 if diff <= ATOL else 1


if __name__ == "__main__":
    sys.exit(main())
