"""``leadscore inspect EXPORT``: profile a CRM export and write a draft mapping to edit.

The step around :mod:`features.mapping.profile` and :mod:`features.mapping.draft`: it reads the
export (a folder of CSV / Parquet files, or one file for a flat export), profiles it, drafts its
mapping, and writes three files into ``out``:

- ``mapping.draft.yaml``: the draft mapping file, a comment on every guess (docs/inspect.md);
- ``profile.json``: the whole profile (every table and column), for tools;
- ``profile.md``: the same for a reader: one line per column, keys, outcome, leak hints.

CSV files are read as text, as :mod:`features.readers` does (every value a string, empty ->
missing, nothing else interpreted), with the separator detected per file (``csv.Sniffer`` on
the first characters) unless one is given. Every problem with the export is a one-line
:class:`~features.validation.ContractError`; every write goes through :mod:`features.outputs`
(nothing leadscore did not write is replaced, and a draft the user has edited since is not
either).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from features.mapping.draft import draft_mapping
from features.mapping.profile import (
    profile_export,
    profile_markdown,
    profile_report,
    profile_summary,
)
from features.outputs import OutputError, check_writable, refuse_overlap, write_file, write_json
from features.readers import DEFAULT_ENCODING, NO_TABLE
from features.validation import ContractError

log = logging.getLogger(__name__)

#: File endings read as export tables (the table's name is the file name without them).
CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".txt", ".txt.gz")
PARQUET_SUFFIXES = (".parquet", ".pq")
#: Separators the sniffer chooses from, and the names a user may give for them.
SEPARATORS = (",", ";", "\t", "|")
SEPARATOR_NAMES = {"tab": "\t", "\\t": "\t", "comma": ",", "semicolon": ";", "pipe": "|"}
#: Characters read from the top of a CSV file to detect its separator.
SNIFF_CHARS = 64 * 1024
#: The files ``run_inspect`` writes into its output folder.
MAPPING_FILE = "mapping.draft.yaml"
REPORT_FILE = "profile.json"
SUMMARY_FILE = "profile.md"


@dataclass(frozen=True)
class Export:
    """The tables of an export as read: name -> frame, the file each came from, its separator."""

    frames: dict[str, pd.DataFrame]
    files: dict[str, Path]
    #: table name -> the CSV separator used (absent for Parquet)
    separators: dict[str, str]


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def table_name(path: Path) -> str | None:
    """The export table a file holds (``contacts.csv.gz`` -> ``contacts``); None if not a table."""
    name = path.name
    if name.startswith((".", "~$")):  # hidden files, our marker, office lock files
        return None
    for suffix in CSV_SUFFIXES + PARQUET_SUFFIXES:
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return None


def _is_parquet(path: Path) -> bool:
    return path.name.lower().endswith(PARQUET_SUFFIXES)


def export_files(export: str | os.PathLike) -> dict[str, Path]:
    """Table name -> file, for a folder of CSV / Parquet files or a single file.

    Parquet wins over a CSV of the same table (as the readers do), with a warning. A missing
    path, an empty folder or a file of another kind is a one-line ``ContractError``.
    """
    path = Path(export)
    if not path.exists():
        raise ContractError(f"export {path} does not exist: check the path", table=NO_TABLE)
    if path.is_file():
        name = table_name(path)
        if name is None:
            raise ContractError(
                f"{path} is not a CSV or Parquet file (expected one of "
                f"{', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)})",
                table=NO_TABLE,
            )
        return {name: path}
    try:
        entries = sorted(p for p in path.iterdir() if p.is_file())
    except OSError as err:
        raise ContractError(
            f"export folder {path} cannot be read ({err.strerror or _first_line(err)})",
            table=NO_TABLE,
        ) from None
    files: dict[str, Path] = {}
    for entry in entries:
        name = table_name(entry)
        if name is None:
            continue
        if name in files:
            keep, drop = (entry, files[name]) if _is_parquet(entry) else (files[name], entry)
            log.warning("%s ignored: %s is read", drop, keep)
            files[name] = keep
        else:
            files[name] = entry
    if not files:
        raise ContractError(
            f"export folder {path} holds no CSV or Parquet file (looked for "
            f"{', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)})",
            table=NO_TABLE,
        )
    return files


def _is_utf8(encoding: str) -> bool:
    return encoding.lower().replace("_", "-") in ("utf-8", "utf8", "utf-8-sig")


def _open_text(path: Path, encoding: str):
    # utf-8-sig: a byte-order mark is not part of the first column's name.
    encoding = "utf-8-sig" if _is_utf8(encoding) else encoding
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding=encoding, newline="")
    return path.open(encoding=encoding, newline="")


def _not_encoded(path: Path, name: str, encoding: str, detail: str = "") -> ContractError:
    label = "UTF-8" if _is_utf8(encoding) else encoding
    return ContractError(
        f"{path} is not {label} text{f' ({detail})' if detail else ''}: re-export it as "
        "UTF-8 or give its encoding (for example cp1252 or latin-1)",
        table=name,
    )


def _unreadable(path: Path, name: str, err: BaseException) -> ContractError:
    return ContractError(
        f"{path} cannot be read ({_first_line(err)}): check the file and re-export it", table=name
    )


def _duplicated(names: list[str]) -> list[str]:
    """The names that stand more than once, sorted."""
    return sorted(name for name, n in Counter(names).items() if n > 1)


def separator_option(separator: str | None) -> str | None:
    """A user's separator (``;``, ``tab``, ``\\t``, ``auto``/None) as one character or None."""
    if separator is None or separator.lower() == "auto":
        return None
    separator = SEPARATOR_NAMES.get(separator.lower(), separator)
    if len(separator) != 1:
        raise ContractError(
            f"CSV separator {separator!r} must be one character (or tab, or auto)", table=NO_TABLE
        )
    return separator


def sniff_separator(
    path: Path, *, encoding: str = DEFAULT_ENCODING, sniff_chars: int = SNIFF_CHARS
) -> str:
    """The separator of a CSV file among , ; tab |, from its first ``sniff_chars`` characters.

    ``csv.Sniffer`` first; if it cannot tell, the separator found most often in the header
    line; a file with one column reads as ``,``.
    """
    name = table_name(path) or path.name
    try:
        with _open_text(path, encoding) as handle:
            text = handle.read(sniff_chars)
    except UnicodeDecodeError:
        raise _not_encoded(path, name, encoding) from None
    except (OSError, EOFError) as err:
        raise _unreadable(path, name, err) from None
    if not text.strip():
        raise ContractError(f"{path} is empty: re-export it with a header row", table=name)
    # Whole lines only: a line cut in the middle skews the sniffer's counts.
    sample = text if len(text) < sniff_chars else text[: text.rfind("\n") + 1] or text
    try:
        return csv.Sniffer().sniff(sample, delimiters="".join(SEPARATORS)).delimiter
    except csv.Error:
        header = sample.splitlines()[0]
        counts = {sep: header.count(sep) for sep in SEPARATORS}
        best = max(counts, key=counts.get)
        return best if counts[best] else ","


def _read_csv(path: Path, name: str, separator: str, encoding: str) -> pd.DataFrame:
    """A CSV as text (empty -> missing), as features.readers reads it, with pyarrow (fast)."""
    try:
        with _open_text(path, encoding) as handle:
            header = next(csv.reader(handle, delimiter=separator))
    except StopIteration:
        raise ContractError(
            f"{path} is empty: re-export it with a header row", table=name
        ) from None
    except UnicodeDecodeError:
        raise _not_encoded(path, name, encoding) from None
    except (OSError, EOFError, csv.Error) as err:
        raise _unreadable(path, name, err) from None
    duplicated = _duplicated(header)
    if duplicated:
        raise ContractError(
            f"{path} has duplicate column header(s) {', '.join(map(repr, duplicated))}: "
            "re-export it with one column per name",
            table=name,
            column=duplicated[0],
        )
    try:
        table = pa_csv.read_csv(
            path,
            read_options=pa_csv.ReadOptions(column_names=header, skip_rows=1, encoding=encoding),
            parse_options=pa_csv.ParseOptions(delimiter=separator, newlines_in_values=True),
            convert_options=pa_csv.ConvertOptions(
                column_types={h: pa.string() for h in header},
                null_values=[""],
                strings_can_be_null=True,
                quoted_strings_can_be_null=True,
            ),
        )
    except pa.ArrowInvalid as err:
        message = _first_line(err)
        if "UTF8" in message or "UTF-8" in message:
            raise _not_encoded(path, name, encoding, message) from None
        raise ContractError(
            f"{path} is not a readable CSV file ({message}): check the separator "
            f"({separator!r} was used) or re-export it",
            table=name,
        ) from None
    except (OSError, EOFError, pa.ArrowException) as err:
        raise _unreadable(path, name, err) from None
    return table.to_pandas()


def _read_parquet(path: Path, name: str) -> pd.DataFrame:
    """A Parquet file with its stored types; a duplicate column name is refused."""
    try:
        names = pq.read_schema(path).names
        duplicated = _duplicated(names)
        if duplicated:
            raise ContractError(
                f"{path} has duplicate column name(s) {', '.join(map(repr, duplicated))}: "
                "re-export it with one column per name",
                table=name,
                column=duplicated[0],
            )
        frame = pq.read_table(path).to_pandas()
    except (OSError, pa.ArrowException) as err:
        raise ContractError(
            f"{path} is not a readable Parquet file ({_first_line(err)}): re-export it",
            table=name,
        ) from None
    return frame.set_axis([str(c) for c in frame.columns], axis=1)


def read_export(
    export: str | os.PathLike,
    *,
    separator: str | None = None,
    encoding: str = DEFAULT_ENCODING,
    sniff_chars: int = SNIFF_CHARS,
) -> Export:
    """Read every table of an export (see :func:`export_files`): CSV as text, Parquet typed.

    ``separator`` None (or ``auto``) detects each CSV file's separator (:func:`sniff_separator`);
    ``encoding`` is the CSV files' text encoding.
    """
    chosen = separator_option(separator)
    frames, separators = {}, {}
    files = export_files(export)
    for name, path in files.items():
        if _is_parquet(path):
            frames[name] = _read_parquet(path, name)
        else:
            sep = chosen or sniff_separator(path, encoding=encoding, sniff_chars=sniff_chars)
            separators[name] = sep
            frames[name] = _read_csv(path, name, sep, encoding)
        log.info("read %s: %d rows, %d columns from %s", name, *frames[name].shape, path)
    return Export(frames, files, separators)


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _check_draft_not_edited(draft: Path, report: Path) -> None:
    """A draft the user has edited since leadscore wrote it is theirs now: never overwrite it.

    The report records the hash of the draft it was written with; the draft must still match.
    """
    if not draft.is_file():
        return
    try:
        recorded = json.loads(report.read_text(encoding="utf-8")).get("mapping_sha256")
    except (OSError, ValueError, AttributeError):
        recorded = None
    if recorded != _sha256(draft.read_text(encoding="utf-8", errors="replace")):
        raise OutputError(
            f"{draft} was edited after leadscore wrote it: refusing to overwrite your edits; "
            "rename it (it is your mapping now) or choose another --out"
        )


def run_inspect(
    export: str | os.PathLike,
    out: str | os.PathLike,
    *,
    separator: str | None = None,
    encoding: str = DEFAULT_ENCODING,
    layout: Literal["auto", "flat", "relational"] = "auto",
    outcome: str | None = None,
    won: list[str] | tuple[str, ...] | None = None,
    sample_size: int = 10_000,
    top_n: int = 20,
    seed: int = 0,
    auc_threshold: float = 0.8,
    fill_ratio: float = 3.0,
    fill_difference: float = 0.5,
    min_join_match: float = 0.9,
    max_event_types: int = 30,
) -> dict[str, Any]:
    """Profile ``export`` and write the draft mapping and the profile into folder ``out``.

    ``export``: a folder of CSV / Parquet files (relational: one file per table) or one file
    (flat: one row per lead). ``separator``: the CSV separator (None or ``auto``: detected per
    file). ``encoding``: of the CSV files. ``layout``: ``auto`` (one table: flat), ``flat`` or
    ``relational``. ``outcome``: the outcome column (``y``, ``deals.dealstage``; default: the
    best candidate) and ``won`` its won values (default: the won-looking ones). ``sample_size``
    values per column decide types, date formats and patterns (counts use every row);
    ``top_n`` most frequent values are kept per column; ``seed`` draws the sample.
    ``auc_threshold``, ``fill_ratio``, ``fill_difference``: when a column is a leak hint (see
    :func:`features.mapping.profile.leak_hints`); ``min_join_match``: the share of a column's
    values that must be another table's ids for a join key; ``max_event_types``: most activity
    types declared in the draft.

    Writes ``mapping.draft.yaml``, ``profile.json`` and ``profile.md`` (nothing if ``out`` is,
    holds or lies inside the export, or a file there was not written by leadscore or was edited
    since) and returns the summary: tables, rows, columns, candidate id / created / outcome
    columns, join keys, leak hints, ambiguous dates and the paths written.
    """
    out = Path(out)
    draft_path, report_path, summary_path = (
        out / MAPPING_FILE,
        out / REPORT_FILE,
        out / SUMMARY_FILE,
    )
    refuse_overlap({"EXPORT": export}, {"--out": out})
    check_writable(draft_path, report_path, summary_path)
    _check_draft_not_edited(draft_path, report_path)

    tables = read_export(export, separator=separator, encoding=encoding)
    profile = profile_export(
        tables.frames,
        layout=layout,
        outcome=outcome,
        won=won,
        sample_size=sample_size,
        top_n=top_n,
        seed=seed,
        auc_threshold=auc_threshold,
        fill_ratio=fill_ratio,
        fill_difference=fill_difference,
        min_join_match=min_join_match,
    )
    used = Counter(tables.separators.values())
    common = used.most_common(1)[0][0] if used else None
    if len(used) > 1:
        log.warning(
            "the CSV files use different separators (%s): a mapping has one; the draft says %r",
            ", ".join(f"{k!r} in {n}" for k, n in used.items()),
            common,
        )
    source = Path(export).name or str(export)
    text = draft_mapping(
        profile,
        source=source,
        files={name: path.name for name, path in tables.files.items()},
        separator=common,
        encoding=encoding,
        max_event_types=max_event_types,
    )
    summary = {
        "export": str(export),
        "files": {name: str(path) for name, path in tables.files.items()},
        "separators": dict(tables.separators),
        "rows": sum(len(f) for f in tables.frames.values()),
        **profile_summary(profile),
        "mapping": str(draft_path),
        "report": str(report_path),
        "summary": str(summary_path),
    }
    report = {"summary": summary, "mapping_sha256": _sha256(text), **profile_report(profile)}
    write_json(report_path, report)
    write_file(summary_path, lambda tmp: tmp.write_text(profile_markdown(profile, source=source)))
    write_file(draft_path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    _log_summary(summary)
    return summary


def _log_summary(summary: dict[str, Any]) -> None:
    """What the user should look at first, in a few log lines."""
    for name, t in summary["tables"].items():
        log.info("%s: %d rows, %d columns, looks like %s", name, t["rows"], t["columns"], t["role"])
    outcome = summary["outcome"]
    if outcome is None:
        log.warning("no outcome column found: give one with --outcome COLUMN")
    else:
        log.info(
            "outcome: %s.%s (won: %s)",
            outcome["table"],
            outcome["column"],
            ", ".join(outcome["won"]),
        )
    for hint in summary["leak_hints"]:
        log.warning("leak? %s.%s: %s", hint["table"], hint["column"], hint["reason"])
    for column in summary["ambiguous_dates"]:
        log.warning(
            "%s: ambiguous date format (day or month first?): choose one in the draft", column
        )
    log.info("draft mapping written to %s (profile: %s)", summary["mapping"], summary["summary"])
