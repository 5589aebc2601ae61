"""A model card per registered version: what it learned from, how good it is, where it stops.

Built from what the version already holds (``model_meta.json``, the evaluation's
``metrics.json``, the training set's ``manifest.json`` and the booster), as Markdown, and
rendered to one self-contained HTML page (no script, nothing fetched). ``leadscore register``
logs both to the version's run (``model_card/``) and links the page from the version's
description.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

import pandas as pd

from features.catalog import FeatureSpec

#: What no number in the card says, for every version.
LIMITS = (
    "Scores are for the population the model was trained on (see above); leads outside it "
    "(older, or already in sales) are extrapolations or not scored.",
    "Probabilities are calibrated on the validation period: a change of the base rate since "
    "then shows as calibration error on newer data (retrain, or refit the calibrator).",
    "Features read the CRM as of each snapshot; a field the mapping declares known at "
    "creation but filled in later would leak (the leakage alarm checks each feature alone).",
    "Intervals are lead-clustered bootstrap percentiles: rows of one lead are not independent.",
)


def _pct(value: Any) -> str:
    """A share as a percentage; "n/a" where there is none (a stage nobody reached)."""
    if value is None or value != value:  # None or NaN
        return "n/a"
    return f"{100 * float(value):.2f}%"


def _cell(value: Any) -> str:
    """A table cell: one line, no column bar."""
    return " ".join(str(value).split()).replace("|", "/")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _interval(entry: Mapping[str, Any] | None, digits: int = 3) -> str:
    if not entry or entry.get("low") is None or entry.get("value") is None:
        return (
            "-"
            if not entry or entry.get("value") is None
            else f"{entry['value']:.{digits}f} (no interval)"
        )
    return f"{entry['value']:.{digits}f} [{entry['low']:.{digits}f}, {entry['high']:.{digits}f}]"


def model_card(
    name: str,
    version: str,
    meta: Mapping[str, Any],
    metrics: Mapping[str, Any],
    manifest: Mapping[str, Any],
    importance: pd.DataFrame | None = None,
    run_id: str | None = None,
) -> str:
    """The card of one version, as Markdown (see the module doc)."""
    specs = {d["name"]: FeatureSpec.from_dict(d) for d in meta.get("catalog", [])}
    learned = meta.get("training_data", {})
    population = meta.get("population") or {}
    validation = meta.get("validation", {})
    out = [f"# {name} version {version}: model card", ""]
    how = (
        f"LightGBM ({meta.get('best_iteration')} trees)"
        if meta.get("kind") != "rules"
        else f"**rules only**: points per attribute and activity from params.yaml `rules` "
        f"({meta.get('best_iteration')} rule steps), because the history was below the "
        "data-sufficiency bar; a trained model replaces it through `leadscore challenge`"
    )
    out += [
        "## What it is",
        f"The calibrated probability that a lead becomes a customer (closed-won) within the "
        f"label horizon, from its history as of the scoring date: {how}, calibration "
        f"`{meta['calibration']['method']}`. "
        f"Population: `{population.get('policy', 'all')}`, leads up to "
        f"{population.get('max_age_days') or 'any'} days old."
        + (f" Run `{run_id}`." if run_id else ""),
        "",
        "## Data",
        f"The booster learned from snapshots {learned.get('booster_range', '?')} "
        f"({'refit on train and validation' if learned.get('refit_on_validation') else 'train only'}); "
        f"input fingerprint `{str(manifest.get('input_fingerprint', '?'))[:16]}`.",
        "",
    ]
    splits = manifest.get("splits", {})
    out.append(_table(
        ["split", "snapshots", "leads", "positive snapshots", "won leads", "positive rate", "as of"],
        [[s, f"{v.get('rows', 0):,}", f"{v.get('leads', 0):,}", f"{v.get('positives', 0):,}",
          f"{v.get('won_leads', 0):,}", _pct(v.get("positive_rate", 0)),
          f"{v.get('as_of_from', '?')}..{v.get('as_of_to', '?')}"] for s, v in splits.items()],
    ))  # fmt: skip
    builders: dict[str, list[str]] = {}
    for feature in meta.get("features", []):
        spec = specs.get(feature)
        builders.setdefault(spec.builder if spec else "?", []).append(feature)
    declared = manifest.get("features_resting_on_a_declaration") or {}
    out += ["", "## Features", f"{len(meta.get('features', []))} features, point in time "
            "(each snapshot reads only what was known then):", ""]  # fmt: skip
    out.append(_table(
        ["builder", "features", "sources"],
        [[b, len(f), ", ".join(sorted({src for n in f for src in (specs[n].sources if n in specs else ())}))[:300]]
         for b, f in builders.items()],
    ))  # fmt: skip
    if declared:
        out += ["", f"Resting on a knowledge time the mapping declares (not on field history): "
                f"{', '.join(sorted(declared))}."]  # fmt: skip
    test = metrics.get("test", {})
    boot = metrics.get("intervals", {}).get("scorers", {})
    out += ["", "## Quality", "Validation: the calibration part of the validation period "
            "(registration is judged on it); test: the out-of-time test split (it only reports). "
            "95% lead-clustered intervals.", ""]  # fmt: skip
    rows = [["validation (model)", _interval(validation.get("intervals", {}).get("roc_auc")),
             _interval(validation.get("intervals", {}).get("pr_auc")),
             _interval(validation.get("intervals", {}).get("ece"), 4)]]  # fmt: skip
    for scorer in ("model", "baseline", "oracle"):
        if scorer in test:
            rows.append([f"test ({scorer})", _interval(boot.get(scorer, {}).get("roc_auc")),
                         _interval(boot.get(scorer, {}).get("pr_auc")),
                         _interval(boot.get(scorer, {}).get("ece"), 4)])  # fmt: skip
    out.append(_table(["", "ROC AUC", "PR AUC", "ECE"], rows))
    if "model_roc_auc_vs_oracle" in metrics:
        out += ["", f"Model / oracle ROC AUC on test: {metrics['model_roc_auc_vs_oracle']:.3f}."]
    cal = meta["calibration"]
    out += ["", "## Calibration", f"`{cal['method']}` chosen on {cal.get('rows', '?'):,} "
            f"validation rows ({cal.get('leads', '?'):,} leads); cross-validated log loss: "
            + ", ".join(f"{k} {v:.5f}" for k, v in (cal.get("cv_log_loss") or {}).items()) + "."]  # fmt: skip
    if metrics.get("calibration_note"):
        out += ["", f"Note: {metrics['calibration_note']}."]
    cut = meta["cutoffs"]
    out += ["", "## Stages", f"SQL from probability {_pct(cut['sql'])}, MQL from {_pct(cut['mql'])} "
            f"(policies: `{meta.get('cutoff_policies', {})}`), then the BANT gates.", ""]  # fmt: skip
    tiers = metrics.get("tiers") or {}
    out.append(_table(
        ["stage (test)", "leads", "conversions", "conversion rate", "share of conversions"],
        [[s, f"{t.get('leads', 0):,.0f}", f"{t.get('conversions', 0):,.0f}",
          _pct(t.get("conversion_rate", 0)), _pct(t.get("share_of_conversions", 0))]
         for s, t in tiers.items()],
    ))  # fmt: skip
    value, tested = meta.get("value"), metrics.get("value") or {}
    if value:
        out += ["", "## Lead value", _value_text(value, tested)]
    gates = meta.get("gates", {})
    out += ["", "## BANT gates", ""]
    out.append(_table(
        ["criterion", "rule", "required"],
        [[k, f"{v.get('rule')} {v.get('value', v.get('values', ''))}", v.get("required")]
         for k, v in gates.get("criteria", {}).items()],
    ))  # fmt: skip
    out += ["", f"Disqualified: {gates.get('disqualify', {})}."]
    if importance is not None and len(importance):
        out += ["", "## Top drivers", "By LightGBM gain (the SHAP views are in the run's "
                "`explain/report.html` once explained):", ""]  # fmt: skip
        top = importance.head(10)
        out.append(_table(
            ["feature", "share of gain"],
            [[specs[f].title if f in specs else f, _pct(g)] for f, g in zip(top["feature"], top["gain_share"], strict=True)],
        ))  # fmt: skip
    scale = meta.get("score_scale") or {}
    out += ["", "## Drift reference and score scale", f"Score 1-99: percentiles of "
            f"{scale.get('leads', '?')} reference leads ({scale.get('population', '?')}); the "
            "nightly job's drift (PSI) is measured against the same leads."]  # fmt: skip
    scan = meta.get("leakage_scan", {})
    out += ["", "## Leakage alarm", f"Warnings: {'; '.join(scan.get('warnings', [])) or 'none'}. "
            f"Features allowed by the user: {', '.join(scan.get('allowed_features', [])) or 'none'}. "
            "Strongest features alone, out of time:", ""]  # fmt: skip
    out.append(_table(
        ["feature", "ROC AUC alone"],
        [[s["feature"], f"{s['auc']:.3f}"] for s in scan.get("strongest", [])[:5]],
    ))  # fmt: skip
    enough = meta.get("data_sufficiency") or {}
    below = (
        [f"Trained below the data-sufficiency bar: {'; '.join(enough['missing'])}."]
        if enough.get("missing")
        else []
    )
    out += ["", "## Known limits"] + [f"- {line}" for line in [*below, *LIMITS]]
    out += [f"- Cutoffs: {w}" for w in meta.get("cutoff_warnings", [])]
    return "\n".join(out) + "\n"


def render_html(markdown_text: str, title: str) -> str:
    """One self-contained HTML page of the card (CommonMark with tables; no script)."""
    from markdown_it import MarkdownIt

    # No raw HTML: feature names and values come from a CRM and a mapping, not from us.
    # No links or images either: a label such as ![](https://...) would fetch or lead away.
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    body = md.disable(["image", "link", "autolink"]).render(markdown_text)
    style = (
        "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;color:#222}"
        "table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;"
        "padding:.25rem .5rem;text-align:left}th{background:#f3f3f3}code{background:#f6f6f6}"
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
        f"<style>{style}</style></head><body>{body}</body></html>\n"
    )


def _value_text(value: Mapping[str, Any], tested: Mapping[str, Any]) -> str:
    """The value model in a sentence or two: kind, rows, and its test figures if evaluated."""
    kind = value.get("kind")
    if kind == "none":
        return "No amounts in the CRM: every lead is worth one deal (expected value ranks as the probability)."
    text = (
        f"Expected amount if won: `{kind}` learned from {value.get('won_leads_train', '?')} won "
        f"leads (baseline: median per {value.get('baseline', {}).get('feature') or 'the whole set'})."
    )
    mae = tested.get("log_mae") or {}
    top = ((tested.get("intervals") or {}).get("captured") or {}).get("top_0.1") or {}
    if mae.get("value_model") is not None and top:
        text += (
            f" On test: mean absolute error of log amount {mae['value_model']:.3f} (baseline "
            f"{mae['baseline']:.3f}); the top 10% by expected value capture "
            f"{_pct(top['value']['value'])} of won revenue, by probability alone "
            f"{_pct(top['probability']['value'])}."
        )
    return text
