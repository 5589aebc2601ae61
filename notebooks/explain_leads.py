# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Why leads score as they do
#
# The champion model from the MLflow registry, explained on a sample of the out-of-time test
# split: what moves the probability overall, how it differs by stage, and two leads walked
# through in the words a sales rep reads in the CRM (one SQL, one nurture).
#
# Everything here comes from the project's own explainer (`models/explain.py`): the same
# contributions, groups and words as the reasons the nightly job writes. Contributions are SHAP
# values in **log-odds**: +0.7 doubles the odds of conversion, -0.7 halves them. Lead ids only:
# no names, emails or phones are read.
#
# Set `LEADSCORE_MODEL`, `LEADSCORE_TRAINING`, `LEADSCORE_PARAMS` or `LEADSCORE_SAMPLE` to
# explain another model or sample (after `make demo` the defaults work as they are).

# %%
import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import shap

from models.cutoffs import percent
from pipelines.modeling import read_split
from pipelines.params import load_params, section
from pipelines.scoring import explainer_for, load_scoring_model

MODEL_URI = os.environ.get("LEADSCORE_MODEL", "models:/lead-conversion@champion")
TRAINING = Path(os.environ.get("LEADSCORE_TRAINING", "data/training"))
PARAMS = load_params(os.environ.get("LEADSCORE_PARAMS", "params.yaml"))
SAMPLE = int(os.environ.get("LEADSCORE_SAMPLE", "3000"))

# %%
model = load_scoring_model(MODEL_URI)
# The labels and groups the nightly job says reasons with (the model's own catalog).
explainer = explainer_for(model, section(PARAMS, "features"))
test = read_split(TRAINING, "test")
sample = test.sample(n=min(SAMPLE, len(test)), random_state=0).reset_index(drop=True)
x = model.scorer.matrix(sample)
contributions = explainer.contributions(x)
scored = model.scorer.score(sample, x, reasons=3)
print(
    f"{model.name} version {model.version}: {len(sample):,} snapshots of the test split, "
    f"{len(explainer.names)} features in {len(explainer.groups.keys)} groups"
)
scored["stage"].value_counts()

# %% [markdown]
# ## What moves the probability
#
# Mean |SHAP| per group of features (an activity's counts in every window and its recency are
# one group), and what each is worth in probability points for these leads.

# %%
by_group = explainer.explanation(sample, contributions, grouped=True)
shap.plots.bar(by_group, max_display=12, show=False)
plt.title("Mean |contribution| per group (log-odds)")
plt.show()
explainer.probability_points(contributions).head(10)

# %% [markdown]
# Every lead's contribution per feature, coloured by the feature's value (red high, blue low):
# where the spread is wide, the feature separates leads.

# %%
shap.plots.beeswarm(explainer.explanation(sample, contributions), max_display=12)

# %% [markdown]
# ## By stage
#
# The mean contribution of each group among SQL, MQL and nurture leads: what sets the stages
# apart, in the model's eyes.

# %%
stages = scored["stage"].to_numpy()
cohorts = {s: by_group[stages == s].mean(0) for s in pd.unique(stages) if (stages == s).sum()}
shap.plots.bar(cohorts, max_display=8)


# %% [markdown]
# ## Two leads, in the words a rep reads
#
# The most likely SQL lead and the most likely nurture lead of the sample (or the most likely
# leads overall, if the sample has none in a stage): probability, score, stage and why, gates,
# reasons, and the waterfall from the average lead to this one.


# %%
def walk_through(stage: str) -> None:
    """Print one lead's scores and reasons, and draw its waterfall."""
    pool = scored[scored["stage"] == stage]
    if pool.empty:
        print(f"no {stage} lead in this sample: the most likely lead instead")
        pool = scored
    i = int(pool["probability"].idxmax())
    row = scored.loc[i]
    print(
        f"lead {sample.loc[i, 'lead_id']} as of {sample.loc[i, 'as_of']:%Y-%m-%d}: probability "
        f"{percent(row['probability'])}, score {row['score']}/99, {row['stage']} "
        f"({row['stage_reason']})"
    )
    gates = ", ".join(f"{g.removeprefix('gate_')} {row[g]}" for g in scored if g.startswith("gate_"))
    print(f"  gates: {gates}")
    print(f"  for: {row['reasons_for'] or '-'}")
    print(f"  against: {row['reasons_against'] or '-'}")
    shap.plots.waterfall(explainer.lead_explanation(sample, contributions, i), max_display=10)


walk_through("SQL")

# %%
walk_through("nurture")
