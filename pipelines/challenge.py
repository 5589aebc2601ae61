"""Champion against challenger: compare on the newest window neither learned from, then promote.

A challenger (a `leadscore train` folder) and the champion (``models:/<name>@champion``) are
scored on the challenger's test split: the newest out-of-time snapshots, which the challenger's
booster never saw; the champion must not have learned from them either (its training range
must end before the window, else the comparison is refused). The differences (challenger -
champion) carry lead-clustered, paired bootstrap intervals (:func:`models.intervals.
clustered_bootstrap`). The policy in params.yaml ``promote`` decides, rule by rule:

- the primary metric (ROC AUC) gains at least ``min_gain`` and its interval lies above 0;
- calibration (ECE) is no worse by more than ``max_ece_increase``;
- each stage's conversion rate (SQL, MQL, each model with its own cutoffs and gates) is at
  least ``min_stage_rate_ratio`` of the champion's.

Before any alias moves, the migration is shown: the open leads as of the scoring date, scored
by both, and how many would change stage, by segment. Promotion registers the challenger (alias
``challenger``), moves ``champion`` to it and ``previous`` to the old champion; ``rollback``
swaps ``champion`` and ``previous`` back. The decision, the comparison and the migration are
recorded on the challenger's version (tags) and its MLflow run (artifacts).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.intervals import clustered_bootstrap
from pipelines.params import check_known

log = logging.getLogger(__name__)

CHALLENGER, CHAMPION, PREVIOUS = "challenger", "champion", "previous"
JUDGED_STAGES = ("SQL", "MQL")
NOT_SCORED = "not scored"


@dataclass(frozen=True)
class PromotionPolicy:
    """When a challenger replaces the champion (params.yaml ``promote``)."""

    metric: str = "roc_auc"
    min_gain: float = 0.005
    max_ece_increase: float = 0.01
    min_stage_rate_ratio: float = 0.8
    min_stage_leads: int = 30
    n_boot: int = 1000
    confidence: float = 0.95
    segment: str = "source"

    @classmethod
    def from_params(cls, settings: Mapping[str, Any]) -> PromotionPolicy:
        """The policy from ``promote``; unknown keys or impossible values: a one-line error."""
        check_known("promote", settings, cls.__dataclass_fields__)
        policy = cls(**settings)
        if policy.metric not in ("roc_auc", "pr_auc"):
            raise ValueError(f"promote.metric must be roc_auc or pr_auc, got {policy.metric!r}")
        if not 0 <= policy.min_stage_rate_ratio <= 1 or policy.n_boot < 100:
            raise ValueError(
                "promote: min_stage_rate_ratio must be in [0, 1] and n_boot at least 100"
            )
        if not 0 < policy.confidence < 1:
            raise ValueError(f"promote.confidence must be between 0 and 1, got {policy.confidence}")
        return policy


def check_window(
    champion_meta: Mapping[str, Any], window: pd.DataFrame, who: str = "champion"
) -> None:
    """Refuse a window the model learned from or was tuned on (its booster's snapshots, or the
    validation split its early stopping read, reach into it)."""
    from pipelines.modeling import last_seen

    last, first = last_seen(champion_meta), pd.Timestamp(window["as_of"].min())
    if last is not None and last >= first:
        raise ValueError(
            f"the {who} learned from snapshots up to {last:%Y-%m-%d}, inside the comparison "
            f"window (from {first:%Y-%m-%d}): compare on a later window (rebuild the training "
            "set from a newer CRM export)"
        )


def difference(entry: Mapping[str, Any]) -> str:
    """A difference with its interval, "+0.0123 [+0.0010, +0.0240]" ("[n/a]" without one)."""
    if entry.get("low") is None:
        return f"{entry['value']:+.4f} [n/a]"
    return f"{entry['value']:+.4f} [{entry['low']:+.4f}, {entry['high']:+.4f}]"


def stage_rates(y: np.ndarray, stages: pd.Series) -> dict[str, dict[str, float]]:
    """Per judged stage: leads (snapshots) and their conversion rate."""
    out = {}
    for stage in JUDGED_STAGES:
        at = (stages == stage).to_numpy()
        out[stage] = {
            "rows": int(at.sum()),
            "conversion_rate": float(y[at].mean()) if at.any() else float("nan"),
        }
    return out


def compare(
    champion: Any, challenger: Any, window: pd.DataFrame, policy: PromotionPolicy
) -> dict[str, Any]:
    """Score ``window`` (a training-set split: features, ``label``, ``lead_id``) with both
    models (:class:`pipelines.scoring.ScoringModel`) and judge the challenger by ``policy``:
    metrics with intervals, differences, stage conversion rates, each rule and the decision."""
    y = window["label"].to_numpy().astype(int)
    scored = {
        "champion": champion.scorer.score(window),
        "challenger": challenger.scorer.score(window),
    }
    boot = clustered_bootstrap(
        y,
        {k: s["probability"].to_numpy() for k, s in scored.items()},
        window["lead_id"].astype(str).to_numpy(),
        n_boot=policy.n_boot,
        alpha=1 - policy.confidence,
        pairs=(("challenger", "champion"),),
        ratios=(),
    )
    diff = boot["differences"]["challenger_vs_champion"]
    rates = {k: stage_rates(y, s["stage"]) for k, s in scored.items()}
    rules = []
    gain = diff[policy.metric]
    rules.append(
        {
            "rule": f"{policy.metric} gain >= {policy.min_gain} with its "
            f"{policy.confidence:.0%} interval above 0",
            # No interval (every replicate drew one class): nothing shows it is above 0.
            "passed": bool(
                gain["value"] >= policy.min_gain and gain["low"] is not None and gain["low"] > 0
            ),
            "value": difference(gain),
        }
    )
    ece = diff["ece"]
    rules.append(
        {
            "rule": f"ECE increase <= {policy.max_ece_increase}",
            "passed": bool(ece["value"] <= policy.max_ece_increase),
            "value": difference(ece),
        }
    )
    for stage in JUDGED_STAGES:
        before, after = rates["champion"][stage], rates["challenger"][stage]
        if before["rows"] < policy.min_stage_leads or not before["conversion_rate"] > 0:
            rules.append({"rule": f"{stage} conversion rate", "passed": True,
                          "value": f"not judged: {before['rows']} champion rows"})  # fmt: skip
            continue
        ratio = (after["conversion_rate"] if after["rows"] else 0.0) / before["conversion_rate"]
        rules.append(
            {
                "rule": f"{stage} conversion rate >= {policy.min_stage_rate_ratio:.0%} of the champion's",
                "passed": bool(ratio >= policy.min_stage_rate_ratio),
                "value": f"{after['conversion_rate']:.2%} vs {before['conversion_rate']:.2%} "
                f"({ratio:.0%}; {after['rows']} vs {before['rows']} rows)",
            }
        )
    window_range = f"{window['as_of'].min():%Y-%m-%d}..{window['as_of'].max():%Y-%m-%d}"
    return {
        "window": {"range": window_range, "rows": len(window),
                   "leads": int(window["lead_id"].nunique()), "positives": int(y.sum())},
        "scorers": boot["scorers"],
        "differences": diff,
        "stage_rates": rates,
        "rules": rules,
        "promote": all(r["passed"] for r in rules),
        "policy": asdict(policy),
    }  # fmt: skip


def migration(before: pd.DataFrame, after: pd.DataFrame, segment: pd.Series | None) -> pd.DataFrame:
    """Open leads by stage under the champion (``before``) and the challenger (``after``): one
    row per segment and (from, to) pair that changes, with the count; ``segment`` per lead id."""
    # Outer: a lead only one model scores (another population age cap) is a change too.
    both = before[["lead_id", "stage"]].merge(
        after[["lead_id", "stage"]], on="lead_id", suffixes=("_now", "_new"), how="outer"
    )
    both[["stage_now", "stage_new"]] = (
        both[["stage_now", "stage_new"]].astype(object).fillna(NOT_SCORED)
    )
    both["segment"] = (
        both["lead_id"].map(segment).astype(object).fillna("(none)").astype(str)
        if segment is not None
        else "all"
    )
    moved = both[both["stage_now"] != both["stage_new"]]
    table = (
        moved.groupby(["segment", "stage_now", "stage_new"], observed=True)
        .size()
        .rename("leads")
        .reset_index()
        .sort_values(["leads", "segment"], ascending=[False, True], ignore_index=True)
    )
    total = pd.DataFrame({"segment": ["(all)"], "stage_now": ["any"], "stage_new": ["other"],
                          "leads": [len(moved)]})  # fmt: skip
    return pd.concat([table, total], ignore_index=True)


def record(
    client: Any, name: str, version: str, run_id: str, comparison: dict, moved: pd.DataFrame,
    decision: str,
) -> None:  # fmt: skip
    """The decision on the challenger's version (tags) and the comparison and migration in its
    run (artifacts)."""
    import mlflow

    tags = {
        "promotion.decision": decision,
        "promotion.window": comparison["window"]["range"],
        "promotion.gain": difference(comparison["differences"][comparison["policy"]["metric"]]),
        "promotion.failed_rules": "; ".join(
            r["rule"] for r in comparison["rules"] if not r["passed"]
        )
        or "none",
        "promotion.leads_changing_stage": str(int(moved["leads"].iloc[-1])) if len(moved) else "0",
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    with mlflow.start_run(run_id=run_id):
        mlflow.log_dict(comparison, "promotion/comparison.json")
        mlflow.log_text(moved.to_csv(index=False), "promotion/migration.csv")


def move_aliases(client: Any, name: str, new_champion: str) -> str | None:
    """``champion`` to ``new_champion``, ``previous`` to the old champion (returned)."""
    try:
        old = client.get_model_version_by_alias(name, CHAMPION).version
    except Exception:  # noqa: BLE001 - MLflow raises a generic RestException when absent
        old = None
    if old is not None and str(old) != str(new_champion):
        client.set_registered_model_alias(name, PREVIOUS, old)
    client.set_registered_model_alias(name, CHAMPION, new_champion)
    return old


def rollback(client: Any, name: str) -> tuple[str, str]:
    """Swap ``champion`` and ``previous`` (so a rollback can itself be undone); returns (the
    champion now, the one it replaced)."""
    try:
        previous = client.get_model_version_by_alias(name, PREVIOUS).version
    except Exception as error:  # noqa: BLE001
        raise ValueError(
            f"{name} has no version with the alias {PREVIOUS!r}: nothing to roll back to"
        ) from error
    current = client.get_model_version_by_alias(name, CHAMPION).version
    client.set_registered_model_alias(name, CHAMPION, previous)
    client.set_registered_model_alias(name, PREVIOUS, current)
    return str(previous), str(current)


def write_report(out: Path, comparison: dict, moved: pd.DataFrame) -> None:
    """comparison.json and migration.csv in ``out`` (the project's writers)."""
    from features.outputs import write_csv, write_json

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "comparison.json", json.loads(json.dumps(comparison, default=float)))
    write_csv(out / "migration.csv", moved)


def run_challenge(
    params: dict[str, Any],
    model_dir: str | Path,
    evaluation: str | Path,
    training: str | Path,
    crm: str | Path,
    params_path: str | Path = "params.yaml",
    explain: str | Path | None = None,
    as_of: str | None = None,
    dry_run: bool = False,
    out: str | Path | None = None,
) -> dict[str, Any]:
    """The challenger in ``model_dir`` against the champion (see the module doc): compare on the
    test split of ``training``, show the migration of the open leads of ``crm`` as of ``as_of``
    (default: the scoring job's), then (unless ``dry_run``) register the challenger and promote
    it if the policy says so. Returns a summary; ``out``: comparison.json and migration.csv."""
    import mlflow

    from pipelines.modeling import read_split
    from pipelines.params import section
    from pipelines.registry import run_register
    from pipelines.score_job import resolve_as_of, score_crm, validated_tables
    from pipelines.scoring import load_scoring_model
    from pipelines.tracking import tracking_uri

    name = section(params, "register")["model_name"]
    policy = PromotionPolicy.from_params(section(params, "promote"))
    mlflow.set_tracking_uri(tracking_uri())
    client = mlflow.MlflowClient()
    challenger = load_scoring_model(str(model_dir))
    try:
        champion = load_scoring_model(f"models:/{name}@{CHAMPION}")
    except LookupError:
        champion = None
    summary: dict[str, Any] = {"model_name": name, "dry_run": dry_run}
    if champion is None:  # the first model: nothing to compare with
        summary["decision"] = "first model: it becomes the champion"
        if not dry_run:
            summary |= run_register(params, model_dir, evaluation, training, params_path, explain)
            if not summary.get("registered"):
                summary["decision"] = "first model, not registered: " + "; ".join(
                    summary.get("refused", [])
                )
        return summary

    from pipelines.tracking import model_digest

    if champion.tags.get("model_digest") == model_digest(model_dir):
        summary["decision"] = f"{model_dir} is the champion already (version {champion.version})"
        return summary
    window = read_split(Path(training), "test")
    check_window(champion.scorer.meta, window)
    check_window(challenger.scorer.meta, window, "challenger")
    comparison = compare(champion, challenger, window, policy)
    at, _ = resolve_as_of(params, crm, as_of)
    tables = validated_tables(params, crm, at).tables
    before = score_crm(params, tables, champion, at)[0]
    after = score_crm(params, tables, challenger, at)[0]
    leads = tables["leads"]
    segment = (
        leads.set_index(leads["lead_id"].astype(str))[policy.segment]
        if policy.segment in leads.columns
        else None
    )
    before["lead_id"], after["lead_id"] = (
        before["lead_id"].astype(str),
        after["lead_id"].astype(str),
    )
    moved = migration(before, after, segment)
    decision = "promoted" if comparison["promote"] else "not promoted"
    summary |= {
        "champion_version": champion.version,
        "comparison": comparison,
        "migration": moved.to_dict(orient="records"),
        "open_leads": len(before),
        "as_of": str(at),
        "decision": decision if not dry_run else f"dry run: would be {decision}",
    }
    if out is not None:
        write_report(Path(out), comparison, moved)
    if dry_run:
        return summary
    registered = run_register(params, model_dir, evaluation, training, params_path, explain)
    if not registered.get("registered"):
        summary["decision"] = "not registered: " + "; ".join(registered.get("refused", []))
        return summary
    version = str(registered["version"])
    client.set_registered_model_alias(name, CHALLENGER, version)
    run_id = client.get_model_version(name, version).run_id
    record(client, name, version, run_id, comparison, moved, decision)
    summary["challenger_version"] = version
    if comparison["promote"]:
        summary["previous_version"] = move_aliases(client, name, version)
        log.info("%s version %s promoted to champion (previous: %s)", name, version,
                 summary["previous_version"])  # fmt: skip
    else:
        log.info("%s version %s stays challenger: %s", name, version, "; ".join(
            r["rule"] for r in comparison["rules"] if not r["passed"]))  # fmt: skip
    return summary
