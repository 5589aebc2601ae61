"""Outputs never destroy inputs: overlap refused, only our own files replaced, atomic writes;
and secrets masked in every URL shown or stored."""

from __future__ import annotations

import json
import os

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from features.outputs import (
    MARKER,
    OutputError,
    local_path,
    owned_files,
    refuse_overlap,
    remove_file,
    write_file,
    write_json,
)
from features.urls import display_url, mask_secrets, redact_settings


@pytest.mark.parametrize(
    ("output", "how"),
    [("crm", "is"), ("crm/rejects", "lies inside"), (".", "contains")],
)
def test_an_output_on_over_or_into_an_input_is_refused(tmp_path, output, how):
    (tmp_path / "crm").mkdir()
    with pytest.raises(OutputError, match=f"--rejects .* {how} the input source"):
        refuse_overlap({"source": tmp_path / "crm"}, {"--rejects": tmp_path / output})


def test_two_outputs_in_one_place_are_refused_and_separate_places_pass(tmp_path):
    with pytest.raises(OutputError, match="--out .* and --rejects .* overlap"):
        refuse_overlap(
            {"source": tmp_path / "crm"}, {"--out": tmp_path / "v", "--rejects": tmp_path / "v"}
        )
    refuse_overlap(
        {"source": tmp_path / "crm"}, {"--out": tmp_path / "v", "--rejects": tmp_path / "r"}
    )


def test_overlap_sees_through_sqlite_urls_symlinks_and_relative_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "crm").mkdir()
    os.symlink(tmp_path / "crm", tmp_path / "alias")
    with pytest.raises(OutputError):
        refuse_overlap({"source": "crm"}, {"--out": tmp_path / "alias" / "v"})
    with pytest.raises(OutputError):
        refuse_overlap({"source": f"sqlite:///{tmp_path / 'crm.db'}"}, {"--out": "crm.db"})
    assert local_path("postgresql+psycopg://u:p@h/db") is None  # a server: not a file of ours
    refuse_overlap({"source": "postgresql://h/db"}, {"--out": "v"})


def test_a_file_leadscore_did_not_write_is_never_replaced_nor_removed(tmp_path):
    theirs = tmp_path / "leads.parquet"
    theirs.write_bytes(b"the user's export")
    with pytest.raises(OutputError, match="not written by leadscore"):
        write_json(theirs, {"a": 1})
    assert not remove_file(theirs)
    assert theirs.read_bytes() == b"the user's export"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["leads.parquet"]  # no temporary left


def test_our_own_file_is_replaced_and_removed_and_the_marker_follows(tmp_path):
    path = write_json(tmp_path / "out" / "report.json", {"a": 1})
    write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert owned_files(path.parent) == {"report.json"}
    assert remove_file(path) and not path.exists()
    assert owned_files(path.parent) == set()


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_json(tmp_path / "report.json", {"a": 1})

    def half_then_fail(tmp):
        tmp.write_text("{half")
        raise OSError("No space left on device")

    with pytest.raises(OSError, match="No space"):
        write_file(path, half_then_fail)
    assert json.loads(path.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([MARKER, "report.json"])


def test_a_folder_in_the_place_of_a_file_is_refused(tmp_path):
    (tmp_path / "metrics.json").mkdir()
    with pytest.raises(OutputError, match="is a folder"):
        write_json(tmp_path / "metrics.json", {})


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://scorer:S3CRET@db.example:5432/crm",
        "postgresql://scorer:S3CRET@db.example/crm?sslmode=require",
        "postgresql+psycopg://scorer:Zx9/S3CRET+7@db.example/crm",  # base64 passwords hold "/"
        "mysql+pymysql://root:S3CRET@localhost/crm",
        "https://api.example/upload?access_token=S3CRET&x=1",
        "error connecting to postgresql://a:S3CRET@h/db: refused",
    ],
)
def test_secrets_are_masked_in_urls_and_text(url):
    assert "S3CRET" not in display_url(url) and "***" in display_url(url)


def test_urls_without_secrets_are_unchanged_and_settings_are_masked_deep():
    for url in (
        "sqlite:///data/crm.db",
        "postgresql+psycopg://scorer@db/crm",
        "hubspot://api.hubapi.com",
        "data/crm",
    ):
        assert display_url(url) == url
    settings = {
        "crm": {"source": "postgresql://u:S3CRET@h/db"},
        "score": {"to": ["x", "postgresql://u:S3CRET@h/db"], "n": 3},
    }
    assert "S3CRET" not in json.dumps(redact_settings(settings))
    assert redact_settings(settings)["score"]["n"] == 3


@given(
    user=st.text(
        alphabet=st.characters(whitelist_categories=("Ll", "Lu", "Nd")), min_size=1, max_size=8
    ),
    secret=st.text(
        alphabet=st.characters(blacklist_characters="@ \t\n\r", blacklist_categories=("Cs",)),
        min_size=4,
        max_size=20,
    ),
    host=st.sampled_from(["db.example", "127.0.0.1", "h:5432"]),
)
def test_no_password_survives_masking(user, secret, host):
    url = f"postgresql+psycopg://{user}:{secret}@{host}/crm"
    shown = mask_secrets(f"could not connect to {url}")
    assert f":{secret}@" not in shown and f"{user}:***@{host}" in shown


def test_frames_written_through_outputs_round_trip(tmp_path):
    from features.outputs import write_csv, write_parquet

    frame = pd.DataFrame({"lead_id": ["0012", "L2"], "x": [1.5, None]})
    pd.testing.assert_frame_equal(
        pd.read_parquet(write_parquet(tmp_path / "a.parquet", frame)), frame
    )
    back = pd.read_csv(write_csv(tmp_path / "a.csv", frame), dtype={"lead_id": str})
    assert back["lead_id"].tolist() == ["0012", "L2"]


def test_a_file_url_in_any_case_is_a_path():
    assert (
        local_path("FILE:///data/crm") == local_path("file:///data/crm") == local_path("/data/crm")
    )
