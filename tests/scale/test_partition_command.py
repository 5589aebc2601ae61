"""`leadscore partition`: what it writes, what it refuses, and nothing stale left behind."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from features.partitioned import SHARED, PartitionWriter, partition_of, read_partition
from features.readers import iter_crm, read_crm, write_crm
from features.validation import ContractError
from pipelines.cli import app
from pipelines.foreign_export import run_export_foreign
from pipelines.params import load_params
from pipelines.partition import partitions_for, run_partition
from pipelines.steps import crm_contract, read_source

REPO = Path(__file__).resolve().parents[2]


def _partition(tmp_path, source, out, n: int):
    return CliRunner().invoke(
        app, ["-q", "partition", str(source), "--out", str(out), "--partitions", str(n)]
    )


def test_every_lead_row_lands_once_in_its_partition(tmp_path, tiny_tables):
    write_crm(tiny_tables, tmp_path / "crm")
    result = _partition(tmp_path, tmp_path / "crm", tmp_path / "parts", 3)
    assert result.exit_code == 0, result.output
    leads = [read_partition(tmp_path / "parts", i).tables["leads"] for i in range(3)]
    for i, frame in enumerate(leads):
        assert (partition_of(frame["lead_id"], 3) == i).all()
    assert sorted(pd.concat(leads)["lead_id"]) == ["L1", "L2"]
    shared = read_partition(tmp_path / "parts", SHARED).tables["accounts"]
    assert sorted(shared["account_id"]) == ["A1", "A2"]


def test_partitioning_again_into_fewer_partitions_leaves_nothing_stale(tmp_path, tiny_tables):
    write_crm(tiny_tables, tmp_path / "crm")
    assert _partition(tmp_path, tmp_path / "crm", tmp_path / "parts", 8).exit_code == 0
    assert _partition(tmp_path, tmp_path / "crm", tmp_path / "parts", 2).exit_code == 0
    events = pd.read_parquet(tmp_path / "parts" / "events")  # every chunk file there
    assert len(events) == len(tiny_tables["events"])


def test_a_folder_holding_someone_elses_file_is_refused_in_one_line(tmp_path, tiny_tables):
    write_crm(tiny_tables, tmp_path / "crm")
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "notes.txt").write_text("mine")
    result = _partition(tmp_path, tmp_path / "crm", tmp_path / "parts", 2)
    assert result.exit_code == 1
    assert "was not written by leadscore" in result.output
    assert sorted(p.name for p in (tmp_path / "parts").iterdir()) == ["notes.txt"]


def test_the_export_itself_is_never_an_output(tmp_path, tiny_tables):
    write_crm(tiny_tables, tmp_path / "crm")
    result = _partition(tmp_path, tmp_path / "crm", tmp_path / "crm" / "parts", 2)
    assert result.exit_code == 1 and "inside the input" in " ".join(result.output.split())


# ------------------------------------------------------------------------------------------------
# Out of core: an export read and written a chunk of rows at a time
# ------------------------------------------------------------------------------------------------
def _datasets_equal(one, other, partitions: int) -> None:
    """Two partitioned CRMs hold the same rows, in the same order, in every partition."""
    for part in [*range(partitions), SHARED]:
        a, b = read_partition(one, part).tables, read_partition(other, part).tables
        assert a.keys() == b.keys()
        for table in a:
            # A category column is read back with each chunk's spellings as its categories:
            # the values must match, not the order of the categories (validation sorts them).
            pd.testing.assert_frame_equal(
                a[table], b[table], check_exact=True, check_categorical=False, obj=table
            )


def _run_partition(params, source, out, chunk_rows: int | None = None, partitions=None):
    params = copy.deepcopy(params)
    if chunk_rows is not None:
        params.setdefault("partition", {})["read_chunk_rows"] = chunk_rows
    return run_partition(params, source, out, partitions)


@pytest.mark.slow
@pytest.mark.parametrize("form", ["parquet", "csv", "sqlite", "hubspot"])
def test_an_export_read_in_chunks_gives_the_dataset_read_whole(trained_world, tmp_path, form):
    root, params = trained_world
    params = copy.deepcopy(params)
    crm = read_crm(root / "crm")
    source = tmp_path / "export"
    if form == "hubspot":  # a relational mapping, custom fields, CSV
        run_export_foreign(params, root / "crm", source, fmt="csv")
        params["crm"]["mapping"] = str(REPO / "mappings" / "hubspot-example.yaml")
    elif form == "sqlite":
        source = f"sqlite:///{tmp_path / 'crm.db'}"
        write_crm(crm, source)
    else:
        write_crm(crm, source, fmt=form)
    # The reference: the export read whole, as every other command reads it, then partitioned.
    contract = crm_contract(params)
    tables = read_source(params, source, None, contract)
    n = partitions_for(params, len(tables["leads"]), None)
    writer = PartitionWriter(tmp_path / "whole", n, contract)
    writer.write(tables)
    whole = writer.close({})
    # 997 rows a chunk: every table in several chunks, none a multiple of another's length.
    chunked = _run_partition(params, source, tmp_path / "chunked", chunk_rows=997)
    assert chunked["partitions"] == whole["partitions"] >= 1  # the leads counted in a pass
    assert chunked["rows"] == whole["rows"]
    assert chunked["rows"]["events"] > 997 * 3
    assert len(list((tmp_path / "chunked" / "events").rglob("*.parquet"))) > len(
        list((tmp_path / "whole" / "events").rglob("*.parquet"))
    )
    _datasets_equal(tmp_path / "whole", tmp_path / "chunked", whole["partitions"])


@pytest.mark.parametrize("fmt", ["csv", "parquet", "sqlite"])
def test_a_table_without_rows_is_still_written_when_read_in_chunks(tmp_path, tiny_tables, fmt):
    tiny_tables["opportunities"] = tiny_tables["opportunities"].iloc[:0]
    source = f"sqlite:///{tmp_path / 'crm.db'}" if fmt == "sqlite" else tmp_path / "crm"
    write_crm(tiny_tables, source, **({} if fmt == "sqlite" else {"fmt": fmt}))
    params = load_params(REPO / "params.yaml")
    meta = _run_partition(params, source, tmp_path / "parts", chunk_rows=1, partitions=2)
    assert meta["rows"]["opportunities"] == 0 and meta["rows"]["events"] == len(
        tiny_tables["events"]
    )
    opportunities = read_partition(tmp_path / "parts", 0).tables["opportunities"]
    assert opportunities.empty and "lead_id" in opportunities.columns


def test_chunks_whose_categories_need_wider_codes_share_one_schema(tmp_path):
    # pandas codes a chunk of under 128 categories in int8, one of more in int16.
    few = pd.DataFrame({"lead_id": ["L1", "L2"], "status": pd.Categorical(["a", "b"])})
    many = pd.DataFrame(
        {
            "lead_id": [f"L{i}" for i in range(3, 303)],
            "status": pd.Categorical([f"s{i}" for i in range(300)]),
        }
    )
    writer = PartitionWriter(tmp_path / "parts", 1)
    writer.write({"leads": few})
    writer.write({"leads": many})
    writer.close({})
    leads = read_partition(tmp_path / "parts", 0).tables["leads"]
    assert leads["status"].astype(str).tolist() == ["a", "b", *[f"s{i}" for i in range(300)]]


def test_a_parquet_export_of_small_row_groups_is_read_in_chunks_of_the_rows_asked(tmp_path):
    (tmp_path / "crm").mkdir()
    # A category column (read as a dictionary): Arrow's batches then end at each row group.
    events = pd.DataFrame(
        {
            "lead_id": [f"L{i % 7}" for i in range(95)],
            "event_type": ["page_view", "email_open"] * 47 + ["demo_request"],
        }
    )
    pq.write_table(
        pa.Table.from_pandas(events), tmp_path / "crm" / "events.parquet", row_group_size=10
    )
    leads = pd.DataFrame({"lead_id": [f"L{i}" for i in range(7)]})
    pq.write_table(pa.Table.from_pandas(leads), tmp_path / "crm" / "leads.parquet")
    names = {"leads": "leads", "events": "events"}
    chunks = [
        f for t, f in iter_crm(tmp_path / "crm", tables=names, chunk_rows=25) if t == "events"
    ]
    assert [len(f) for f in chunks] == [25, 25, 25, 20]  # not one chunk per row group of 10
    # Each chunk is a category of its own spellings: the values are the whole read's.
    as_text = {"event_type": "str"}
    pd.testing.assert_frame_equal(
        pd.concat(chunks, ignore_index=True).astype(as_text),
        read_crm(tmp_path / "crm", tables=names)["events"].astype(as_text),
    )


def test_an_export_that_fails_half_way_leaves_no_half_copied_crm(tmp_path, tiny_tables):
    write_crm(tiny_tables, tmp_path / "crm", fmt="csv")
    events = tmp_path / "crm" / "events.csv"
    events.write_bytes(events.read_bytes() + b"L1,page_view,2024-02-01 \xff\xfe\n")  # not UTF-8
    params = load_params(REPO / "params.yaml")
    with pytest.raises(ContractError, match="events.csv"):
        _run_partition(params, tmp_path / "crm", tmp_path / "parts", chunk_rows=1, partitions=2)
    assert not list((tmp_path / "parts").rglob("*.parquet"))  # leads were written, then removed
    assert not (tmp_path / "parts" / "crm_meta.json").exists()


def test_a_missing_source_is_refused_before_the_earlier_dataset_is_touched(tmp_path, tiny_tables):
    write_crm(tiny_tables, tmp_path / "crm")
    params = load_params(REPO / "params.yaml")
    _run_partition(params, tmp_path / "crm", tmp_path / "parts", partitions=2)
    before = sorted((p.name, p.stat().st_size) for p in (tmp_path / "parts").rglob("*"))
    with pytest.raises(ContractError, match="does not exist"):
        _run_partition(params, tmp_path / "gone", tmp_path / "parts", partitions=2)
    assert sorted((p.name, p.stat().st_size) for p in (tmp_path / "parts").rglob("*")) == before


@pytest.fixture
def own_database(postgres_url):
    """A database of this test's own on the suite's PostgreSQL server, dropped after it: the
    CRM tables written here must not meet other tests in the shared one."""
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql("DROP DATABASE IF EXISTS partition_chunks")
        conn.exec_driver_sql("CREATE DATABASE partition_chunks")
    yield (
        sa.make_url(postgres_url)
        .set(database="partition_chunks")
        .render_as_string(hide_password=False)
    )
    with admin.connect() as conn:
        conn.exec_driver_sql("DROP DATABASE IF EXISTS partition_chunks WITH (FORCE)")
    admin.dispose()


@pytest.mark.slow
def test_a_postgresql_export_is_read_in_chunks(trained_world, own_database):
    root, params = trained_world
    crm = read_crm(root / "crm")
    write_crm(crm, own_database)
    chunks = list(iter_crm(own_database, chunk_rows=997))
    assert max(len(f) for t, f in chunks if t == "events") == 997
    whole = read_crm(own_database)
    assert whole.keys() == crm.keys()
    for table, frame in whole.items():
        read = pd.concat([f for t, f in chunks if t == table], ignore_index=True)
        pd.testing.assert_frame_equal(read, frame, check_exact=True)
