"""Read and write the four raw CRM tables: a folder of parquet / CSV files, or a SQL database.

Readers do no validation: CSV is read as text (every column a string, empty -> missing) so that
:func:`features.validation.validate_crm` sees exactly what the export holds; parquet and SQL keep
their stored types. Extra columns are kept (validation drops them).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import sqlalchemy as sa

from features import contract as ct
from features.contract import Kind
from features.validation import ContractError

log = logging.getLogger(__name__)

#: Rows per INSERT batch when writing to a database.
SQL_CHUNKSIZE = 50_000
FORMATS = ("parquet", "csv")


def _is_url(source: str | os.PathLike) -> bool:
    return "://" in str(source)


def _display(source: str | os.PathLike) -> str:
    """The source as text, with any database password hidden."""
    if _is_url(source):
        try:
            return sa.make_url(str(source)).render_as_string(hide_password=True)
        except sa.exc.ArgumentError:
            return "<unparseable database URL>"
    return str(source)


def _missing_table(table: str, source: str | os.PathLike, found: list[str]) -> ContractError:
    where = "database" if _is_url(source) else "folder"
    expect = "a table" if _is_url(source) else f"{table}.parquet or {table}.csv"
    return ContractError(
        f"CRM table '{table}' not found in {where} {_display(source)} (expected {expect}); "
        f"found: {', '.join(sorted(found)) or '(nothing)'}. Export all of "
        f"{', '.join(ct.TABLES)} there, with the contract names.",
        table=table,
    )


def _read_csv(path: Path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    return frame.mask(frame == "")  # empty string -> missing, nothing else is interpreted


def _read_parquet(path: Path, table: str) -> pd.DataFrame:
    names = set(pq.read_schema(path).names)
    # Category columns as dictionaries: a few distinct spellings, not one string per row.
    dictionary = [
        c.name for c in ct.TABLES[table].columns if c.kind == Kind.CATEGORY and c.name in names
    ]
    return pd.read_parquet(path, read_dictionary=dictionary or None)


def _read_folder(folder: Path) -> dict[str, pd.DataFrame]:
    if not folder.is_dir():
        raise FileNotFoundError(f"CRM folder {folder} does not exist")
    found = [p.name for p in folder.iterdir() if p.suffix in (".parquet", ".csv")]
    tables = {}
    for name in ct.TABLES:
        parquet, csv = folder / f"{name}.parquet", folder / f"{name}.csv"
        if parquet.exists():
            tables[name] = _read_parquet(parquet, name)
            path = parquet
        elif csv.exists():
            tables[name] = _read_csv(csv)
            path = csv
        else:
            raise _missing_table(name, folder, found)
        log.info("read %s: %d rows, %d columns from %s", name, *tables[name].shape, path)
    return tables


def _read_sql(url: str) -> dict[str, pd.DataFrame]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            found = sa.inspect(conn).get_table_names()
            tables = {}
            for name in ct.TABLES:
                if name not in found:
                    raise _missing_table(name, url, found)
                tables[name] = pd.read_sql_table(name, conn)
                log.info(
                    "read %s: %d rows, %d columns from %s", name, *tables[name].shape, _display(url)
                )
    finally:
        engine.dispose()
    return tables


def read_crm(source: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """Read the raw CRM tables, keyed by table name, from a folder or an SQLAlchemy URL.

    A folder holds ``{table}.parquet`` or ``{table}.csv`` per table (parquet preferred; CSV read
    as text with empty -> missing). A URL (anything containing ``://``) names a database with
    one table per name. A missing table raises ``ContractError``.
    """
    if _is_url(source):
        return _read_sql(str(source))
    return _read_folder(Path(source))


def write_crm(
    tables: dict[str, pd.DataFrame], dest: str | os.PathLike, fmt: str = "parquet"
) -> None:
    """Write CRM tables to a folder (``fmt`` parquet or csv) or to an SQLAlchemy URL.

    A folder is created if needed, and a table's file in the other format is removed (readers
    prefer Parquet: a stale copy would shadow the new one); database tables are replaced, in
    one transaction.
    """
    if _is_url(dest):
        engine = sa.create_engine(str(dest))
        try:
            with engine.begin() as conn:
                for name, frame in tables.items():
                    frame.to_sql(
                        name, conn, if_exists="replace", index=False, chunksize=SQL_CHUNKSIZE
                    )
                    log.info("wrote %s: %d rows to %s", name, len(frame), _display(dest))
        finally:
            engine.dispose()
        return
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}, not {fmt!r}")
    folder = Path(dest)
    folder.mkdir(parents=True, exist_ok=True)
    other = FORMATS[1 - FORMATS.index(fmt)]
    for name, frame in tables.items():
        path = folder / f"{name}.{fmt}"
        stale = folder / f"{name}.{other}"
        if stale.exists():
            log.info("%s: removing %s, written by an earlier run in the other format", name, stale)
            stale.unlink()
        if fmt == "parquet":
            frame.to_parquet(path, index=False)
        else:
            frame.to_csv(path, index=False)
        log.info("wrote %s: %d rows to %s", name, len(frame), path)
