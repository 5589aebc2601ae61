"""The one timestamp reader: Arrow's fast ISO 8601 path reads exactly what pandas reads."""

from __future__ import annotations

import datetime as dt

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from features.timestamps import to_naive_utc

FORMS = (
    "%Y-%m-%d",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%dT%H:%M:%SZ",
    "%Y-%m-%dT%H:%M:%S.%fZ",
    "%Y-%m-%dT%H:%M:%S+02:00",
    "%Y-%m-%dT%H:%M:%S-0530",
)
instants = st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2100, 1, 1))
value = st.one_of(
    st.tuples(instants, st.sampled_from(FORMS)).map(lambda p: p[0].strftime(p[1])),
    st.sampled_from(["", " 2024-01-01", "not a date", "2024-13-01", "12/31/2024"]),
    st.none(),
)


def _pandas(values: pd.Series) -> pd.Series:
    parsed = pd.to_datetime(values, format="ISO8601", errors="coerce", utc=True)
    return parsed.dt.tz_localize(None).dt.as_unit("us")


@settings(max_examples=300, deadline=None)
@given(st.lists(value, min_size=1, max_size=8), st.booleans())
def test_iso_text_reads_as_pandas_reads_it(texts, one_form):
    if one_form:  # the fast path's case: one form for the whole column
        texts = [t for t in texts if t is None or t[:1].isdigit()]
    values = pd.Series(texts, dtype="str")
    parsed, bad = to_naive_utc(values)
    expected = _pandas(values)
    assert parsed.dtype == "datetime64[us]"
    pd.testing.assert_series_equal(parsed, expected, check_names=False)
    unreadable = (expected.isna() & values.notna()).to_numpy()
    assert (bad is None) == (not unreadable.any())
    if bad is not None:
        assert bad.tolist() == unreadable.tolist()


def test_a_column_of_one_iso_form_is_read_exactly():
    values = pd.Series(["2024-03-01T09:30:00.000Z", "2024-03-01T11:30:00+02:00", None], dtype="str")
    parsed, bad = to_naive_utc(values)
    assert bad is None
    assert parsed.tolist()[:2] == [pd.Timestamp("2024-03-01 09:30")] * 2
    assert pd.isna(parsed.iloc[2])
