"""The packaged model: what MLflow stores and a scoring job loads by URI.

One object scores a frame of features end to end: the booster's raw score, the calibrator's
probability, the BANT gates and the cutoffs of *this* model version, and the stage with why.
It wraps the artifacts written by ``leadscore train`` (booster.txt, calibrator.joblib and
model_meta.json, which holds the features, the category grouping, cutoffs and gate rules), so
loading ``models:/lead-conversion@champion`` gives probabilities, not class labels (the LightGBM
flavour's pyfunc returns labels), and accepts text columns where the booster wants categories.
Category values are grouped as at training (rare and unseen ones as "other", see
:mod:`models.categories`); a model trained before grouping existed uses its values as they are.
"""

from __future__ import annotations

import json
import logging
from functools import cached_property
from pathlib import Path
from typing import Any

import joblib
import lightgbm as lgb
import numpy as np
import pandas as pd

from features.catalog import FeatureSpec
from models import reasons
from models.boosting import predict_scores
from models.categories import no_values, stored_grouper
from models.cutoffs import assign_stages
from models.explain import LeadExplainer
from models.frame import feature_matrix
from models.gates import BantGates
from models.score_scale import ScoreScale, legacy_score
from models.value import ValueModel, expected_value, load_value_model

log = logging.getLogger(__name__)

#: Columns the packaged model returns, in order (and, asked for reasons, :data:`REASON_COLUMNS`).
OUTPUT_COLUMNS = [
    "probability", "score", "expected_amount", "expected_value", "stage", "stage_reason",
    "bant_score", "gate_budget", "gate_authority", "gate_need", "gate_timeline",
]  # fmt: skip
REASON_COLUMNS = list(reasons.REASON_COLUMNS)  # a list: it selects frame columns
#: Reasons each way the registered model returns unless the caller's params say otherwise.
PYFUNC_REASONS = 3


class LeadScorer:
    """Booster + calibrator + gates + cutoffs: features in, probability, score and stage out."""

    def __init__(
        self,
        booster: lgb.Booster,
        calibrator: Any,
        meta: dict[str, Any],
        value: ValueModel | None = None,
    ):
        self.booster = booster
        self.calibrator = calibrator
        self.meta = meta
        #: E[amount | won] (:mod:`models.value`); None: a model trained before value models, whose
        #: expected amount and value are missing.
        self.value = value
        self.gates = BantGates(**meta["gates"]).fit()
        #: The category grouping fitted on the training split (None: a model trained before it).
        self.grouper = stored_grouper(meta)
        #: The 1-99 score's cut points (None: a model trained before them scores 100 x p).
        raw_scale = meta.get("score_scale")
        self.score_scale = None if raw_scale is None else ScoreScale.from_dict(raw_scale)
        self._legacy_warned = False
        #: The catalog entries the model was trained with (labels, groups), by feature name; a
        #: model trained before they were stored says its reasons with the column names.
        self.specs = {
            entry["name"]: FeatureSpec.from_dict(entry) for entry in meta.get("catalog") or []
        }

    @cached_property
    def explainer(self) -> LeadExplainer:
        """Contributions, groups and words for this model (:mod:`models.explain`)."""
        return LeadExplainer(self.booster, list(self.meta["features"]), self.specs)

    @classmethod
    def from_folder(cls, folder: str | Path) -> LeadScorer:
        """Load what ``leadscore train`` wrote to ``folder``."""
        folder = Path(folder)
        meta = json.loads((folder / "model_meta.json").read_text())
        reference = folder / "drift_reference.json"
        if reference.exists():  # training-time distributions, for the drift check when scoring
            meta["drift_reference"] = json.loads(reference.read_text())
        return cls(
            lgb.Booster(model_file=str(folder / "booster.txt")),
            joblib.load(folder / "calibrator.joblib"),
            meta,
            load_value_model(folder, meta),
        )

    def matrix(self, features: pd.DataFrame) -> pd.DataFrame:
        """The booster's view of ``features``: its columns in order, text as categories, each
        category feature with the training's kept levels plus "other" (rare and unseen values)."""
        return feature_matrix(features, self.meta["features"], self.grouper)

    def unseen_categories(self, features: pd.DataFrame) -> pd.DataFrame:
        """Category values of ``features`` never seen in training, scored as "other":
        ``feature, value, rows`` (empty for a model trained before grouping existed)."""
        if self.grouper is None:
            return no_values()
        return self.grouper.unseen(features)

    def predict_proba(self, features: pd.DataFrame, x: pd.DataFrame | None = None) -> np.ndarray:
        """Calibrated probability of closed-won within the horizon, per row (``x``: the
        :meth:`matrix` of ``features``, if the caller has it already)."""
        x = self.matrix(features) if x is None else x
        return self.calibrator.predict(predict_scores(self.booster, x))

    def expected_amount(self, x: pd.DataFrame) -> np.ndarray:
        """E[amount | won] per row of the booster's matrix ``x`` (NaN without a value model)."""
        if self.value is None:
            return np.full(len(x), np.nan)
        return self.value.expected_amount(x)

    def scores(self, p: np.ndarray) -> np.ndarray:
        """The 1-99 score of each probability: its percentile among the model version's
        reference leads (:mod:`models.score_scale`); 100 x p for a model trained before."""
        if self.score_scale is None:
            if not self._legacy_warned:  # once per loaded model, not per batch
                log.warning(
                    "this model was trained before score scales: score = 100 x probability "
                    "(retrain for a 1-99 percentile score)"
                )
                self._legacy_warned = True
            return legacy_score(p)
        return self.score_scale.score(p)

    def score(
        self, features: pd.DataFrame, x: pd.DataFrame | None = None, reasons: int = 0
    ) -> pd.DataFrame:
        """Probability (calibrated), score (1-99, a percentile: :meth:`scores`), expected amount
        if won and expected value (probability x amount), stage and why, and the gate results,
        per row (same index); with ``reasons`` > 0, also that many reasons for and against in
        words (:data:`REASON_COLUMNS`)."""
        x = self.matrix(features) if x is None else x  # once: probabilities and reasons read it
        p = self.predict_proba(features, x)
        amount = self.expected_amount(x)
        value = expected_value(p, amount)
        gates = self.gates.transform(features)
        stages = assign_stages(p, gates, self.meta["cutoffs"], value)
        out = pd.DataFrame(
            {
                "probability": p,
                "score": self.scores(p),
                "expected_amount": amount,
                "expected_value": value,
            },
            index=features.index,
        )
        out = out.join(stages).join(
            gates[["bant_score", "gate_budget", "gate_authority", "gate_need", "gate_timeline"]]
        )
        if reasons > 0:
            said = self.explainer.reasons(
                features.reset_index(drop=True), self.explainer.contributions(x), k=reasons
            )
            out[REASON_COLUMNS] = said[REASON_COLUMNS].to_numpy()
            return out[OUTPUT_COLUMNS + REASON_COLUMNS]
        return out[OUTPUT_COLUMNS]


def __getattr__(name: str):
    """``LeadPropensityModel`` (the MLflow wrapper) from :mod:`models.pyfunc`, imported on first
    use: MLflow takes seconds to import, and a scoring worker never needs it. Versions
    registered before the move name it here, and load through this."""
    if name == "LeadPropensityModel":
        from models.pyfunc import LeadPropensityModel

        return LeadPropensityModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
