"""How a mapping compares values: one normalisation for value-map keys, export values and the
contract's category values (``"Closed Won"``, ``closed-won`` and ``closed_won`` are one value)."""

from __future__ import annotations

import re
import unicodedata

import pandas as pd

#: Runs of these are one ``_`` in a normalised value.
SEPARATORS = r"[\s\-_]+"


def normalise_key(value: str) -> str:
    """How value-map keys and export values are compared: NFKC, lower case, runs of white space,
    ``-`` and ``_`` as one ``_``, trimmed (``"Closed Won"``, ``closed-won`` -> ``closed_won``)."""
    text = unicodedata.normalize("NFKC", str(value)).lower()
    return re.sub(SEPARATORS, "_", text).strip("_")


def normalise_values(values: pd.Series) -> pd.Series:
    """:func:`normalise_key` of every value of a text Series (vectorised)."""
    return (
        values.str.normalize("NFKC")
        .str.lower()
        .str.replace(SEPARATORS, "_", regex=True)
        .str.strip("_")
    )
