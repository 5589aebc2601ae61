"""`leadscore explain`: what a model has learned, for analysts, and why one lead scores as it does.

For a model (a registered version or a ``leadscore train`` folder) and a sample of snapshots (the
test split of a training set by default), with the contributions, groups and words of
:class:`models.explain.LeadExplainer` (the same as the CRM's reasons):

- global importance (mean |SHAP| per group, and in probability points) and a beeswarm per feature;
- dependence plots of the strongest numeric features (where an effect turns);
- cohort views: mean contribution per group for each value of the model's category features
  (lead source, industry, region, ...) and of the stage, side by side;
- per lead (``lead_ids``): a waterfall, its probability, score, stage, gates, reasons, and what
  stands between it and the next stage up;
- with ``compare``: which groups gained or lost weight from one version to the other.

Everything lands in ``out`` as PNG and CSV files plus one self-contained ``report.html`` (images
embedded, no script, nothing fetched), and, for a registered version, in its MLflow run under
``explain/``. Lead ids only: the sample holds model features, never names, emails or phones.
"""

from __future__ import annotations

import base64
import html
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from features.outputs import (
    check_writable,
    owned_files,
    refuse_overlap,
    write_csv,
    write_file,
    write_json,
)
from models import explain_plots as plots
from models.cutoffs import percent
from models.explain import LeadExplainer
from models.frame import categorical_names
from pipelines.modeling import read_split
from pipelines.params import check_known, section
from pipelines.scoring import ScoringModel, explainer_for, load_scoring_model
from pipelines.splits import SPLITS

log = logging.getLogger(__name__)

REPORT = "report.html"
#: The cohort column made from the model's own stage of each snapshot.
STAGE = "stage"
OTHER = "other"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class ExplainSettings:
    """params.yaml ``explain``: sample size and seed, how many features the views show, which
    cohort columns (None: every category feature of the model, and the stage) with how many
    values each and how many groups a cohort plot compares, and how many groups a lead's
    waterfall names."""

    sample: int = 5000
    seed: int = 0
    top_features: int = 15
    dependence: int = 6
    cohorts: tuple[str, ...] | None = None
    cohort_values: int = 6
    cohort_groups: int = 6
    lead_groups: int = 12

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> ExplainSettings:
        """The ``explain`` section, checked (unknown keys and bad sizes are one-line errors)."""
        raw = dict(section(params, "explain")) if "explain" in params else {}
        raw.pop("model_uri", None)
        known = {
            "sample", "seed", "top_features", "dependence", "cohorts", "cohort_values",
            "cohort_groups", "lead_groups",
        }  # fmt: skip
        check_known("explain", raw, known)
        if raw.get("cohorts") is not None:
            raw["cohorts"] = tuple(str(c) for c in raw["cohorts"])
        settings = cls(**raw)
        for name in ("sample", "top_features", "cohort_values", "cohort_groups", "lead_groups"):
            if int(getattr(settings, name)) < 1:
                raise ValueError(
                    f"explain.{name} must be at least 1, got {getattr(settings, name)}"
                )
        if settings.dependence < 0:
            raise ValueError(f"explain.dependence must be 0 or more, got {settings.dependence}")
        return settings


def _slug(text: str) -> str:
    return _SAFE.sub("_", str(text)).strip("_")[:60] or "x"


def sample_rows(
    frame: pd.DataFrame, size: int, seed: int, lead_ids: list[str]
) -> tuple[pd.DataFrame, dict[str, int]]:
    """``size`` snapshots drawn at random (seeded), plus the newest snapshot of each of
    ``lead_ids`` (an id with no snapshot in ``frame`` is a ``LookupError``); and the row of each
    requested lead in the result."""
    ids = frame["lead_id"].astype(str)
    missing = sorted(set(lead_ids) - set(ids))
    if missing:
        raise LookupError(
            f"{len(missing)} lead id(s) have no snapshot in the explained split: {missing[:10]}"
        )
    picked = (
        frame.sample(n=min(size, len(frame)), random_state=seed) if size < len(frame) else frame
    )
    wanted = frame[ids.isin(lead_ids)].sort_values("as_of").groupby("lead_id", sort=False).tail(1)
    rows = pd.concat([picked, wanted.drop(index=wanted.index.intersection(picked.index))])
    rows = rows.reset_index(drop=True)
    at: dict[str, int] = {}
    for lead in lead_ids:
        positions = np.flatnonzero(rows["lead_id"].astype(str).to_numpy() == lead)
        newest = positions[np.argmax(rows["as_of"].to_numpy()[positions])]
        at[lead] = int(newest)
    return rows, at


def _cohort_values(column: pd.Series, keep: int) -> pd.Series:
    """Values as text, the ``keep`` most frequent kept, the rest (and missing) grouped."""
    text = column.astype(object).where(column.notna(), "unknown").astype(str)
    top = text.value_counts().head(keep).index
    return text.where(text.isin(top), OTHER)


def _explained(
    model: ScoringModel, params: dict[str, Any], rows: pd.DataFrame, contract: Any
) -> tuple[LeadExplainer, pd.DataFrame, np.ndarray]:
    """The model's explainer, its matrix of ``rows`` and their contributions."""
    explainer = explainer_for(model, section(params, "features"), contract)
    x = model.scorer.matrix(rows)
    return explainer, x, explainer.contributions(x)


def run_explain(
    params: dict[str, Any],
    model_uri: str,
    training: str | Path,
    out: str | Path,
    lead_ids: list[str] | None = None,
    compare: str | None = None,
    split: str = "test",
    mapping: str | Path | None = None,
    log_to_mlflow: bool = True,
) -> dict[str, Any]:
    """Explain ``model_uri`` on a sample of ``split`` of the training set in ``training``; write
    the views to ``out`` (see the module doc) and return a summary."""
    from pipelines.steps import crm_contract

    refuse_overlap({"--training": training}, {"--out": out})
    if split not in SPLITS:
        raise ValueError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    out = Path(out)
    check_writable(out / REPORT, out / "importance.csv", out / "summary.json")
    settings = ExplainSettings.from_params(params)
    lead_ids = [str(i) for i in (lead_ids or [])]
    frame = read_split(Path(training), split)
    rows, at = sample_rows(frame, settings.sample, settings.seed, lead_ids)
    model = load_scoring_model(model_uri)
    contract = crm_contract(params, mapping)
    explainer, x, contributions = _explained(model, params, rows, contract)
    scored = model.scorer.score(rows, x)
    by_feature = explainer.explanation(rows, contributions)
    by_group = explainer.explanation(rows, contributions, grouped=True)
    who = f"{model.name} version {model.version}"
    where = f"{len(rows):,} snapshots of the {split} split"
    log.info("explaining %s on %s", who, where)
    top = settings.top_features
    figures: list[tuple[str, str, Path]] = []  # (section, caption, png)

    worth = explainer.probability_points(contributions)
    write_csv(out / "importance.csv", worth)
    figures.append(("Global", "What moves the probability most, on average (groups of features "
                    "that describe one behaviour are summed)",
                    plots.importance(by_group, out / "importance.png",
                                     f"{who}: importance, {where}", top)))  # fmt: skip
    figures.append(("Global", "Every lead's contribution per feature; colour: the feature's "
                    "value (red high, blue low)",
                    plots.beeswarm(by_feature, out / "beeswarm.png",
                                   f"{who}: contributions per lead, {where}", top)))  # fmt: skip

    # Dependence: the strongest numeric features (category codes have no order to read).
    categorical = set(categorical_names(x))
    strength = np.abs(by_feature.values).mean(axis=0)
    numeric = [i for i in np.argsort(-strength) if explainer.names[i] not in categorical]
    for i in numeric[: settings.dependence]:
        name = explainer.names[i]
        figures.append(("Where effects turn", by_feature.feature_names[i],
                        plots.dependence(by_feature, int(i), out / f"dependence_{_slug(name)}.png",
                                         f"{by_feature.feature_names[i]}")))  # fmt: skip

    # Cohorts: mean contribution per group, for each value of each cohort column.
    cohort_columns = (
        list(settings.cohorts)
        if settings.cohorts is not None
        else [n for n in explainer.names if n in categorical] + [STAGE]
    )
    cohort_tables = []
    for column in cohort_columns:
        source = scored[STAGE] if column == STAGE else rows.get(column)
        if source is None:
            raise ValueError(
                f"explain.cohorts names {column!r}, which is neither a column of the {split} "
                f"split nor '{STAGE}'"
            )
        values = _cohort_values(pd.Series(np.asarray(source, dtype=object)), settings.cohort_values)
        # SHAP's legend adds each cohort's row count.
        groups = {
            v: by_group[(values == v).to_numpy()].mean(0) for v in values.value_counts().index
        }
        if len(groups) < 2:
            continue
        figures.append(("Cohorts", f"By {column}: the mean contribution of each group",
                        plots.cohorts(groups, out / f"cohort_{_slug(column)}.png",
                                      f"{who}: mean contribution by {column}",
                                      settings.cohort_groups)))  # fmt: skip
        means = pd.DataFrame(
            {k: e.values for k, e in groups.items()}, index=by_group.feature_names
        ).T
        cohort_tables.append(means.rename_axis("cohort").reset_index().assign(column=column))
    if cohort_tables:
        table = pd.concat(cohort_tables, ignore_index=True)
        write_csv(out / "cohorts.csv", table)

    # Leads: a waterfall each, with what the CRM gets for it.
    reasons = explainer.reasons(rows, contributions)
    leads = []
    for lead, i in at.items():
        row = scored.iloc[i]
        title = (
            f"Lead {lead} as of {pd.Timestamp(rows['as_of'].iloc[i]).date()}: probability "
            f"{percent(row['probability'])}, score {int(row['score'])}, {row['stage']}"
        )
        png = plots.waterfall(
            explainer.lead_explanation(rows, contributions, i),
            out / f"lead_{_slug(lead)}.png", title, settings.lead_groups,
        )  # fmt: skip
        leads.append(
            {
                "lead_id": lead,
                "as_of": str(rows["as_of"].iloc[i]),
                "probability": float(row["probability"]),
                "score": int(row["score"]),
                "stage": str(row["stage"]),
                "stage_reason": str(row["stage_reason"]),
                "gates": {
                    g: str(row[g])
                    for g in ("gate_budget", "gate_authority", "gate_need", "gate_timeline")
                },  # fmt: skip
                "reasons_for": str(reasons["reasons_for"].iloc[i]),
                "reasons_against": str(reasons["reasons_against"].iloc[i]),
                "png": png.name,
            }
        )
        figures.append(("Leads", f"{title}. {row['stage_reason']}", png))

    comparison = None
    if compare:
        other = load_scoring_model(compare)
        other_explainer, _, other_contributions = _explained(other, params, rows, contract)
        before = other_explainer.probability_points(other_contributions)
        comparison = (
            before[["title", "mean_abs_log_odds"]].rename(columns={"mean_abs_log_odds": "before"})
            .merge(worth[["title", "mean_abs_log_odds"]].rename(
                columns={"mean_abs_log_odds": "after"}), on="title", how="outer")
            .fillna(0.0)
        )  # fmt: skip
        comparison["change"] = comparison["after"] - comparison["before"]
        comparison = comparison.sort_values("change", key=np.abs, ascending=False)
        write_csv(out / "comparison.csv", comparison)
        other_who = f"{other.name} version {other.version}"
        figures.append(("Versions", f"{who} against {other_who}: which groups gained or lost weight",
                        plots.comparison(comparison, out / "comparison.png",
                                         f"{other_who} -> {who}", top)))  # fmt: skip

    summary = {
        "model": {"name": model.name, "version": model.version, "uri": model.uri},
        "compared_with": compare,
        "rows": len(rows),
        "split": split,
        "top_groups": worth.head(top).round(6).to_dict(orient="records"),
        "leads": leads,
        "figures": [p.name for _, _, p in figures],
    }
    write_json(out / "summary.json", summary)
    page = report_html(who, where, worth.head(top), figures, leads, comparison)
    write_file(out / REPORT, lambda tmp: tmp.write_text(page, encoding="utf-8"))
    log.info("explain: %d figures and %s in %s", len(figures), REPORT, out)
    if log_to_mlflow:
        summary["mlflow_run_id"] = _log_to_run(model, out)
    return summary


def explain_files(folder: Path) -> list[Path]:
    """The files `leadscore explain` wrote in ``folder`` (its marker's list; not the marker,
    nor anything else someone put there): what MLflow gets."""
    return [folder / name for name in sorted(owned_files(folder)) if (folder / name).is_file()]


def _log_to_run(model: ScoringModel, out: Path) -> str | None:
    """Attach ``out`` to the MLflow run of a registered version (``explain/``)."""
    if not model.uri.startswith("models:/"):
        log.info("model %s is a folder, not a registered version: not logged to MLflow", model.uri)
        return None
    import mlflow
    from mlflow import MlflowClient

    from pipelines.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    client = MlflowClient()
    run_id = client.get_model_version(model.name, model.version).run_id
    if not run_id:
        log.warning("%s version %s has no run: explain not logged", model.name, model.version)
        return None
    for path in explain_files(out):
        client.log_artifact(run_id, str(path), artifact_path="explain")
    log.info("logged %s to MLflow run %s (explain/)", out, run_id)
    return run_id


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(path.stem)}">'


def report_html(
    who: str,
    where: str,
    worth: pd.DataFrame,
    figures: list[tuple[str, str, Path]],
    leads: list[dict[str, Any]],
    comparison: pd.DataFrame | None,
) -> str:
    """One self-contained page: text, tables and the PNGs embedded as data URIs; no script, no
    style sheet, no font or image fetched from anywhere."""
    e = html.escape
    table = worth.rename(
        columns={
            "title": "what",
            "mean_abs_log_odds": "mean |SHAP| (log-odds)",
            "mean_abs_points": "mean effect (probability points)",
            "mean_points": "mean signed effect (points)",
        }
    )[["what", "mean |SHAP| (log-odds)", "mean effect (probability points)",
       "mean signed effect (points)"]]  # fmt: skip
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(who)}: explanations</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
        "img{max-width:100%;border:1px solid #ddd;margin:.5em 0}"
        "table{border-collapse:collapse;font-size:90%}td,th{border:1px solid #ccc;padding:3px 8px}"
        "th{background:#f4f4f4}</style></head><body>",
        f"<h1>{e(who)}: what it has learned</h1>",
        f"<p>On {e(where)}. Contributions are SHAP values in <b>log-odds</b> of conversion: "
        "each feature's push away from the average lead, summed they give the lead's own "
        "log-odds (before calibration). +0.7 doubles the odds, -0.7 halves them. The "
        "<i>probability points</i> column says the same for these leads: how much the "
        "probability would drop (or rise) on average if that group's contribution were taken "
        "away. Features that describe one behaviour (an activity's counts in every window and "
        "its recency) are summed into one group, as in the reasons written to the CRM.</p>",
        "<h2>Strongest groups</h2>",
        table.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0),
    ]
    current = None
    for section_name, caption, png in figures:
        if section_name != current:
            parts.append(f"<h2>{e(section_name)}</h2>")
            current = section_name
        parts.append(f"<figure>{_image(png)}<figcaption>{e(caption)}</figcaption></figure>")
    if leads:
        parts.append("<h2>Leads, in words</h2>")
        shown = pd.DataFrame(leads)[
            ["lead_id", "probability", "score", "stage", "stage_reason", "reasons_for",
             "reasons_against"]
        ]  # fmt: skip
        parts.append(shown.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0))
    if comparison is not None:
        parts.append("<h2>Versions compared (mean |SHAP|, log-odds)</h2>")
        parts.append(comparison.head(20).to_html(index=False, float_format=lambda v: f"{v:.3f}",
                                                 border=0))  # fmt: skip
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
