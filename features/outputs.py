"""Outputs that can never destroy inputs: overlap checks, owned files, atomic writes.

Three rules, for every command that writes:

1. **No overlap.** An output (file or folder) that is, contains or lies inside an input, or
   another output, is refused before anything is read or written (:func:`refuse_overlap`):
   ``leadscore validate X --rejects X`` must not touch the export X.
2. **Only what we created.** Each folder we write into keeps a marker, :data:`MARKER`, listing
   the files leadscore wrote there. A file that exists but is not listed was not made by us: it
   is never overwritten nor deleted (:class:`OutputError`); a listed file may be replaced or
   removed (a stale table of an earlier run).
3. **Atomic.** A file is written to a temporary name in its folder and moved into place with
   ``os.replace``: a killed command leaves the old file or the new one, never half a file.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from features.urls import display_url, sqlite_path

log = logging.getLogger(__name__)

#: The marker file of an output folder: the names of the files leadscore wrote there.
MARKER = ".leadscore-outputs.json"


class OutputError(ValueError):
    """An output that would overwrite, delete or overlap something it must not."""


def local_path(location: str | os.PathLike | None) -> Path | None:
    """The filesystem path of a location: a path, ``file://`` or ``sqlite:///`` URL; else None."""
    if location is None:
        return None
    text = str(location)
    if text[:7].lower() == "file://":
        text = text[7:]
    elif "://" in text:
        return sqlite_path(text)  # None for a server database or an API: not a file of ours
    return Path(os.path.abspath(Path(text).expanduser()))


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop: compare the path as written
        return path


def _overlap(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def refuse_overlap(
    inputs: Mapping[str, str | os.PathLike | None], outputs: Mapping[str, str | os.PathLike | None]
) -> None:
    """Raise :class:`OutputError` if an output is, contains or lies inside an input or another output.

    Keys name the option (``"--rejects"``) for the message; values are paths or URLs (None and
    server URLs are skipped).
    """
    ins = {k: _resolved(p) for k, v in inputs.items() if (p := local_path(v)) is not None}
    outs = {k: _resolved(p) for k, v in outputs.items() if (p := local_path(v)) is not None}
    for out_name, out in outs.items():
        for in_name, src in ins.items():
            if _overlap(out, src):
                how = "is" if out == src else "lies inside" if src in out.parents else "contains"
                raise OutputError(
                    f"{out_name} {display_url(out)} {how} the input {in_name} {display_url(src)}: "
                    "an output must never be written over or into an input; choose another folder"
                )
    names = list(outs)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            if _overlap(outs[first], outs[second]):
                raise OutputError(
                    f"{first} {outs[first]} and {second} {outs[second]} overlap: each output "
                    "needs a place of its own"
                )


# ------------------------------------------------------------------------------------------------
# Owned files
# ------------------------------------------------------------------------------------------------
def _marker(folder: Path) -> Path:
    return folder / MARKER


def owned_files(folder: str | os.PathLike) -> set[str]:
    """Names of the files leadscore wrote in ``folder`` (from its marker; empty if none)."""
    marker = _marker(Path(folder))
    if not marker.is_file():
        return set()
    try:
        return set(json.loads(marker.read_text()).get("files", []))
    except (OSError, ValueError, AttributeError):
        log.warning("%s is unreadable: treating no file in %s as ours", marker, folder)
        return set()


def _record(folder: Path, add: set[str] = frozenset(), drop: set[str] = frozenset()) -> None:
    files = (owned_files(folder) | set(add)) - set(drop)
    tmp = folder / f".{MARKER}.tmp-{uuid.uuid4().hex[:8]}"
    tmp.write_text(json.dumps({"written_by": "leadscore", "files": sorted(files)}, indent=1) + "\n")
    os.replace(tmp, _marker(folder))


def _check_writable(path: Path) -> None:
    if path.is_symlink() or path.exists():
        if path.is_dir() and not path.is_symlink():
            raise OutputError(f"{path} is a folder: refusing to write a file over it")
        if path.name not in owned_files(path.parent):
            raise OutputError(
                f"{path} exists and was not written by leadscore: refusing to overwrite it; "
                "choose another output or move the file away"
            )


def check_writable(*paths: str | os.PathLike) -> None:
    """Raise :class:`OutputError` now if any of ``paths`` could not be written later (a file not
    ours, or a folder in its place): a command checks all its outputs before writing the first,
    so that a refusal leaves nothing half written."""
    for path in paths:
        _check_writable(Path(path))


def write_file(path: str | os.PathLike, writer: Callable[[Path], Any]) -> Path:
    """Write ``path`` atomically with ``writer(tmp_path)``; refuse to replace a file not ours.

    The folder is created if needed; the file is recorded in the folder's marker.
    """
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    _check_writable(path)
    tmp = folder / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        writer(tmp)
        _record(folder, add={path.name})
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def remove_file(path: str | os.PathLike) -> bool:
    """Remove ``path`` if leadscore wrote it (a stale output); leave any other file alone.

    Returns True if a file was removed.
    """
    path = Path(path)
    if not (path.is_symlink() or path.exists()):
        return False
    if path.name not in owned_files(path.parent) or path.is_dir():
        log.warning("%s was not written by leadscore: left as it is", path)
        return False
    path.unlink()
    _record(path.parent, drop={path.name})
    return True


def write_json(path: str | os.PathLike, payload: Any) -> Path:
    """``payload`` as indented JSON (``default=str``), written by :func:`write_file`."""
    text = json.dumps(payload, indent=2, default=str) + "\n"
    return write_file(path, lambda tmp: tmp.write_text(text))


def write_parquet(path: str | os.PathLike, frame) -> Path:
    """A frame as Parquet (no index), written by :func:`write_file`."""
    return write_file(path, lambda tmp: frame.to_parquet(tmp, index=False))


def write_csv(path: str | os.PathLike, frame) -> Path:
    """A frame as CSV (no index), written by :func:`write_file`."""
    return write_file(path, lambda tmp: frame.to_csv(tmp, index=False))


def save_figure(path: str | os.PathLike, figure, **kwargs: Any) -> Path:
    """A matplotlib figure saved by :func:`write_file` (format from the file's suffix)."""
    fmt = Path(path).suffix.lstrip(".") or None
    return write_file(path, lambda tmp: figure.savefig(tmp, format=fmt, **kwargs))
