"""Validation under a mapping: formats, time zones, value maps, expected close dates."""

from __future__ import annotations

import pandas as pd
import pytest

from features.mapping.apply import apply_mapping
from features.mapping.contract import effective_contract
from features.mapping.file import MappingError, parse_mapping
from features.validation import validate_crm

EXTRACTED = pd.Timestamp("2024-12-31")


def _validate(leads_columns: dict, leads: dict, opportunities: dict | None = None, **extra):
    mapping = parse_mapping(
        {
            "leads": {"columns": {"lead_id": "id", **leads_columns}},
            "opportunities": {
                "columns": {
                    "lead_id": "contact",
                    "closed_at": "closedate",
                    "is_won": {
                        "from": "dealstage",
                        "values": {"closedwon": True, "closedlost": False},
                        "unmapped": "missing",
                    },
                },
                **extra,
            },
        }
    )
    raw = {
        "leads": pd.DataFrame(leads),
        "opportunities": pd.DataFrame(
            opportunities or {"contact": [], "closedate": [], "dealstage": []}, dtype=object
        ),
    }
    contract = effective_contract(mapping)
    # Tiny tables: one bad value is a third of a column, not a broken export.
    return validate_crm(
        apply_mapping(raw, mapping).tables,
        EXTRACTED,
        contract=contract,
        max_unparseable_fraction=0.5,
    )


IDS = ["a", "b", "c"]


def test_a_strftime_format_and_a_time_zone():
    result = _validate(
        {
            "created_at": {
                "from": "created",
                "format": "%d/%m/%Y %H:%M",
                "time_zone": "Europe/Paris",
            }
        },
        {"id": IDS, "created": ["01/02/2024 10:00", "01/07/2024 10:00", "31/03/2024 02:30"]},
    )
    leads = result.tables["leads"]
    # Paris is UTC+1 in winter, UTC+2 in summer; 02:30 on 31 March 2024 never happened there.
    assert leads["created_at"].tolist() == [
        pd.Timestamp("2024-02-01 09:00"),
        pd.Timestamp("2024-07-01 08:00"),
    ]
    assert result.reasons.set_index("reason")["rows"]["unparseable created_at"] == 1


@pytest.mark.parametrize(
    "values",
    [
        pd.Series([1704067200000, 1704067261000, 1704153600000], dtype="int64"),
        pd.Series(["1704067200000", "1704067261000", "1704153600000"], dtype="str"),
    ],
)
def test_epoch_milliseconds_as_numbers_or_text(values):
    result = _validate(
        {"created_at": {"from": "created", "format": "epoch_ms"}}, {"id": IDS, "created": values}
    )
    assert result.tables["leads"]["created_at"].tolist() == [
        pd.Timestamp("2024-01-01 00:00:00"),
        pd.Timestamp("2024-01-01 00:01:01"),
        pd.Timestamp("2024-01-02 00:00:00"),
    ]


def test_value_maps_with_unmapped_missing_are_counted_and_expected_close_dates_ignored():
    opportunities = {
        "contact": ["a", "b", "c"],
        "closedate": ["2024-03-01", "2024-03-02", "2025-01-01"],  # c: open, expected close
        "dealstage": ["ClosedWon", "closedlost", "appointmentscheduled"],
    }
    result = _validate(
        {"created_at": "created"},
        {"id": IDS, "created": ["2024-01-01"] * 3},
        opportunities,
        expected_close_date=True,
    )
    opps = result.tables["opportunities"]
    assert opps["is_won"].astype(object).where(opps["is_won"].notna(), None).tolist() == [
        True,
        False,
        None,
    ]
    assert opps["closed_at"].isna().tolist() == [False, False, True]
    assert result.unknown_categories.to_dict("records") == [
        {"table": "opportunities", "column": "is_won", "value": "appointmentscheduled", "rows": 1}
    ]
    notes = result.notes.set_index("note")["rows"]
    assert notes["expected close date of an open opportunity ignored"] == 1


def test_without_expected_close_date_an_open_deal_with_a_date_is_quarantined():
    opportunities = {
        "contact": ["a", "b"],
        "closedate": ["2024-03-01", "2024-04-01"],
        "dealstage": ["closedwon", "open"],
    }
    result = _validate(
        {"created_at": "created"}, {"id": IDS, "created": ["2024-01-01"] * 3}, opportunities
    )
    assert result.reasons.set_index("reason")["rows"]["closed_at set but is_won missing"] == 1


def test_a_value_map_that_matches_nothing_is_one_line():
    with pytest.raises(MappingError, match="no key of its value map matches") as err:
        _validate(
            {"created_at": "created", "source": {"from": "src", "values": {"ORGANIC": "x"}}},
            {"id": IDS, "created": ["2024-01-01"] * 3, "src": ["seo", "ppc", "seo"]},
        )
    assert "leads.source" in str(err.value) and "\n" not in str(err.value)
