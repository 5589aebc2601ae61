"""Read and write the raw CRM tables: a folder of parquet / CSV files, or a SQL database.

The leads and opportunities tables are required; accounts and events are optional: a source
without them is read without them (logged), and validation supplies them empty.

Readers do no validation: CSV is read as text (every column a string, empty -> missing) so that
:func:`features.validation.validate_crm` sees exactly what the export holds; parquet and SQL keep
their stored types, except ID columns, which always come out as text (:func:`ids_as_text`).
Extra columns are kept (validation drops them).

Every problem with the source itself (a missing, empty, corrupt, unreadable or mis-encoded
file, a duplicate column, a database that cannot be reached) raises a one-line
:class:`~features.validation.ContractError` naming the file (or table and database) and what
to do; reading never writes anything.
"""

from __future__ import annotations

import codecs
import errno
import logging
import os
import stat
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import sqlalchemy as sa

from features import contract as ct
from features.contract import Kind
from features.outputs import (
    OutputError,
    check_writable,
    owned_files,
    remove_file,
    write_csv,
    write_parquet,
)
from features.urls import display_url, sqlite_path
from features.validation import ContractError

log = logging.getLogger(__name__)

#: Rows per INSERT batch when writing to a database.
SQL_CHUNKSIZE = 50_000
FORMATS = ("parquet", "csv")
#: The default encoding of CSV files (a UTF-8 byte-order mark is accepted too).
DEFAULT_ENCODING = "utf-8"
#: Database backends a CRM source URL may name (SQLAlchemy backend names).
SQL_BACKENDS = ("sqlite", "postgresql")
SUPPORTED_SOURCES = (
    "a folder of .parquet/.csv files, sqlite:///path/to/crm.db or postgresql+psycopg://user@host/db"
)
#: ``table`` of a ContractError about the whole source rather than one table.
NO_TABLE = ""
#: Every integer up to 2**53 is exactly a float64; beyond, a float id may have been rounded.
MAX_EXACT_FLOAT_INT = 2**53
#: Bytes decoded at a time when looking for the first byte that is not in the CSV encoding.
DECODE_BLOCK = 1 << 20
#: A table read in chunks says how far it got at most this often (seconds).
PROGRESS_SECONDS = 30.0

#: ``progress(task, done, total)``: called as ("read", i, n_tables) after each table is read.
Progress = Callable[[str, int, int], None]


def _is_url(source: str | os.PathLike) -> bool:
    return "://" in str(source)


def _first_line(err: BaseException) -> str:
    """The first non-empty line of an error message (driver and Arrow errors run long)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def _missing_table(
    table: str, source: str | os.PathLike, found: list[str], export: str | None = None
) -> ContractError:
    where = "database" if _is_url(source) else "folder"
    export = export or table
    expect = "a table" if _is_url(source) else f"{export}.parquet or {export}.csv"
    if export != table:  # named by the mapping file
        return ContractError(
            f"the {table} table (mapping: from {export!r}) not found in {where} "
            f"{display_url(source)} (expected {expect}); found: "
            f"{', '.join(sorted(found)) or '(nothing)'}. Fix `from:` in the mapping file.",
            table=table,
        )
    required = [t.name for t in ct.TABLES.values() if t.required]
    optional = [t.name for t in ct.TABLES.values() if not t.required and t.name != "field_history"]
    return ContractError(
        f"CRM table '{table}' not found in {where} {display_url(source)} (expected {expect}); "
        f"found: {', '.join(sorted(found)) or '(nothing)'}. Export {' and '.join(required)} "
        f"there ({' and '.join(optional)} optional), with the contract names.",
        table=table,
    )


def _absent(source: str | os.PathLike, tables: list[str]) -> None:
    """Log the optional tables the source does not hold (validation supplies them empty)."""
    if tables:
        log.info(
            "optional table(s) not in %s, read as absent: %s",
            display_url(source),
            ", ".join(tables),
        )


# ------------------------------------------------------------------------------------------------
# IDs: one rule for every table and every source
# ------------------------------------------------------------------------------------------------
def _id_columns(table: str) -> list[str]:
    return (
        [c.name for c in {**ct.TABLES, **ct.EXTRA_TABLES}[table].columns if c.kind == Kind.ID]
        if table in ct.TABLES or table in ct.EXTRA_TABLES
        else []
    )


def _numeric_text(arr: pa.Array) -> pa.Array | None:
    """Numbers as id text (integers and integral floats as digits); None if not numeric."""
    kind = arr.type
    if pa.types.is_integer(kind):
        return pc.cast(arr, pa.string())
    if pa.types.is_decimal(kind):  # exact text of any width: "12.00" -> "12", "1.50" stays
        return pc.replace_substring_regex(pc.cast(arr, pa.string()), r"\.0+$", "")
    if pa.types.is_floating(kind):
        arr = pc.if_else(pc.is_nan(arr), pa.scalar(None, kind), arr)  # NaN is missing, not "nan"
        # Integral floats (an int column that met a missing value) back to digits, but only
        # where float64 is exact: a rounded big id must not pose as a real one.
        exact = pc.and_(
            pc.equal(arr, pc.trunc(arr)), pc.less_equal(pc.abs(arr), MAX_EXACT_FLOAT_INT)
        )
        digits = pc.cast(pc.cast(pc.if_else(exact, arr, 0), pa.int64()), pa.string())
        return pc.if_else(exact, digits, pc.cast(arr, pa.string()))
    return None


def ids_as_text(values: pd.Series) -> pd.Series:
    """An ID column as text: integers and integral floats as digits ("12", never "12.0").

    Text is returned unchanged ("0012" stays "0012"); a non-integral or inexact (beyond 2**53)
    float keeps its float text ("1.5") so validation shows it instead of matching by accident.
    Booleans, dates and mixed objects are returned unchanged (validation judges them).
    """
    dtype = values.dtype
    if isinstance(dtype, pd.StringDtype) or pd.api.types.is_bool_dtype(dtype):
        return values
    if not (
        pd.api.types.is_numeric_dtype(dtype)
        or pd.api.types.is_object_dtype(dtype)
        or isinstance(dtype, pd.CategoricalDtype)
    ):
        return values
    try:
        arr = pa.array(values, from_pandas=True)
    except (pa.ArrowException, TypeError, ValueError):  # mixed objects: leave them to validation
        return values
    if pa.types.is_dictionary(arr.type):  # a categorical: its values, not its codes
        arr = pc.cast(arr, arr.type.value_type)
    text = _numeric_text(arr)
    if text is None:
        return values
    if (
        pa.types.is_floating(arr.type)
        and pc.any(pc.greater(pc.abs(arr), MAX_EXACT_FLOAT_INT)).as_py()
    ):
        log.warning(
            "%s: float ids beyond 2**53 may have been rounded, kept as float text: store ids as text",
            values.name,
        )
    return text.to_pandas().set_axis(values.index).rename(values.name).astype("str")


def _ids_to_text(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """``frame`` with :func:`ids_as_text` applied to the table's ID columns that it holds."""
    present = [name for name in _id_columns(table) if name in frame.columns]
    return (
        frame.assign(**{name: ids_as_text(frame[name]) for name in present}) if present else frame
    )


# ------------------------------------------------------------------------------------------------
# Folder sources
# ------------------------------------------------------------------------------------------------
def _stat(path: Path, table: str) -> os.stat_result:
    """``path``'s status, following links; a broken link, a loop or no access is a ContractError."""
    try:
        return path.stat()
    except FileNotFoundError:
        if not os.path.lexists(path):
            raise
        raise ContractError(
            f"{path} is a broken symbolic link (to {os.readlink(path)}): fix or remove the link",
            table=table,
        ) from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise ContractError(
                f"{path} is a symbolic link loop: point it at the real file or remove it",
                table=table,
            ) from None
        raise _unreadable(path, table, err) from None


def _unreadable(path: Path, table: str, err: OSError) -> ContractError:
    if isinstance(err, PermissionError):
        return ContractError(
            f"{path} cannot be read (permission denied): check its permissions", table=table
        )
    reason = err.strerror or _first_line(err)
    return ContractError(
        f"{path} cannot be read ({reason}): check the file and re-export it", table=table
    )


def _check_table_file(path: Path, table: str) -> None:
    """A table file must be a non-empty regular file (a folder is a partitioned export)."""
    mode = _stat(path, table)
    if stat.S_ISDIR(mode.st_mode):
        raise ContractError(
            f"{path} is a folder, not a file: export {table} as one {path.suffix} file", table=table
        )
    if not stat.S_ISREG(mode.st_mode):
        raise ContractError(f"{path} is not a regular file: export {table} as a file", table=table)
    if mode.st_size == 0:
        raise ContractError(
            f"{path} is empty (0 bytes): re-export {table} with a header row", table=table
        )


def _first_undecodable(path: Path, encoding: str) -> tuple[int, int, int] | None:
    """(byte, offset, line) of the first byte not valid in ``encoding``; None if all decode.

    pandas reports positions inside its read buffer, not the file: decode again in blocks.
    """
    decoder = codecs.getincrementaldecoder(encoding)()
    offset, line = 0, 1
    with path.open("rb") as handle:
        while True:
            block = handle.read(DECODE_BLOCK)
            pending = len(decoder.getstate()[0])  # undecoded tail of the previous block
            try:
                decoder.decode(block, final=not block)
            except UnicodeDecodeError as err:
                before = max(err.start - pending, 0)
                return (
                    err.object[err.start],
                    offset - pending + err.start,
                    line + block[:before].count(b"\n"),
                )
            if not block:
                return None
            line += block.count(b"\n")
            offset += len(block)


def _not_encoded(path: Path, table: str, encoding: str, err: UnicodeDecodeError) -> ContractError:
    name = codecs.lookup(encoding).name
    label = "UTF-8" if name.startswith("utf-8") else encoding
    found = _first_undecodable(path, encoding)
    where = (
        f"byte 0x{found[0]:02x} at position {found[1]}, line {found[2]}"
        if found
        else _first_line(err)
    )
    return ContractError(
        f"{path} is not {label} ({where}): re-export as {label} or set crm.encoding", table=table
    )


def _csv_frames(
    path: Path, table: str, encoding: str, separator: str = ",", rows: int | None = None
) -> Iterator[pd.DataFrame]:
    """A CSV as text (empty -> missing), whole or ``rows`` rows at a time; a duplicate header is
    refused, not renamed to ``x.1``. A ``.csv.gz`` file is decompressed on the fly."""
    text = {"dtype": str, "keep_default_na": False, "encoding": encoding, "sep": separator}
    try:
        # The header row as data: pandas would silently rename a second "x" to "x.1".
        header = pd.read_csv(path, header=None, nrows=1, **text).iloc[0]
        duplicated = header[header.duplicated()].unique().tolist()
        if duplicated:
            raise ContractError(
                f"{path} has duplicate column header(s) {', '.join(map(repr, duplicated))}: "
                f"re-export {table} with one column per name",
                table=table,
                column=duplicated[0],
            )
        if rows is None:
            yield _as_missing(pd.read_csv(path, **text))
        else:  # a header alone gives one empty chunk
            with pd.read_csv(path, chunksize=rows, **text) as reader:
                for frame in reader:
                    yield _as_missing(frame)
    except UnicodeDecodeError as err:
        raise _not_encoded(path, table, encoding, err) from None
    except pd.errors.EmptyDataError:
        raise ContractError(
            f"{path} has no header row: re-export {table} with its column names", table=table
        ) from None
    except pd.errors.ParserError as err:
        raise ContractError(
            f"{path} is not a readable CSV file ({_first_line(err)}): re-export it", table=table
        ) from None
    except OSError as err:
        raise _unreadable(path, table, err) from None


def _as_missing(frame: pd.DataFrame) -> pd.DataFrame:
    """Empty strings as missing: nothing else of a CSV's text is interpreted."""
    return frame.mask(frame == "")


def _read_csv(path: Path, table: str, encoding: str, separator: str = ",") -> pd.DataFrame:
    """A CSV as text, whole (see :func:`_csv_frames`)."""
    return next(_csv_frames(path, table, encoding, separator))


def _parquet_frames(path: Path, table: str, rows: int | None = None) -> Iterator[pd.DataFrame]:
    """A Parquet file with its stored types, whole or ``rows`` rows at a time (by record
    batches); ID columns read exactly (see :func:`ids_as_text`)."""
    try:
        names = pq.read_schema(path).names
        duplicated = pd.Index(names)[pd.Index(names).duplicated()].unique().tolist()
        if duplicated:
            raise ContractError(
                f"{path} has duplicate column name(s) {', '.join(map(repr, duplicated))}: "
                f"re-export {table} with one column per name",
                table=table,
                column=duplicated[0],
            )
        # Category columns as dictionaries: a few distinct spellings, not one string per row.
        columns = ct.TABLES[table].columns if table in ct.TABLES else ()
        dictionary = [c.name for c in columns if c.kind == Kind.CATEGORY and c.name in names]
        if rows is None:
            yield _parquet_frame(pq.read_table(path, read_dictionary=dictionary or None), table)
        else:
            with pq.ParquetFile(path, read_dictionary=dictionary or None) as file:
                for arrow in _batches(file, rows):
                    yield _parquet_frame(arrow, table)
    except OSError as err:
        if isinstance(err, PermissionError) or err.errno is not None:
            raise _unreadable(path, table, err) from None
        raise _not_parquet(path, table, err) from None  # Arrow's IO errors on a corrupt file
    except pa.ArrowException as err:
        raise _not_parquet(path, table, err) from None


def _batches(file: pq.ParquetFile, rows: int) -> Iterator[pa.Table]:
    """``file`` as tables of ``rows`` rows (the last one shorter; one empty table for a file
    without rows). Arrow's batches end at each row group: small row groups are joined."""
    pending: list[pa.RecordBatch] = []
    held, empty = 0, True
    for batch in file.iter_batches(batch_size=rows):
        pending.append(batch)
        held += batch.num_rows
        if held >= rows:
            empty = False
            joined = pa.Table.from_batches(pending)
            for start in range(0, held - held % rows, rows):
                yield joined.slice(start, rows)
            pending = [b for b in joined.slice(held - held % rows).to_batches() if b.num_rows]
            held %= rows
    if held or empty:
        yield pa.Table.from_batches(pending) if pending else file.schema_arrow.empty_table()


def _parquet_frame(arrow: pa.Table, table: str) -> pd.DataFrame:
    """``arrow`` in pandas; integer and decimal ID columns taken straight from Arrow."""
    frame = arrow.to_pandas()
    names = arrow.schema.names
    # pandas turns an integer column with a missing value into float64, which rounds ids
    # beyond 2**53: take integer and decimal ID columns straight from Arrow.
    exact = {
        name: pd.Series(pd.arrays.ArrowExtensionArray(arrow.column(name)), index=frame.index)
        for name in _id_columns(table)
        if name in names
        and (
            pa.types.is_integer(arrow.schema.field(name).type)
            or pa.types.is_decimal(arrow.schema.field(name).type)
        )
    }
    return frame.assign(**exact) if exact else frame


def _read_parquet(path: Path, table: str) -> pd.DataFrame:
    """A Parquet file, whole (see :func:`_parquet_frames`)."""
    return next(_parquet_frames(path, table))


def _not_parquet(path: Path, table: str, err: BaseException) -> ContractError:
    return ContractError(
        f"{path} is not a readable Parquet file ({_first_line(err)}): re-export it", table=table
    )


def _check_encoding(encoding: str) -> None:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ContractError(
            f"unknown CSV encoding {encoding!r}: set crm.encoding to a Python codec name "
            "such as utf-8, cp1252 or latin-1",
            table=NO_TABLE,
        ) from None


def _table_file(folder: Path, name: str) -> Path | None:
    """The file to read for table ``name``: Parquet wins over CSV (even a broken one), a plain
    CSV over a gzipped one."""
    parquet, csv, gz = folder / f"{name}.parquet", folder / f"{name}.csv", folder / f"{name}.csv.gz"
    # lexists: a broken link or a link loop is reported, not mistaken for a missing file.
    if os.path.lexists(parquet):
        if os.path.lexists(csv):
            log.warning("%s ignored: %s is read", csv, parquet)
        return parquet
    if os.path.lexists(csv):
        return csv
    return gz if os.path.lexists(gz) else None


def _may_be_absent(name: str, extras: Collection[str]) -> bool:
    """An optional contract table, or an extra table read only if the source holds it."""
    return name in extras or (name in ct.TABLES and not ct.TABLES[name].required)


def _steps(names: dict[str, str], extras: Collection[str]) -> Callable[[str, Progress], None]:
    """``step(name, progress)``: report one more table read, extras (read only if there) aside,
    so the count is the same whether or not a source holds them."""
    counted = [n for n in names if n not in extras]

    def step(name: str, progress: Progress) -> None:
        if name in counted:
            progress("read", counted.index(name) + 1, len(counted))

    return step


def _table_frames(
    name: str, frames: Iterable[pd.DataFrame], where: object
) -> Iterator[tuple[str, pd.DataFrame]]:
    """``(name, frame)`` for each frame of one table read from ``where``, ids as text (pandas
    reads an integer id column with NULLs as float64: the id rule undoes it). A table read in
    chunks says how far it got at most every :data:`PROGRESS_SECONDS` (a plain line under
    cron); the table's rows and columns are logged once it is read."""
    done, said = 0, time.monotonic()
    for frame in frames:
        frame = _ids_to_text(frame, name)
        done += len(frame)
        if time.monotonic() - said >= PROGRESS_SECONDS:
            log.info("read %s: %d rows so far from %s", name, done, where)
            said = time.monotonic()
        yield name, frame
    log.info("read %s: %d rows, %d columns from %s", name, done, frame.shape[1], where)


def _folder_frames(
    folder: Path,
    encoding: str,
    progress: Progress,
    names: dict[str, str],
    separator: str,
    extras: Collection[str] = (),
    rows: int | None = None,
) -> Iterator[tuple[str, pd.DataFrame]]:
    """(table, frame) for each table of the folder, whole or ``rows`` rows at a time."""
    _check_encoding(encoding)
    try:
        mode = _stat(folder, NO_TABLE)
    except FileNotFoundError:
        raise ContractError(
            f"CRM folder {folder.absolute()} does not exist: check crm.source or the path given",
            table=NO_TABLE,
        ) from None
    if not stat.S_ISDIR(mode.st_mode):
        raise ContractError(
            f"CRM source {folder.absolute()} is not a folder: give {SUPPORTED_SOURCES}",
            table=NO_TABLE,
        )
    try:
        found = [
            p.name for p in folder.iterdir() if p.name.endswith((".parquet", ".csv", ".csv.gz"))
        ]
    except OSError as err:
        raise _unreadable(folder, NO_TABLE, err) from None
    # Every required table is looked for before any is read: a missing one stops at once.
    paths, absent = {}, []
    for name, export in names.items():
        paths[name] = _table_file(folder, export)
        if paths[name] is None and not _may_be_absent(name, extras):
            raise _missing_table(name, folder, found, export)
    step = _steps(names, extras)
    for name, path in paths.items():
        if path is None:
            absent += [] if name in extras else [name]
            step(name, progress)
            continue
        _check_table_file(path, name)
        frames = (
            _parquet_frames(path, name, rows)
            if path.suffix == ".parquet"
            else _csv_frames(path, name, encoding, separator, rows)
        )
        yield from _table_frames(name, frames, path)
        step(name, progress)
    _absent(folder, absent)


# ------------------------------------------------------------------------------------------------
# Database sources
# ------------------------------------------------------------------------------------------------
def _engine(url: str, *, must_exist: bool) -> sa.Engine:
    """An engine for a supported database URL; a SQLite file that must exist is not created."""
    shown = display_url(url)
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise ContractError(
            f"{shown} is not a valid database URL: give {SUPPORTED_SOURCES}", table=NO_TABLE
        ) from None
    if parsed.get_backend_name() not in SQL_BACKENDS:
        raise ContractError(
            f"unsupported CRM source scheme '{parsed.drivername}://' in {shown}: give {SUPPORTED_SOURCES}",
            table=NO_TABLE,
        )
    # SQLite creates a missing file on connect: check first so a typo leaves nothing behind.
    path = sqlite_path(parsed) if must_exist else None
    if path is not None:
        if not path.is_file():
            problem = "is a folder, not a database file" if path.is_dir() else "does not exist"
            raise ContractError(f"CRM database {path} {problem}: check the path", table=NO_TABLE)
    try:
        return sa.create_engine(url)
    except (sa.exc.NoSuchModuleError, ImportError) as err:
        raise ContractError(
            f"cannot open {shown} ({_first_line(err)}): give {SUPPORTED_SOURCES} "
            "with its driver installed",
            table=NO_TABLE,
        ) from None


def _database_error(url: str, table: str, err: sa.exc.SQLAlchemyError) -> ContractError:
    # The driver's own message, first line only (SQLAlchemy appends the SQL and a help link);
    # masked too, in case a driver echoes the connection string.
    cause = getattr(err, "orig", None) or err
    where = f"table '{table}' of " if table else ""
    return ContractError(
        f"cannot read {where}CRM database {display_url(url)}: {display_url(_first_line(cause))}",
        table=table,
    )


def _sql_frames(
    url: str,
    progress: Progress,
    names: dict[str, str],
    extras: Collection[str] = (),
    rows: int | None = None,
) -> Iterator[tuple[str, pd.DataFrame]]:
    """(table, frame) for each table of the database, whole or ``rows`` rows at a time."""
    engine = _engine(url, must_exist=True)
    name = NO_TABLE
    try:
        with engine.connect() as conn:
            found = sa.inspect(conn).get_table_names()
            absent = []
            for name, export in names.items():
                if export not in found and not _may_be_absent(name, extras):
                    raise _missing_table(name, url, found, export)
            step = _steps(names, extras)
            for name, export in names.items():
                if export not in found:
                    absent += [] if name in extras else [name]
                    step(name, progress)
                    continue
                # In chunks, a table without rows gives one empty frame. Streamed: without
                # it, psycopg fetches the whole table into memory before the first chunk.
                frames = (
                    [pd.read_sql_table(export, conn)]
                    if rows is None
                    else pd.read_sql_table(
                        export,
                        conn.execution_options(stream_results=True, max_row_buffer=rows),
                        chunksize=rows,
                    )
                )
                yield from _table_frames(name, frames, display_url(url))
                step(name, progress)
    except sa.exc.SQLAlchemyError as err:
        raise _database_error(url, name, err) from None
    finally:
        engine.dispose()
    _absent(url, absent)


def _no_progress(task: str, done: int, total: int) -> None:
    """The default progress callback: does nothing."""


def read_crm(
    source: str | os.PathLike,
    encoding: str = DEFAULT_ENCODING,
    progress: Progress | None = None,
    tables: Mapping[str, str] | None = None,
    separator: str = ",",
) -> dict[str, pd.DataFrame]:
    """Read the raw CRM tables, keyed by table name, from a folder or an SQLAlchemy URL.

    Leads and opportunities must be there; an optional table (accounts, events) the source
    does not hold is left out of the result (logged at INFO), not an error.

    A folder holds ``{table}.parquet`` or ``{table}.csv`` per table (parquet preferred, the CSV
    ignored with a warning; CSV read as text in ``encoding``, a UTF-8 byte-order mark accepted,
    empty -> missing). A URL (anything containing ``://``) names a SQLite or PostgreSQL database
    with one table per name. ID columns come out as text (:func:`ids_as_text`). ``progress`` is
    called as ``("read", i, n_tables)`` after each table, absent ones included. Any problem with
    the source (missing required table, file or database; empty, corrupt, unreadable or
    mis-encoded file; duplicate column; connection failure) raises a one-line ``ContractError``.

    ``tables`` maps each contract table to the export's table or file stem (a mapping file's
    ``from:``; default: the contract's names); ``separator``: the CSV separator. A CSV may be
    gzipped (``contacts.csv.gz``).
    """
    return dict(iter_crm(source, encoding, progress, tables, separator))


def iter_crm(
    source: str | os.PathLike,
    encoding: str = DEFAULT_ENCODING,
    progress: Progress | None = None,
    tables: Mapping[str, str] | None = None,
    separator: str = ",",
    chunk_rows: int | None = None,
) -> Iterator[tuple[str, pd.DataFrame]]:
    """:func:`read_crm`'s tables as ``(table, frame)`` pairs, table after table, each whole or
    in frames of at most ``chunk_rows`` rows (a table without rows: one empty frame), so that
    an export larger than memory can be copied a chunk at a time. The same checks and errors
    as :func:`read_crm`; a table's chunks concatenated are what :func:`read_crm` reads."""
    progress = progress or _no_progress
    if chunk_rows is not None and chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    if tables is None:  # the contract's names; a field history beside them is read if there
        names = {name: name for name in (*ct.TABLES, *ct.EXTRA_TABLES)}
        extras = tuple(ct.EXTRA_TABLES)
    else:  # a mapping's names: every table it names must be there, but the optional ones
        names, extras = dict(tables), ()
    if _is_url(source):
        return _sql_frames(str(source), progress, names, extras, chunk_rows)
    return _folder_frames(Path(source), encoding, progress, names, separator, extras, chunk_rows)


def read_flat(
    source: str | os.PathLike,
    name: str,
    encoding: str = DEFAULT_ENCODING,
    separator: str = ",",
) -> pd.DataFrame:
    """A flat export (one row per lead): ``source`` is the file itself, or a folder holding
    ``name`` (a file name, with or without its .csv / .csv.gz / .parquet ending). CSV is read as
    text like every table; any problem with the file is a one-line ``ContractError``."""
    _check_encoding(encoding)
    path = Path(source)
    if path.is_dir():
        direct = path / name
        path = direct if os.path.lexists(direct) else _table_file(path, name)
        if path is None:
            raise ContractError(
                f"flat export {name!r} not found in folder {Path(source).absolute()} (expected "
                f"{name}, {name}.csv, {name}.csv.gz or {name}.parquet): fix `from:` in the mapping",
                table="leads",
            )
    elif not os.path.lexists(path):
        raise ContractError(f"flat export {path} does not exist: check the path", table="leads")
    _check_table_file(path, "leads")
    if path.name.endswith((".parquet", ".pq")):
        frame = _read_parquet(path, "leads")
    else:
        frame = _read_csv(path, "leads", encoding, separator)
    log.info("read the flat export: %d rows, %d columns from %s", *frame.shape, path)
    return frame


def table_ids_as_text(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """``frame`` with :func:`ids_as_text` applied to the ID columns of contract table ``table``
    that it holds (for tables renamed to the contract after reading, by a mapping)."""
    return _ids_to_text(frame, table)


# ------------------------------------------------------------------------------------------------
# Writing
# ------------------------------------------------------------------------------------------------
def write_crm(
    tables: dict[str, pd.DataFrame], dest: str | os.PathLike, fmt: str = "parquet"
) -> None:
    """Write CRM tables to a folder (``fmt`` parquet or csv) or to an SQLAlchemy URL.

    Nothing that leadscore did not create is overwritten or deleted (features/outputs.py): in a
    folder, each file is written atomically over a file of ours only; a table's file in the other
    format is removed if we wrote it (readers prefer Parquet: a stale copy would shadow the new
    one), else left with a warning; an extra table (field history) of an earlier write that
    ``tables`` lacks is removed if we wrote it. In a database, tables are replaced in one transaction, only
    those an earlier ``write_crm`` created (listed in :data:`OWNED_TABLES`).
    """
    if _is_url(dest):
        _write_database(tables, str(dest))
        return
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}, not {fmt!r}")
    folder = Path(dest)
    check_crm_folder_writable(folder, tables, fmt)
    other = FORMATS[1 - FORMATS.index(fmt)]
    for name, frame in tables.items():
        path = folder / f"{name}.{fmt}"
        remove_file(folder / f"{name}.{other}")  # ours (checked above): a stale copy would shadow
        if fmt == "parquet":
            write_parquet(path, frame)
        else:
            write_csv(path, frame)
        log.info("wrote %s: %d rows to %s", name, len(frame), path)
    # An extra table of an earlier write that this CRM lacks (a field history) would be read
    # with it: remove it if we wrote it.
    for name in ct.EXTRA_TABLES:
        if name not in tables:
            for ext in FORMATS:
                if remove_file(folder / f"{name}.{ext}"):
                    log.info("removed %s.%s, written earlier: this CRM has no %s", name, ext, name)


def check_crm_folder_writable(folder: str | os.PathLike, tables, fmt: str) -> None:
    """Raise ``OutputError`` before anything is written if writing ``tables`` as ``fmt`` into
    ``folder`` would replace a file leadscore did not write, or leave a table's file in the other
    format that is not ours beside it (readers would mix an export with what we write)."""
    folder = Path(folder)
    other = FORMATS[1 - FORMATS.index(fmt)]
    ours = owned_files(folder)
    check_writable(*(folder / f"{name}.{fmt}" for name in tables))
    foreign = [
        f"{name}.{other}"
        for name in tables
        if os.path.lexists(folder / f"{name}.{other}") and f"{name}.{other}" not in ours
    ]
    if foreign:
        raise OutputError(
            f"{folder} holds {', '.join(foreign)}, not written by leadscore: writing "
            f"{fmt} tables beside them would mix two CRMs; choose another folder"
        )


#: The table in a database that lists the tables leadscore created there (and may replace).
OWNED_TABLES = "leadscore_owned_tables"


def _write_database(tables: dict[str, pd.DataFrame], url: str) -> None:
    engine = _engine(url, must_exist=False)
    try:
        with engine.begin() as conn:
            owned = sa.Table(
                OWNED_TABLES, sa.MetaData(), sa.Column("name", sa.String(), primary_key=True)
            )
            owned.create(conn, checkfirst=True)
            ours = set(conn.execute(sa.select(owned.c.name)).scalars())
            existing = set(sa.inspect(conn).get_table_names())
            foreign = sorted((set(tables) & existing) - ours)
            if foreign:
                raise ContractError(
                    f"table(s) {', '.join(foreign)} already exist in {display_url(url)} and were "
                    "not written by leadscore: refusing to replace them; choose another database",
                    table=foreign[0],
                )
            for name, frame in tables.items():
                frame.to_sql(name, conn, if_exists="replace", index=False, chunksize=SQL_CHUNKSIZE)
                log.info("wrote %s: %d rows to %s", name, len(frame), display_url(url))
            new = sorted(set(tables) - ours)
            if new:
                conn.execute(owned.insert(), [{"name": n} for n in new])
    finally:
        engine.dispose()
