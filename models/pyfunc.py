"""The MLflow pyfunc wrapper of the packaged model (:class:`models.packaged.LeadScorer`): what
``leadscore register`` logs and ``mlflow.pyfunc.load_model`` returns. Apart from
models/packaged.py so that scoring in memory (a Dask worker) never imports MLflow."""

from __future__ import annotations

from typing import Any

import pandas as pd
from mlflow.pyfunc import PythonModel

from models.packaged import PYFUNC_REASONS, LeadScorer


class LeadPropensityModel(PythonModel):
    """MLflow pyfunc wrapper of :class:`LeadScorer` (artifacts: the ``leadscore train`` folder)."""

    def load_context(self, context) -> None:
        """Load the booster, calibrator and metadata from the logged artifacts."""
        self.scorer = LeadScorer.from_folder(context.artifacts["model_dir"])

    def predict(
        self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Score a frame of features (text or category columns, as the training set has them):
        probability, score, stage and why, gates, and reasons for and against in words
        (``params={"reasons": k}``: k each way, 0 for none; default 3)."""
        k = int((params or {}).get("reasons", PYFUNC_REASONS))
        return self.scorer.score(model_input, reasons=k)
