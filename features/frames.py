"""Row selection on wide, long frames, column by column on each column's own storage.

``frame[mask]`` on 64M events (Arrow text, a category, a timestamp) takes 7 s in pandas: its
boolean indexing of Arrow text and categories goes through generic paths. Filtering each
column where it lives (Arrow's ``filter``, numpy, a category's codes) gives the same frame in a
fraction of that.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa


def _is_arrow(dtype) -> bool:
    return isinstance(dtype, pd.ArrowDtype) or (
        isinstance(dtype, pd.StringDtype) and dtype.storage == "pyarrow"
    )


def keep_rows(frame: pd.DataFrame, mask: np.ndarray) -> pd.DataFrame:
    """``frame.loc[mask]`` with a fresh ``RangeIndex``: the same columns, dtypes and values."""
    mask = np.asarray(mask, dtype=bool)
    if len(mask) != len(frame):
        raise ValueError(f"a mask of {len(mask)} rows for a frame of {len(frame)}")
    if mask.all():
        return frame.reset_index(drop=True)
    arrow_mask = None
    index = pd.RangeIndex(int(mask.sum()))
    columns = {}
    for position, dtype in enumerate(frame.dtypes):
        values = frame.iloc[:, position].array
        if _is_arrow(dtype):
            arrow_mask = pa.array(mask) if arrow_mask is None else arrow_mask
            kept = pd.array(pa.array(values).filter(arrow_mask), dtype=dtype)
        elif isinstance(dtype, pd.CategoricalDtype):
            kept = pd.Categorical.from_codes(values.codes[mask], dtype=dtype)
        else:
            kept = values[mask]
        # The dtype stated: text in an object column stays object (not inferred as str).
        columns[position] = pd.Series(kept, index=index, dtype=dtype, copy=False)
    out = pd.DataFrame(columns, index=index, copy=False)
    out.columns = frame.columns
    return out
