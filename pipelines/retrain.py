"""`leadscore retrain`: the latest closed outcomes to a challenger, compared with the champion.

One command for the monthly job a data scientist schedules: the CRM export is validated,
labelled as of a cutoff (``--as-of``, else the export's own date: only snapshots whose label
window had closed by then), its features built point in time, split out of time, a model
trained (tracked in MLflow) and evaluated, then put against the champion by
:func:`pipelines.challenge.run_challenge`: both scored on the newest out-of-time window (the
challenger's test split, which the champion must not have learned from), the migration of the
open leads shown, the challenger registered and promoted only if params.yaml ``promote`` says
so (``--dry-run``: nothing registered, no alias moved).

Each step is the same function as the DVC stage of that name; everything is written under one
work folder (``validated/``, ``labels/``, ``features/``, ``training/``, ``model/``,
``evaluation/``, ``challenge/``), so a retrain never touches the DVC pipeline's outputs.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STEPS = ("validate", "label", "features", "training set", "train", "evaluate", "challenge")


def run_retrain(
    params: dict[str, Any],
    source: str | Path,
    work: str | Path,
    as_of: str | None = None,
    dry_run: bool = False,
    params_path: str | Path = "params.yaml",
    oracle: str | Path | None = None,
    mapping: str | Path | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Retrain on the CRM export at ``source`` with labels known on ``as_of`` (module doc);
    returns the training manifest, the test metrics and the challenge's summary."""
    from pipelines.challenge import run_challenge
    from pipelines.modeling import run_evaluate, run_train
    from pipelines.params import section
    from pipelines.steps import run_features, run_label, run_training_set, run_validate
    from pipelines.tracking import log_evaluation

    params = copy.deepcopy(params)
    if as_of is not None:
        params["label"]["as_of"] = as_of
    if mapping is not None:
        params["crm"]["mapping"] = str(mapping)
    work = Path(work)
    folders = {
        name: work / name
        for name in ("validated", "rejects", "training", "model", "evaluation", "challenge")
    }
    labels = work / "labels" / "labelled_snapshots.parquet"
    features = work / "features" / "features.parquet"

    def step(i: int, what: str) -> None:
        log.info("retrain: step %d of %d, %s", i, len(STEPS), what)

    step(1, f"validating {source}")
    run_validate(params, source, folders["validated"], folders["rejects"], progress=progress)
    step(2, "labelling" + (f" as of {as_of}" if as_of else ""))
    labelled = run_label(params, folders["validated"], labels)
    step(3, f"building features of {labelled['labelled']:,} labelled snapshots")
    run_features(params, folders["validated"], labels, features, progress=progress)
    step(4, "splitting out of time")
    manifest = run_training_set(params, features, labels, folders["validated"], folders["training"])
    step(5, "training the challenger")
    run_train(
        params, folders["training"], folders["model"], validated=folders["validated"],
        track=True, params_path=params_path,
    )  # fmt: skip
    step(6, "evaluating it on the test split")
    metrics = run_evaluate(
        params, folders["training"], folders["model"], folders["evaluation"], oracle
    )
    log_evaluation(
        folders["model"], folders["evaluation"], section(params, "register")["experiment"]
    )
    step(7, "against the champion" + (" (dry run)" if dry_run else ""))
    challenge = run_challenge(
        params, folders["model"], folders["evaluation"], folders["training"], source,
        params_path=params_path, as_of=as_of, dry_run=dry_run, out=folders["challenge"],
    )  # fmt: skip
    return {
        "labels_known_on": labelled["labels_known_on"],
        "manifest": manifest,
        "metrics": metrics,
        "challenge": challenge,
    }
