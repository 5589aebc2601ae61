"""Model quality on the synthetic CRM, next to its oracle, at more than one size (issue 14).

The synthetic CRM knows each snapshot's true probability of conversion (the oracle), so the
model's out-of-time ROC AUC can be put as a share of the best any model could reach on the same
test rows. That share depends on how much the model has to learn from: the demo's 30,000 leads
leave about 400 won leads in the training split of the lead-scoring population, too few to learn
the oracle's shape. This runs the pipeline's own steps (generate, validate, label, features,
training set, train with the search, evaluate with the oracle and lead-clustered intervals) with
params.yaml as it is, once per ``--n-leads`` size, and writes one row per size::

    .venv/bin/python benchmarks/quality_synthetic.py                       # 30,000 and 150,000
    .venv/bin/python benchmarks/quality_synthetic.py --n-leads 30000      # the demo size only

Results: a table in the log and JSON in ``benchmarks/out/quality_synthetic.json``. Target:
model / oracle ROC AUC at least 0.97 with its interval, calibrated ECE no worse than
uncalibrated (their paired difference's interval reported beside).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "out" / "quality_synthetic.json"

log = logging.getLogger("quality_synthetic")


def one_size(params: dict[str, Any], n_leads: int, work: Path) -> dict[str, Any]:
    """The pipeline end to end on a synthetic CRM of ``n_leads`` leads; the figures of one row."""
    from pipelines.modeling import run_evaluate, run_train
    from pipelines.steps import (
        run_features,
        run_generate,
        run_label,
        run_training_set,
        run_validate,
    )

    started = time.perf_counter()
    run_generate(params, work / "crm", work / "oracle.parquet", n_leads=n_leads)
    run_validate(params, work / "crm", work / "validated", work / "rejects")
    run_label(params, work / "validated", work / "labels.parquet")
    run_features(params, work / "validated", work / "labels.parquet", work / "features.parquet")
    manifest = run_training_set(
        params, work / "features.parquet", work / "labels.parquet", work / "validated",
        work / "sets",
    )  # fmt: skip
    data_seconds = time.perf_counter() - started
    started = time.perf_counter()
    meta = run_train(params, work / "sets", work / "model", work / "validated")
    train_seconds = time.perf_counter() - started
    metrics = run_evaluate(
        params, work / "sets", work / "model", work / "eval", oracle=work / "oracle.parquet"
    )
    scorers = metrics["intervals"]["scorers"]
    differences = metrics["intervals"]["differences"]
    return {
        "n_leads": n_leads,
        "population": manifest.get("population"),
        "splits": manifest["splits"],
        "trees": meta["best_iteration"],
        "lightgbm": {
            k: meta["lightgbm"][k] for k in ("num_leaves", "min_data_in_leaf", "learning_rate")
        },
        "calibration_method": meta["calibration"]["method"],
        "roc_auc": {name: scorers[name]["roc_auc"] for name in scorers},
        "model_over_oracle": metrics["intervals"]["ratios"]["model_over_oracle"]["roc_auc"],
        "ece": {name: scorers[name]["ece"] for name in ("model", "model_uncalibrated")},
        "ece_calibrated_minus_uncalibrated": differences["model_vs_model_uncalibrated"]["ece"],
        "model_minus_baseline_roc_auc": differences["model_vs_baseline"]["roc_auc"],
        "seconds": {"data": round(data_seconds, 1), "train": round(train_seconds, 1)},
    }


def _interval(d: dict[str, float], digits: int = 3) -> str:
    return f"{d['value']:.{digits}f} [{d['low']:.{digits}f}, {d['high']:.{digits}f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n-leads", default="30000,150000", help="comma-separated CRM sizes (leads)"
    )
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from pipelines.params import load_params

    params = load_params(ROOT / "params.yaml")
    sizes = [int(s) for s in args.n_leads.split(",") if s.strip()]
    rows = []
    for n in sizes:
        log.info("synthetic CRM of %d leads: pipeline end to end", n)
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(one_size(params, n, Path(tmp)))
        r = rows[-1]
        log.info(
            "%d leads (%d won leads in train): model / oracle ROC AUC %s; model %s, oracle %s, "
            "baseline %s; ECE calibrated %s vs uncalibrated %s (difference %s); train %.0f s",
            n, r["splits"]["train"]["won_leads"], _interval(r["model_over_oracle"]),
            _interval(r["roc_auc"]["model"]), _interval(r["roc_auc"]["oracle"]),
            _interval(r["roc_auc"]["baseline"]), _interval(r["ece"]["model"], 4),
            _interval(r["ece"]["model_uncalibrated"], 4),
            _interval(r["ece_calibrated_minus_uncalibrated"], 4), r["seconds"]["train"],
        )  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"sizes": rows}, indent=1) + "\n")
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
