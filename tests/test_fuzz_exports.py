"""A bad export cannot hurt the nightly job: `leadscore validate` and `leadscore score` on broken
variants of a small valid CRM export (tests/export_mutations.py holds the catalogue).

Every case: exit 0 (usable, bad rows quarantined) or 1 (one line ``error:`` naming the table,
column or file); never a traceback; on a stop nothing written; rows in = kept + quarantined;
the input export byte-for-byte unchanged; no secret anywhere.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from export_mutations import (
    CASES,
    COLUMNS,
    SCORE_CASES,
    VALIDATE_CASES,
    Case,
    Export,
    Outcome,
    Suite,
    mutate_cells,
)
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.slow

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture(scope="session")
def suite(tmp_path_factory, small_params_template) -> Suite:
    """The valid export (300 leads), generated and validated once per session."""
    return Suite.create(tmp_path_factory.mktemp("fuzz_export"), small_params_template)


@pytest.fixture(scope="session")
def scoring_suite(suite, trained_world) -> Suite:
    """The same export, scored with the session's trained model."""
    root, params = trained_world
    return suite.with_model(root / "model", params)


def clean(outcome: Outcome) -> None:
    """Fail with every problem of the outcome."""
    assert not outcome.problems, outcome.describe()


def skip_if_meaningless(case: Case) -> None:
    """Permissions do not stop root: the unreadable-file case proves nothing then."""
    if case.needs_non_root and IS_ROOT:
        pytest.skip("running as root: chmod 000 does not stop root from reading the file")


def test_the_catalogue_has_at_least_40_kinds_of_breakage():
    """Enough distinct cases, each named once, with both verdicts for both commands."""
    assert len({c.name for c in CASES}) == len(CASES)
    assert len(VALIDATE_CASES) >= 40 and len(SCORE_CASES) >= 10
    assert {c.expect for c in VALIDATE_CASES} == {0, 1} == {c.score for c in SCORE_CASES}


@pytest.mark.parametrize("case", VALIDATE_CASES, ids=str)
def test_validate_survives_a_broken_export(case, suite, tmp_path):
    """validate: the right verdict, said in one line, rows accounted, nothing harmed."""
    skip_if_meaningless(case)
    clean(suite.run_validate(case, tmp_path))


@pytest.mark.parametrize("case", SCORE_CASES, ids=str)
def test_score_survives_a_broken_export(case, scoring_suite, tmp_path):
    """score: stops before writing anything, or scores what is usable and counts the rest."""
    skip_if_meaningless(case)
    clean(scoring_suite.run_score(case, tmp_path))


TEXT = st.text(st.characters(min_codepoint=0, max_codepoint=0x7FF), max_size=12)
SPECIAL = st.sampled_from(
    [
        "", " ", "nan", "NULL", "None", "-1", "0", "1e308", "inf", "-inf", "1970-01-01",
        "1900-01-01T00:00:00Z", "2999-12-31", "31/12/2024", "2024-02-30", "true", "yes",
        "garbage", "'; DROP TABLE leads; --", "\x00", "L00000001", "A0000001", "page_view",
    ]
)  # fmt: skip
NUMBERS = st.one_of(st.integers(-(2**70), 2**70).map(str), st.floats().map(repr))
#: A value for one cell: text with control characters, numbers, empty, huge.
CELL_VALUES = st.one_of(TEXT, SPECIAL, st.none(), NUMBERS, st.just("x" * 100_000))
#: A value for a whole column (nothing huge: the events table has 18,000 rows).
COLUMN_VALUES = st.one_of(TEXT, SPECIAL, st.none(), NUMBERS)


def edits_of(table: str, rows, values):
    """(table, column, row, value) edits of ``table``."""
    return st.tuples(st.just(table), st.sampled_from(COLUMNS[table]), rows, values)


TABLE = st.sampled_from(sorted(COLUMNS))
CELL = TABLE.flatmap(lambda t: edits_of(t, st.integers(0, 100_000), CELL_VALUES))
WHOLE_COLUMN = TABLE.flatmap(lambda t: edits_of(t, st.none(), COLUMN_VALUES))
EDIT = st.one_of(CELL, CELL, CELL, WHOLE_COLUMN)


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
    # No shrinking: each example is a CLI run (~0.5 s); derandomized, a failure replays as is.
    phases=[Phase.explicit, Phase.generate],
)
@given(edits=st.lists(EDIT, min_size=1, max_size=4), fmt=st.sampled_from(["csv", "parquet"]))
def test_validate_survives_random_cells(suite, edits, fmt):
    """Random cells of random columns replaced (control characters, numbers, empty, huge):
    validate exits 0 or 1, a stop is one line naming a table, every row is accounted for and
    the input is unchanged."""

    def mutate(x: Export) -> None:
        mutate_cells(x, edits, fmt)

    case = Case("random_cells", mutate, expect=None, names=())
    with tempfile.TemporaryDirectory() as work:
        outcome = suite.run_validate(case, Path(work))
    clean(outcome)
    if outcome.exit_code == 1:
        assert any(t in outcome.line for t in COLUMNS), f"the error names no table: {outcome.line}"
