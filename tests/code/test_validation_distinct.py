"""Text checks made once per distinct value (features/validation.py ``by_distinct``) give what
the per-row checks give, on columns long and repetitive enough to take that path."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features import contract as ct
from features import validation as v

ROWS = 3 * v.DISTINCT_SAMPLE  # past the sample: the distinct-value path is taken


def ids(values: list[str | None], seed: int = 0) -> pd.Series:
    """``values`` repeated in random order to ROWS rows, as pandas' Arrow ``str``."""
    rng = np.random.default_rng(seed)
    return pd.Series(np.asarray(values, dtype=object)[rng.integers(0, len(values), ROWS)]).astype(
        v.STRING
    )


CLEAN = [f"L{i:05d}" for i in range(500)]


@pytest.mark.parametrize(
    "extra",
    [[], [" L00001"], ["L00002\t"], [""], [None], ["L\x00bad"], ["L\x07x", " pad "]],
)
def test_distinct_checks_equal_the_per_row_checks(extra):
    column = ids(CLEAN + extra)
    assert v._encoded(v._arrow_text(column)) is not None  # the distinct-value path
    stripped = column.str.strip()
    expected = stripped.mask(stripped.str.len().eq(0))
    pd.testing.assert_series_equal(v._as_string(column, strip=True), expected)
    hits = column.str.contains(ct.ID_CONTROL_CHARACTERS, regex=True).fillna(False)
    np.testing.assert_array_equal(
        v._control_characters(column, ct.ID_CONTROL_CHARACTERS), hits.to_numpy(dtype=bool)
    )
    keys = pd.Series(CLEAN[::2] + ["L\x00bad"], dtype=v.STRING)
    np.testing.assert_array_equal(
        v._positions(column, keys), pd.Index(keys).get_indexer(column.astype(object))
    )


def test_a_column_of_distinct_values_takes_the_per_row_path():
    column = pd.Series([f"L{i}" for i in range(ROWS)], dtype=v.STRING)
    assert v._encoded(v._arrow_text(column)) is None
    assert not v._needs_strip(column)
