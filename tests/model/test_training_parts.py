"""How run_train divides validation: by lead, the same leads on every run."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pipelines.modeling import calibration_holdout


def test_the_calibration_part_keeps_a_leads_rows_together_and_ignores_row_order():
    leads = pd.Series(np.repeat([f"L{i:05d}" for i in range(4_000)], 3))
    held = calibration_holdout(leads, 0.5)
    assert pd.Series(held).groupby(leads.to_numpy()).nunique().max() == 1
    assert 0.45 < held.mean() < 0.55
    shuffled = leads.sample(frac=1, random_state=0)
    again = pd.Series(calibration_holdout(shuffled, 0.5), index=shuffled.index).sort_index()
    assert (again.to_numpy() == held).all()
    assert 0.15 < calibration_holdout(leads, 0.2).mean() < 0.25


@pytest.mark.parametrize("fraction", [0.0, 1.0, 1.5])
def test_a_fraction_outside_zero_and_one_is_refused(fraction):
    with pytest.raises(ValueError, match="holdout_fraction"):
        calibration_holdout(pd.Series(["L1"]), fraction)
