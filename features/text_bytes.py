"""Screens of Arrow text read from its UTF-8 bytes with numpy, for the checks validation makes
on every id and text value (control characters, whitespace around ids).

A per-row string kernel costs seconds on 64M event ids (a regex 3.6 s, whitespace trimming
1.7 s); the bytes answer in a tenth of that. In UTF-8 an ASCII byte is never part of another
character, so a question about ASCII characters is exact on the bytes. Each screen says where
the answer *may* be yes; the caller confirms those rows with the exact kernel, so a false alarm
costs time and never changes a result.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache

import numpy as np
import pyarrow as pa

#: Bytes (or rows) examined at a time: bounds the temporaries of a lookup on a long column.
SLICE = 1 << 22
#: Printable ASCII other than space (0x21-0x7E): a value that begins and ends with one of these
#: bytes has no whitespace around it, whatever Unicode counts as whitespace.
_PLAIN_EDGE = np.zeros(256, dtype=bool)
_PLAIN_EDGE[0x21:0x7F] = True


@lru_cache(maxsize=16)
def ascii_byte_set(pattern: str) -> np.ndarray:
    """The 256 bytes, True where ``pattern`` (a regex for one character, such as a character
    class) matches that ASCII character. Meant for patterns that match ASCII characters only
    (the contract's control-character classes): other characters are not looked at."""
    compiled = re.compile(pattern)
    found = np.zeros(256, dtype=bool)
    found[:128] = [compiled.search(chr(i)) is not None for i in range(128)]
    found.flags.writeable = False
    return found


def _chunks(arr: pa.Array | pa.ChunkedArray) -> Iterator[pa.Array]:
    """``arr``'s chunks as ``string`` or ``large_string`` arrays (other text types cast)."""
    for chunk in arr.chunks if isinstance(arr, pa.ChunkedArray) else [arr]:
        if not (pa.types.is_string(chunk.type) or pa.types.is_large_string(chunk.type)):
            chunk = chunk.cast(pa.large_string())
        yield chunk


def _buffers(chunk: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A text chunk's offsets (one per row, plus the end) and its data bytes, without a copy."""
    width = 8 if pa.types.is_large_string(chunk.type) else 4
    _, offsets, data = chunk.buffers()
    ends = np.frombuffer(
        offsets, dtype=np.int64 if width == 8 else np.int32, count=len(chunk) + 1,
        offset=chunk.offset * width,
    )  # fmt: skip
    return ends, (
        np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
    )


def may_hold_byte(arr: pa.Array | pa.ChunkedArray, byte_set: np.ndarray) -> bool:
    """False when no value of ``arr`` holds a byte of ``byte_set`` (256 booleans); True when
    one may (the bytes under a missing value are looked at too)."""
    wanted = np.flatnonzero(byte_set)
    if not len(wanted):
        return False
    for chunk in _chunks(arr):
        if not len(chunk):  # its offsets buffer may be empty
            continue
        ends, data = _buffers(chunk)
        values = data[ends[0] : ends[-1]]
        for start in range(0, len(values), SLICE):
            part = values[start : start + SLICE]
            low, high = part.min(), part.max()
            # Ids and most text span a narrow band of bytes: no wanted byte inside it, no lookup.
            if not ((wanted >= low) & (wanted <= high)).any():
                continue
            if byte_set[part].any():
                return True
    return False


def edge_suspects(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Per row, whether the value is empty (or missing) or begins or ends with a byte other
    than printable ASCII: the only values that trimming whitespace can change or empty."""
    out = np.empty(len(arr), dtype=bool)
    row = 0
    for chunk in _chunks(arr):
        for start in range(0, len(chunk), SLICE):
            ends, data = _buffers(chunk.slice(start, SLICE))
            first, stop = ends[:-1], ends[1:]
            empty = stop <= first
            suspect = empty.copy()
            full = ~empty
            suspect[full] = ~(_PLAIN_EDGE[data[first[full]]] & _PLAIN_EDGE[data[stop[full] - 1]])
            out[row : row + len(suspect)] = suspect
            row += len(suspect)
    return out
