"""Validation's fast paths give what the slow ones give: the byte screens of Arrow text
(features/text_bytes.py) against Arrow's string kernels, and ``keep_rows``
(features/frames.py) against pandas' boolean indexing."""

from __future__ import annotations

import re
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features import contract as ct
from features import text_bytes as tb
from features import validation as v
from features.frames import keep_rows

# Text that reaches the screens' edge cases: ASCII controls, Unicode white space (U+00A0,
# U+2003, U+3000), multi-byte letters, empty strings and missing values.
CHARACTERS = st.sampled_from(list("aZ09-_. \t\n\r\x00\x07\x1f\x7f\u00a0\u2003\u3000é€😀"))
VALUES = st.lists(st.one_of(st.none(), st.text(CHARACTERS, max_size=6)), max_size=40)


def _chunked(values: list[str | None], pieces: int, large: bool) -> pa.ChunkedArray:
    """``values`` as Arrow text in ``pieces`` chunks (one sliced: a non-zero offset)."""
    kind = pa.large_string() if large else pa.string()
    whole = pa.array(["pad", *values], type=kind).slice(1)
    bounds = np.linspace(0, len(values), pieces + 1).astype(int)
    return pa.chunked_array(
        [whole.slice(a, b - a) for a, b in zip(bounds[:-1], bounds[1:], strict=True)], kind
    )


@settings(max_examples=300, deadline=None)
@given(VALUES, st.integers(1, 3), st.booleans(), st.sampled_from(["id", "text"]))
def test_byte_screens_agree_with_the_string_kernels(values, pieces, large, kind):
    arr = _chunked(values, pieces, large)
    pattern = ct.ID_CONTROL_CHARACTERS if kind == "id" else ct.CONTROL_CHARACTERS
    holds = any(v is not None and re.search(pattern, v) for v in values)
    # No missing value hides bytes here, so the screen is exact both ways.
    assert tb.may_hold_byte(arr, tb.ascii_byte_set(pattern)) == bool(holds)

    suspects = tb.edge_suspects(arr)
    trimmed = pc.utf8_trim_whitespace(arr)
    changes = pc.or_(pc.not_equal(trimmed, arr), pc.equal(pc.utf8_length(arr), 0))
    changes = pc.fill_null(changes, False).to_numpy(zero_copy_only=False)
    assert not (changes & ~suspects).any()  # a value trimming changes is always a suspect

    column = pd.Series(values, dtype=v.STRING)
    stripped = column.str.strip()
    pd.testing.assert_series_equal(
        v._as_string(column, strip=True), stripped.mask(stripped.str.len().eq(0))
    )
    hits = column.str.contains(pattern, regex=True).fillna(False).to_numpy(dtype=bool)
    np.testing.assert_array_equal(v._control_characters(column, pattern), hits)


def test_the_byte_sets_are_the_contract_patterns_and_ascii_only():
    for pattern in (ct.ID_CONTROL_CHARACTERS, ct.CONTROL_CHARACTERS):
        found = tb.ascii_byte_set(pattern)
        assert list(np.flatnonzero(found)) == [i for i in range(128) if re.search(pattern, chr(i))]
        # The screen reads bytes: a pattern matching a non-ASCII character would be missed.
        compiled = re.compile(pattern)
        assert not any(
            compiled.search(chr(i))
            for i in range(128, sys.maxunicode + 1)
            if i < 0xD800 or i > 0xDFFF
        )


def test_a_clean_long_column_is_screened_slice_by_slice(monkeypatch):
    monkeypatch.setattr(tb, "SLICE", 7)  # many slices, the last one short
    ids = [f"L{i:04d}" for i in range(100)]
    arr = pa.chunked_array([pa.array(ids[:50]), pa.array(ids[50:])])
    assert not tb.may_hold_byte(arr, tb.ascii_byte_set(ct.ID_CONTROL_CHARACTERS))
    assert not tb.edge_suspects(arr).any()
    dirty = [*ids[:77], "L\x00bad", " L0078", *ids[79:]]
    arr = pa.chunked_array([pa.array(dirty[:50]), pa.array(dirty[50:])])
    assert tb.may_hold_byte(arr, tb.ascii_byte_set(ct.ID_CONTROL_CHARACTERS))
    assert list(np.flatnonzero(tb.edge_suspects(arr))) == [78]


def test_unknown_ids_are_found_in_chunked_columns():
    values = pd.Series(pa.chunked_array([["L1", "L9", None], ["L2", "L1"]]), dtype=v.STRING)
    keys = pd.Series(["L2", "L1"], dtype=v.STRING)
    np.testing.assert_array_equal(v._positions(values, keys), [1, -1, -1, 0, 1])


FRAME = pd.DataFrame(
    {
        "id": pd.Series(pa.chunked_array([["a", None], ["c", "d", "e"]]), dtype=v.STRING),
        "arrow_int": pd.Series([1, 2, None, 4, 5], dtype=pd.ArrowDtype(pa.int64())),
        "at": pd.to_datetime(["2024-01-01", None, "2024-01-03", "2024-01-04", "2024-01-05"]),
        "kind": pd.Categorical(["x", "y", None, "x", "y"], categories=["y", "x"]),
        "n": [0.5, np.nan, 2.0, 3.0, 4.0],
        "count": pd.array([1, None, 3, 4, 5], dtype="Int64"),
        "flag": pd.array([True, None, False, True, False], dtype="boolean"),
        "any": [1, "two", None, 4.0, "five"],
    },
    index=[10, 11, 12, 13, 14],
)


@given(st.lists(st.booleans(), min_size=5, max_size=5))
def test_keep_rows_is_boolean_indexing(mask):
    mask = np.array(mask)
    expected = FRAME[mask].reset_index(drop=True)
    pd.testing.assert_frame_equal(keep_rows(FRAME, mask), expected, check_exact=True)


def test_keep_rows_refuses_a_mask_of_another_length():
    with pytest.raises(ValueError, match="a mask of 4 rows for a frame of 5"):
        keep_rows(FRAME, np.ones(4, dtype=bool))
