"""Reading timestamps the one way: naive UTC, microseconds, nothing guessed.

Validation types every timestamp column with it, and a flat mapping dates its outcomes with it,
so a creation time and the outcome derived from it are read alike.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from features.mapping.file import MappingError


def to_naive_utc(
    values: pd.Series, fmt: str | None = None, zone: str | None = None
) -> tuple[pd.Series, np.ndarray | None]:
    """Timestamps as naive UTC datetime64[us], and the mask of present values that could not
    be read (None if all could).

    Text must be ISO 8601 (no guessing of day/month order) unless ``fmt`` is given (strftime,
    or ``epoch_s`` / ``epoch_ms`` for numbers of seconds / milliseconds); ``zone`` applies to
    values written without an offset. Numbers without an epoch format are unreadable: seconds
    or milliseconds cannot be told apart.
    """
    dtype = values.dtype
    if isinstance(dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
        dtype = values.dtype
    if pd.api.types.is_datetime64_dtype(dtype):
        if zone not in (None, "UTC"):
            return _to_utc(values, zone, values.notna().to_numpy())
        return values.dt.as_unit("us"), None  # already typed: nothing to parse
    if fmt in ("epoch_s", "epoch_ms"):
        numeric = pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
        # Numbers stay numbers (61M integers through text cost 34 s and 9 GiB at 1M leads);
        # only text is parsed.
        numbers = (
            values if numeric else pd.to_numeric(values.astype("str").str.strip(), errors="coerce")
        )
        parsed = pd.to_datetime(numbers, unit="s" if fmt == "epoch_s" else "ms", errors="coerce")
        parsed = parsed.dt.as_unit("us")
        bad = (parsed.isna() & values.notna()).to_numpy()
        return parsed, (bad if bad.any() else None)
    if pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype):
        # Numbers are not ISO 8601: epoch seconds or milliseconds are ambiguous, so unparseable
        # unless the mapping says which (format: epoch_s or epoch_ms).
        parsed = pd.Series(pd.NaT, index=values.index, dtype="datetime64[us]")
        bad = values.notna().to_numpy()
        return parsed, (bad if bad.any() else None)
    if fmt is not None:
        parsed = pd.to_datetime(values, format=fmt, errors="coerce")
        if isinstance(parsed.dtype, pd.DatetimeTZDtype):  # %z in the format
            parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
        elif zone not in (None, "UTC"):
            return _to_utc(parsed, zone, values.notna().to_numpy())
        parsed = parsed.dt.as_unit("us")
    elif zone not in (None, "UTC"):
        # ISO 8601 with or without an offset: values with one are exact, the others are local.
        text = values.astype("str")
        has_offset = text.str.contains(r"(?:[zZ]|[+-]\d\d:?\d\d)$", regex=True).fillna(False)
        aware = pd.to_datetime(text.where(has_offset), format="ISO8601", errors="coerce", utc=True)
        local = pd.to_datetime(text.where(~has_offset), format="ISO8601", errors="coerce")
        local, _ = _to_utc(local, zone, np.zeros(len(values), dtype=bool))
        parsed = aware.dt.tz_localize(None).dt.as_unit("us").where(has_offset, local)
    else:
        parsed = _iso_by_arrow(values)
        if parsed is None:
            parsed = pd.to_datetime(values, format="ISO8601", errors="coerce", utc=True)
            parsed = parsed.dt.tz_localize(None).dt.as_unit("us")
    bad = (parsed.isna() & values.notna()).to_numpy()
    return parsed, (bad if bad.any() else None)


#: The instants pandas can hold (nanoseconds in int64): a value outside them is unparseable for
#: pandas, so the Arrow fast path leaves such a column to pandas rather than read it otherwise.
_PANDAS_RANGE = (pd.Timestamp.min.ceil("us"), pd.Timestamp.max.floor("us"))


def _iso_by_arrow(values: pd.Series) -> pd.Series | None:
    """ISO 8601 text read by Arrow's cast (C++, ~15x faster than pandas), or None when any value
    is not in a form the cast reads exactly as pandas would: then pandas reads the column.

    Either every value has a zone designator (``Z``, ``+02:00``: converted to UTC) or none has
    (read as UTC); a mix, a value with spaces around it, nanoseconds or a date out of pandas'
    range falls back, so the result never differs from pandas' ``format="ISO8601"``.
    """
    if not isinstance(values.dtype, pd.StringDtype):
        return None
    text = pa.array(values.array)
    if not pa.types.is_string(text.type) and not pa.types.is_large_string(text.type):
        return None
    for target in (pa.timestamp("us", tz="UTC"), pa.timestamp("us")):
        try:
            stamps = text.cast(target).cast(pa.timestamp("us"))  # the UTC instants, naive
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        parsed = pd.Series(stamps.to_numpy(zero_copy_only=False), index=values.index)
        present = parsed.dropna()
        if len(present) and (present.min() < _PANDAS_RANGE[0] or present.max() > _PANDAS_RANGE[1]):
            return None
        return parsed.astype("datetime64[us]")
    return None


def _to_utc(
    local: pd.Series, zone: str, present: np.ndarray
) -> tuple[pd.Series, np.ndarray | None]:
    """Naive local times in ``zone`` as naive UTC; a time that does not exist or exists twice
    in that zone (daylight saving) is unparseable, never guessed."""
    try:
        aware = local.dt.tz_localize(zone, ambiguous="NaT", nonexistent="NaT")
    except Exception as err:  # an unknown zone name: the mapping's fault, one line
        raise MappingError(f"mapping: unknown time zone {zone!r} ({err})") from None
    out = aware.dt.tz_convert("UTC").dt.tz_localize(None).dt.as_unit("us")
    bad = out.isna().to_numpy() & (present | local.notna().to_numpy())
    return out, (bad if bad.any() else None)
