"""The documentation names what the code enforces."""

from __future__ import annotations

from pathlib import Path

from features.contract import EVENT_TYPES, TABLES

ROOT = Path(__file__).resolve().parents[2]


def test_data_contract_doc_names_every_column_and_event_type():
    doc = (ROOT / "docs" / "data-contract.md").read_text()
    for table in TABLES.values():
        assert f"`{table.name}`" in doc, table.name
        for column in table.columns:
            assert f"`{column.name}`" in doc, f"{table.name}.{column.name}"
            for value in column.vocabulary or ():
                assert value in doc, f"{table.name}.{column.name} = {value}"
    for event_type in EVENT_TYPES:
        assert f"`{event_type}`" in doc


def test_readme_opens_with_the_two_commands_ci_runs():
    readme = (ROOT / "README.md").read_text()
    quick_start = readme[readme.index("## Quick start") :]
    commands = [
        line.strip() for line in quick_start.splitlines() if line.strip().startswith("make ")
    ]
    assert commands[:2] == ["make demo", "make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()
