"""`leadscore partition`: what it writes, what it refuses, and nothing stale left behind."""

from __future__ import annotations

import pandas as pd
from typer.testing import CliRunner

from features.partitioned import SHARED, partition_of, read_partition
from features.readers import write_crm
from pipelines.cli import app


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
