"""`leadscore inspect`: the profile of an export and the draft mapping it writes.

A tiny HubSpot-like relational export built here from literal frames, and the bank-marketing
flat export from ../shared. The draft must be a valid mapping file, find the keys, the outcome
and the leaks, keep personal values out of every output, and never overwrite a user's file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from features.mapping.contract import effective_contract
from features.mapping.draft import leadscore_name, yaml_flow_list, yaml_scalar
from features.mapping.file import FlatMapping, RelationalMapping, load_mapping, parse_mapping
from features.mapping.profile import (
    ISO_8601,
    column_auc,
    detect_date_format,
    leak_hints,
    profile_column,
)
from features.outputs import OutputError
from features.validation import ContractError
from pipelines.inspect_export import (
    MAPPING_FILE,
    REPORT_FILE,
    SUMMARY_FILE,
    read_export,
    run_inspect,
    sniff_separator,
)

ROOT = Path(__file__).resolve().parents[2]
BANK = ROOT.parent / "shared" / "data" / "bank-marketing" / "bank-additional-full.csv.gz"

N_CONTACTS = 40
#: Contacts (by position) with a won deal, a lost deal, an open deal; the rest have none.
WON = [i for i in range(N_CONTACTS) if i % 10 in (0, 3, 7)]
LOST = [i for i in range(N_CONTACTS) if i % 10 in (1, 5)] + [0]  # contact 0 lost one, then won
OPEN = [i for i in range(N_CONTACTS) if i % 10 == 8]
FIRST = ["Ana", "Ben", "Chloe", "Dev", "Emma", "Farid", "Gita", "Hugo"]
LAST = ["Silva", "Okafor", "Martin", "Patel", "Nowak"]


def _contacts() -> pd.DataFrame:
    ids = range(N_CONTACTS)
    return pd.DataFrame(
        {
            "hs_object_id": [str(1001 + i) for i in ids],
            "firstname": [FIRST[i % len(FIRST)] for i in ids],
            "lastname": [LAST[i % len(LAST)] for i in ids],
            "email": [f"{FIRST[i % 8].lower()}.{i}@example.com" for i in ids],
            "phone": [f"+1 555 01{i:02d}" for i in ids],
            "createdate": [
                (pd.Timestamp("2024-03-01 10:00:00") + pd.Timedelta(days=i)).strftime(
                    "%Y-%m-%d %H:%M:%S"
                )
                for i in ids
            ],
            "lifecyclestage": [
                "customer" if i in WON else ["lead", "marketingqualifiedlead", "subscriber"][i % 3]
                for i in ids
            ],
            "hs_analytics_source": [
                ["ORGANIC_SEARCH", "PAID_SOCIAL", "REFERRALS", "DIRECT_TRAFFIC"][i % 4] for i in ids
            ],
            "associatedcompanyid": [str(2001 + i % 10) for i in ids],
            "country": [["United States", "Germany", "France"][i % 3] for i in ids],
            "hs_email_optout": [["false", "true"][i % 2] for i in ids],
            # Day and month both 12 or less: either reading works, so it is ambiguous.
            "Signup Form Date": [f"{1 + i % 12:02d}/{1 + i % 3:02d}/2024" for i in ids],
            # Days up to 28: only day-first reads them all.
            "last_contacted": [f"{1 + i % 28:02d}/04/2024" for i in ids],
            # Recorded when the deal is won: the leak the profile must flag.
            "customer_since": ["2024-06-01" if i in WON else None for i in ids],
            # Personal by its values alone (the name says nothing).
            "assistant": [f"assistant.{i}@corp-example.org" for i in ids],
            "notes": [
                f"Met at the spring conference, interested in module {i} and pricing for {i * 7} seats"
                for i in ids
            ],
        }
    )


def _companies() -> pd.DataFrame:
    ids = range(10)
    return pd.DataFrame(
        {
            "hs_object_id": [str(2001 + i) for i in ids],
            "name": [f"Company {i}" for i in ids],
            "industry": [["COMPUTER_SOFTWARE", "BANKING", "RETAIL"][i % 3] for i in ids],
            "numberofemployees": [str(10 * (i + 1)) for i in ids],
            "annualrevenue": [str(1_000_000.5 * (i + 1)) for i in ids],
            "domain": [f"company{i}.example" for i in ids],
        }
    )


def _deals() -> pd.DataFrame:
    rows = []
    for stage, contacts in (
        ("closedwon", WON),
        ("closedlost", LOST),
        ("appointmentscheduled", OPEN),
    ):
        for i in contacts:
            rows.append(
                {
                    "associatedcontactid": str(1001 + i),
                    "dealname": f"Deal {i}",
                    "dealstage": stage,
                    "createdate": "2024-04-01 09:00:00",
                    "closedate": None if stage == "appointmentscheduled" else "2024-05-01 09:00:00",
                    "amount": str(1000 + 10 * i),
                    "pipeline": "default",
                }
            )
    deals = pd.DataFrame(rows)
    return deals.assign(hs_object_id=[str(3001 + k) for k in range(len(deals))])


def _engagements() -> pd.DataFrame:
    n = 90
    return pd.DataFrame(
        {
            "hs_object_id": [str(4001 + k) for k in range(n)],
            "associatedcontactid": [str(1001 + k % N_CONTACTS) for k in range(n)],
            "type": [["EMAIL", "CALL", "MEETING"][k % 3] for k in range(n)],
            "hs_timestamp": [f"2024-03-{1 + k % 28:02d}T09:{k % 60:02d}:00Z" for k in range(n)],
        }
    )


@pytest.fixture
def hubspot_export(tmp_path) -> Path:
    """contacts / companies / deals / engagements CSVs, as a HubSpot user exports them."""
    folder = tmp_path / "export"
    folder.mkdir()
    _contacts().to_csv(folder / "contacts.csv", index=False)
    _companies().to_csv(folder / "companies.csv", index=False)
    _deals().to_csv(folder / "deals.csv", index=False)
    _engagements().to_csv(folder / "engagements.csv.gz", index=False)
    return folder


@pytest.fixture
def inspected(hubspot_export, tmp_path):
    summary = run_inspect(hubspot_export, tmp_path / "inspect")
    return summary, tmp_path / "inspect"


# ------------------------------------------------------------------------------------------------
# The relational export
# ------------------------------------------------------------------------------------------------
def test_the_relational_draft_is_a_valid_mapping_with_the_keys_filled(inspected):
    summary, out = inspected
    mapping = load_mapping(out / MAPPING_FILE)
    assert isinstance(mapping, RelationalMapping)
    effective_contract(mapping)  # what it means for the contract holds together too
    assert mapping.leads.from_ == "contacts"
    assert mapping.accounts.from_ == "companies"
    assert mapping.events.from_ == "engagements"
    assert mapping.opportunities.from_ == "deals"
    leads = {k: mapping.leads.column_map(k).from_ for k in mapping.leads.columns}
    assert leads == {
        "lead_id": "hs_object_id",
        "created_at": "createdate",
        "account_id": "associatedcompanyid",
        "source": "hs_analytics_source",
        "email": "email",
        "first_name": "firstname",
        "last_name": "lastname",
        "phone": "phone",
        "country": "country",
        "unsubscribed": "hs_email_optout",
    }
    # A CRM's current country is not known at creation: not a feature until the user says so.
    assert mapping.leads.column_map("country").knowledge == "at_extraction"
    deals = mapping.opportunities
    assert deals.column_map("opportunity_id").from_ == "hs_object_id"
    assert deals.column_map("lead_id").from_ == "associatedcontactid"
    assert deals.column_map("closed_at").from_ == "closedate"
    is_won = deals.column_map("is_won")
    assert (is_won.from_, is_won.values, is_won.unmapped) == (
        "dealstage",
        {"closedwon": True, "closedlost": False},
        "missing",
    )
    events = mapping.events
    assert events.column_map("lead_id").from_ == "associatedcontactid"
    assert events.column_map("timestamp").from_ == "hs_timestamp"
    assert events.column_map("event_type").values == {
        "EMAIL": "email",
        "CALL": "call",
        "MEETING": "meeting",
    }
    assert set(events.types) == {"email", "call", "meeting"}
    assert events.types["call"].actor == "company" and events.types["email"].actor == "lead"
    accounts = mapping.accounts
    assert accounts.column_map("account_id").from_ == "hs_object_id"
    assert accounts.column_map("employee_count").from_ == "numberofemployees"
    assert accounts.column_map("annual_revenue").from_ == "annualrevenue"
    # Everything else is a custom field, not a feature until declared.
    custom = mapping.leads.custom
    assert custom["notes"].kind == "text"
    assert custom["hs_analytics_source"].kind if "hs_analytics_source" in custom else True
    assert custom["signup_form_date"].from_ == "Signup Form Date"
    assert {
        f.knowledge for k, f in custom.items() if k not in ("customer_since", "lifecyclestage")
    } == {"at_extraction"}
    assert summary["layout"] == "relational"
    assert summary["tables"]["engagements"]["rows"] == 90


def test_ids_created_times_outcome_and_join_keys_are_found(inspected):
    summary, _ = inspected
    assert summary["id_columns"]["contacts"] == ["hs_object_id"]
    assert summary["id_columns"]["deals"] == ["hs_object_id"]
    assert summary["created_columns"]["contacts"] == ["createdate"]
    assert summary["outcome"]["table"] == "deals" and summary["outcome"]["column"] == "dealstage"
    assert summary["outcome"]["won"] == ["closedwon"] and summary["outcome"]["lost"] == [
        "closedlost"
    ]
    assert summary["outcome"]["converted"] == len(WON)
    assert "contacts.lifecyclestage" in summary["outcome_columns"]
    assert set(summary["join_keys"]) == {
        "contacts.associatedcompanyid -> companies.hs_object_id (100%)",
        "deals.associatedcontactid -> contacts.hs_object_id (100%)",
        "engagements.associatedcontactid -> contacts.hs_object_id (100%)",
    }
    assert summary["roles"] == {
        "leads": "contacts",
        "accounts": "companies",
        "events": "engagements",
        "opportunities": "deals",
    }


def test_fields_filled_after_the_outcome_are_flagged_and_declared_after_outcome(inspected):
    summary, out = inspected
    flagged = {(h["table"], h["column"]) for h in summary["leak_hints"]}
    assert flagged == {("contacts", "customer_since"), ("contacts", "lifecyclestage")}
    reason = next(h["reason"] for h in summary["leak_hints"] if h["column"] == "customer_since")
    assert reason.startswith("filled for 100% of converted rows and 0% of the others")
    custom = load_mapping(out / MAPPING_FILE).leads.custom
    assert custom["customer_since"].knowledge == "after_outcome"
    assert custom["lifecyclestage"].knowledge == "after_outcome"
    text = (out / MAPPING_FILE).read_text()
    assert "LEAK? filled for 100% of converted rows and 0% of the others" in text


def test_personal_columns_are_detected_and_their_values_never_written(inspected):
    summary, out = inspected
    assert set(summary["personal_columns"]) >= {
        "contacts.firstname",
        "contacts.lastname",
        "contacts.email",
        "contacts.phone",
        "contacts.assistant",  # by its values: e-mail addresses
    }
    assert "contacts.hs_email_optout" not in summary["personal_columns"]
    assert load_mapping(out / MAPPING_FILE).leads.custom["assistant"].kind == "personal"
    for name in (MAPPING_FILE, REPORT_FILE, SUMMARY_FILE):
        text = (out / name).read_text()
        assert "@example.com" not in text and "assistant.0@" not in text, name
        assert "Okafor" not in text and "+1 555" not in text, name


def test_an_ambiguous_date_format_is_reported_not_guessed(inspected):
    summary, out = inspected
    assert summary["ambiguous_dates"] == ["contacts.Signup Form Date"]
    report = json.loads((out / REPORT_FILE).read_text())
    columns = {c["name"]: c for c in report["tables"]["contacts"]["columns"]}
    assert columns["Signup Form Date"]["date_format"] is None
    assert columns["Signup Form Date"]["date_candidates"] == ["%d/%m/%Y", "%m/%d/%Y"]
    assert columns["last_contacted"]["date_format"] == "%d/%m/%Y"
    assert columns["createdate"]["date_format"] == ISO_8601
    assert "ambiguous date format: %d/%m/%Y or %m/%d/%Y" in (out / MAPPING_FILE).read_text()


def test_an_ambiguous_created_date_leaves_the_format_to_the_user(tmp_path):
    frame = pd.DataFrame(
        {
            "Id": [f"L{i}" for i in range(30)],
            "CreatedDate": [f"{1 + i % 12:02d}/{1 + i % 12:02d}/2024" for i in range(30)],
            "Converted": ["Yes" if i % 3 == 0 else "No" for i in range(30)],
        }
    )
    frame.to_csv(tmp_path / "leads.csv", index=False)
    run_inspect(tmp_path / "leads.csv", tmp_path / "out")
    text = (tmp_path / "out" / MAPPING_FILE).read_text()
    mapping = load_mapping(tmp_path / "out" / MAPPING_FILE)
    created = mapping.leads.column_map("created_at")
    assert created.from_ == "CreatedDate" and created.format is None  # not guessed
    assert "# format: '%d/%m/%Y'" in text and "# format: '%m/%d/%Y'" in text
    assert mapping.pseudo_time is None  # there is a created date: no pseudo-time
    assert mapping.outcome.from_ == "Converted" and mapping.outcome.won == ("Yes",)


# ------------------------------------------------------------------------------------------------
# The flat bank-marketing export
# ------------------------------------------------------------------------------------------------
@pytest.mark.skipif(not BANK.exists(), reason="../shared/data/bank-marketing is not here")
def test_bank_marketing_flags_duration_and_drafts_a_flat_mapping(tmp_path):
    started = time.perf_counter()
    summary = run_inspect(BANK, tmp_path / "inspect")
    elapsed = time.perf_counter() - started
    assert elapsed < 20, f"inspect took {elapsed:.1f} s"
    assert summary["separators"] == {"bank-additional-full": ";"}
    assert summary["rows"] == 41_188
    assert summary["outcome"]["column"] == "y" and summary["outcome"]["won"] == ["yes"]
    assert summary["outcome"]["converted"] == 4_640
    hints = {h["column"]: h for h in summary["leak_hints"]}
    assert set(hints) == {"duration"}
    assert hints["duration"]["auc"] == pytest.approx(0.818, abs=0.005)
    mapping = load_mapping(tmp_path / "inspect" / MAPPING_FILE)
    assert isinstance(mapping, FlatMapping)
    assert mapping.from_ == "bank-additional-full.csv.gz"
    assert mapping.csv.separator == ";"
    assert (mapping.outcome.from_, mapping.outcome.won, mapping.outcome.lost) == (
        "y",
        ("yes",),
        ("no",),
    )
    assert mapping.pseudo_time is not None  # no date column: row order as time
    custom = mapping.leads.custom
    assert custom["duration"].knowledge == "after_outcome"
    assert "y" not in custom  # the outcome is not a field
    assert (
        custom["emp_var_rate"].from_ == "emp.var.rate" and custom["emp_var_rate"].kind == "number"
    )
    assert custom["job"].kind == "category" and custom["age"].kind == "number"
    assert {k for k, f in custom.items() if f.knowledge != "at_extraction"} == {"duration"}
    assert "row order is used as time" in (tmp_path / "inspect" / MAPPING_FILE).read_text()


# ------------------------------------------------------------------------------------------------
# Outputs: never overwrite what the user wrote
# ------------------------------------------------------------------------------------------------
def test_a_file_at_the_output_path_not_written_by_leadscore_is_refused(hubspot_export, tmp_path):
    out = tmp_path / "inspect"
    out.mkdir()
    (out / MAPPING_FILE).write_text("layout: relational  # mine\n")
    with pytest.raises(OutputError, match="not written by leadscore"):
        run_inspect(hubspot_export, out)
    assert (out / MAPPING_FILE).read_text() == "layout: relational  # mine\n"
    assert sorted(p.name for p in out.iterdir()) == [MAPPING_FILE]  # nothing else written


def test_a_draft_edited_since_is_never_overwritten_and_an_untouched_one_is(inspected):
    _, out = inspected
    draft = out / MAPPING_FILE
    run_inspect(draft.parent.parent / "export", out)  # untouched: replaced
    draft.write_text(draft.read_text() + "# my edit\n")
    with pytest.raises(OutputError, match="edited after leadscore wrote it"):
        run_inspect(draft.parent.parent / "export", out)
    assert draft.read_text().endswith("# my edit\n")


def test_an_output_inside_the_export_is_refused(hubspot_export):
    with pytest.raises(OutputError, match="lies inside the input EXPORT"):
        run_inspect(hubspot_export, hubspot_export / "inspect")
    assert not (hubspot_export / "inspect").exists()


# ------------------------------------------------------------------------------------------------
# Reading the export
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("separator", [",", ";", "\t", "|"])
def test_the_separator_is_detected(tmp_path, separator):
    path = tmp_path / "leads.csv"
    frame = pd.DataFrame({"id": ["1", "2"], "note": ["a, b; c", "d"], "n": ["3", "4"]})
    frame.to_csv(path, sep=separator, index=False)
    assert sniff_separator(path) == separator
    read = read_export(path)
    pd.testing.assert_frame_equal(read.frames["leads"], frame.astype("str"), check_dtype=False)


def test_a_given_separator_wins_and_empty_values_are_missing(tmp_path):
    path = tmp_path / "leads.csv"
    path.write_text("a;b\n1;\n2;x\n")
    read = read_export(path, separator="semicolon")
    assert read.separators == {"leads": ";"}
    assert read.frames["leads"]["b"].isna().tolist() == [True, False]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"a,b\n1,2,3\n", "is not a readable CSV file"),
        (b"a,a\n1,2\n", "duplicate column header"),
        (b"", "is empty"),
        (b"a,b\n\xff\xfe,2\n", "is not UTF-8"),
    ],
)
def test_a_broken_file_is_one_line(tmp_path, content, message):
    (tmp_path / "leads.csv").write_bytes(content)
    with pytest.raises(ContractError, match=message) as err:
        read_export(tmp_path)
    assert "\n" not in str(err.value)


def test_a_missing_export_or_an_empty_folder_is_one_line(tmp_path):
    with pytest.raises(ContractError, match="does not exist"):
        run_inspect(tmp_path / "nowhere", tmp_path / "out")
    with pytest.raises(ContractError, match="holds no CSV or Parquet file"):
        run_inspect(tmp_path, tmp_path.parent / f"{tmp_path.name}-out")


def test_parquet_keeps_its_types_and_wins_over_a_csv_of_the_same_table(tmp_path):
    frame = pd.DataFrame({"lead_id": [1, 2, 3], "amount": [1.5, 2.5, None]})
    frame.to_parquet(tmp_path / "leads.parquet", index=False)
    (tmp_path / "leads.csv").write_text("other\n1\n")
    read = read_export(tmp_path)
    assert list(read.frames["leads"].columns) == ["lead_id", "amount"]
    assert read.separators == {}


# ------------------------------------------------------------------------------------------------
# The library's pieces
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "fmt", "candidates"),
    [
        (["2024-03-01", "2024-12-31T10:00:00Z", "2024-03-01 10:00:00"], ISO_8601, (ISO_8601,)),
        (["13/03/2024", "01/02/2024"], "%d/%m/%Y", ("%d/%m/%Y",)),
        (["03/13/2024", "01/02/2024"], "%m/%d/%Y", ("%m/%d/%Y",)),
        (["03/04/2024", "01/02/2024"], None, ("%d/%m/%Y", "%m/%d/%Y")),
        (["1.3.2024 10:00"], "%d.%m.%Y %H:%M", ("%d.%m.%Y %H:%M",)),
        (["12", "13"], None, ()),
        (["hello"], None, ()),
    ],
)
def test_date_formats_are_detected_and_day_month_ambiguity_is_reported(values, fmt, candidates):
    found = detect_date_format(pd.Series(values))
    assert (found.format, found.candidates) == (fmt, candidates)
    assert found.ambiguous == (fmt is None and len(candidates) > 1)


def test_column_types_and_ranges():
    def profile(values):
        return profile_column(pd.Series(values, name="x", dtype="str"))

    assert profile(["1", "2", None]).type == "integer"
    assert (profile(["1", "2.5"]).minimum, profile(["1", "2.5"]).maximum) == (1, 2.5)
    assert profile(["yes", "no", "Yes"]).type == "boolean"
    assert profile(["0012", "0013"]).type == "text"  # a code, not a number
    assert profile([None, None]).type == "empty"
    dates = profile(["2024-01-02", "2024-03-04"])
    assert (dates.type, dates.minimum, dates.maximum) == (
        "date",
        "2024-01-02T00:00:00",
        "2024-03-04T00:00:00",
    )
    typed = profile_column(pd.Series([0.5, 2.0, None], name="y"))
    assert (typed.type, typed.missing, typed.distinct) == ("number", 1, 2)


def test_leak_hints_by_fill_rate_and_by_auc_with_thresholds_as_arguments():
    converted = pd.Series([1] * 20 + [0] * 80)
    frame = pd.DataFrame(
        {
            "won_reason": ["price"] * 19 + [None] + [None] * 78 + ["x", "y"],
            "honest": [str(i % 7) for i in range(100)],
            "score": [str(100 + i) for i in range(20)] + [str(i) for i in range(80)],
        }
    )
    hints = {h.column: h for h in leak_hints(frame, converted)}
    assert set(hints) == {"won_reason", "score"}
    assert hints["won_reason"].reason.startswith("filled for 95% of converted rows and 2%")
    assert hints["score"].auc == 1.0
    assert {h.column for h in leak_hints(frame, converted, auc_threshold=1.0)} == {"won_reason"}
    assert column_auc(pd.Series(range(100)), converted) == 1.0  # either direction


@given(st.text())
def test_every_scalar_written_reads_back_the_same_on_one_line(text):
    written = yaml_scalar(text)
    assert "\n" not in written
    assert yaml.safe_load(f"key: {written}") == {"key": text}
    assert yaml.safe_load(f"{written}: 1") == {text: 1}  # as a key too (value maps)


@given(st.lists(st.text(), max_size=4))
def test_every_value_list_written_reads_back_the_same_on_one_line(values):
    written = yaml_flow_list(values)
    assert "\n" not in written
    assert yaml.safe_load(f"won: {written}") == {"won": values}


@given(st.text(min_size=1))
def test_every_custom_key_is_a_valid_leadscore_name(text):
    key = leadscore_name(text, taken={"a"})
    parse_mapping({"leads": {"custom": {key: {"from": text, "kind": "text"}}}})


def test_a_flat_export_with_day_first_dates_gets_their_format_and_the_outcome_date(tmp_path):
    n = 30
    frame = pd.DataFrame(
        {
            "Lead Number": [str(5000 + i) for i in range(n)],
            "Created Date": [f"{1 + i % 28:02d}/03/2024 10:{i:02d}" for i in range(n)],
            "Status": [["Won", "Lost", "Open"][i % 3] for i in range(n)],
            "Close Date": [None if i % 3 == 2 else f"{1 + i % 28:02d}/05/2024" for i in range(n)],
            "Lead Source": [["Web", "Event"][i % 2] for i in range(n)],
        }
    )
    frame.to_csv(tmp_path / "export.csv", index=False)
    summary = run_inspect(tmp_path / "export.csv", tmp_path / "out")
    mapping = load_mapping(tmp_path / "out" / MAPPING_FILE)
    assert summary["id_columns"] == {"export": ["Lead Number"]}
    assert mapping.leads.column_map("lead_id").from_ == "Lead Number"
    created = mapping.leads.column_map("created_at")
    assert (created.from_, created.format) == ("Created Date", "%d/%m/%Y %H:%M")
    assert mapping.leads.column_map("source").from_ == "Lead Source"
    assert (mapping.outcome.from_, mapping.outcome.won, mapping.outcome.lost) == (
        "Status",
        ("Won",),
        ("Lost",),
    )
    closed = mapping.outcome.closed_at
    assert (closed.from_, closed.format) == ("Close Date", "%d/%m/%Y")
    assert mapping.pseudo_time is None and mapping.leads.custom == {}


def test_an_outcome_given_by_name_and_won_value_is_used(tmp_path):
    frame = pd.DataFrame({"result_flag": ["S", "F"] * 20, "visits": [str(i) for i in range(40)]})
    frame.to_csv(tmp_path / "leads.csv", index=False)
    summary = run_inspect(
        tmp_path / "leads.csv", tmp_path / "out", outcome="result_flag", won=["S"]
    )
    assert summary["outcome"]["column"] == "result_flag" and summary["outcome"]["won"] == ["S"]
    assert load_mapping(tmp_path / "out" / MAPPING_FILE).outcome.won == ("S",)
    with pytest.raises(ValueError, match="'nope' is in no table of the export"):
        run_inspect(tmp_path / "leads.csv", tmp_path / "out2", outcome="nope")
    with pytest.raises(ValueError, match="no value looks like a win"):
        run_inspect(tmp_path / "leads.csv", tmp_path / "out3", outcome="result_flag")


def test_a_field_history_table_is_recognised_and_drafted(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    _contacts().to_csv(folder / "contacts.csv", index=False)
    pd.DataFrame(
        {
            "objectType": ["CONTACT"] * 4,
            "objectId": ["1001", "1001", "1002", "1003"],
            "property": ["lifecyclestage", "jobtitle", "lifecyclestage", "country"],
            "value": ["lead", "CTO", "customer", "Germany"],
            "timestamp": ["2024-03-02T10:00:00Z"] * 4,
        }
    ).to_csv(folder / "contact_property_history.csv", index=False)
    summary = run_inspect(folder, tmp_path / "out")
    assert summary["roles"]["field_history"] == "contact_property_history"
    history = load_mapping(tmp_path / "out" / MAPPING_FILE).field_history
    assert {k: history.column_map(k).from_ for k in history.columns} == {
        "entity": "objectType",
        "entity_id": "objectId",
        "field": "property",
        "value": "value",
        "changed_at": "timestamp",
    }
    assert history.entities == {"CONTACT": "leads"}
    # Each field the history changes, by its name in the draft (jobtitle is not in contacts).
    assert history.fields == {"lifecyclestage": "lifecyclestage", "country": "country"}


def test_a_parquet_export_with_integer_ids_finds_the_same_keys(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    contacts = _contacts().astype({"hs_object_id": "int64", "associatedcompanyid": "float64"})
    contacts.to_parquet(folder / "contacts.parquet", index=False)
    _companies().astype({"hs_object_id": "int64"}).to_parquet(folder / "companies.parquet")
    _deals().astype({"associatedcontactid": "int64"}).to_parquet(folder / "deals.parquet")
    summary = run_inspect(folder, tmp_path / "out")
    assert set(summary["join_keys"]) == {
        "contacts.associatedcompanyid -> companies.hs_object_id (100%)",
        "deals.associatedcontactid -> contacts.hs_object_id (100%)",
    }
    assert summary["outcome"]["converted"] == len(WON)
    assert {h["column"] for h in summary["leak_hints"]} == {"customer_since", "lifecyclestage"}
    load_mapping(tmp_path / "out" / MAPPING_FILE)
