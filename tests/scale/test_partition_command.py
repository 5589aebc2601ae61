"""`leadscore partition`: what it writes, what it refuses, and nothing stale left behind."""

from __future__ import annotations

import copy
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from features.partitioned import SHARED, PartitionWriter, partition_of, read_partition
from features.readers import read_crm, write_crm
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
