"""Benchmark: writing 1M scores back to SQL, against a bare ``COPY`` of the same frame.

Targets: the PostgreSQL write-back path (``SqlSink``: per batch, COPY into a staging table, upsert
the current scores, append the history, one transaction) within 2x a bare COPY of the same
frame into an empty table with no index, measured in the same run, and updating 1M existing
scores within 1.5x of it (issue 18); SQLite (the embedded default) no worse than 3x the
PostgreSQL path.

Measured, best of ``--repeat``, in this process, on one frame of ``--rows`` scores shaped like a
real run (``SCORE_COLUMNS``: ids, scores, stages, reasons of ~100 characters):

- ``reference: bare COPY``: ``frame.to_csv`` + psycopg ``COPY ... FROM STDIN (FORMAT csv)`` into
  an empty table with the current-score columns and no primary key: the least any loader does;
- ``reference: bare COPY of Arrow CSV``: the same with the CSV text Arrow writes
  (``pipelines.writeback.sql.csv_bytes``, as the sink does): the least a loader does that
  writes its CSV as fast as ours;
- ``ours: PostgreSQL, empty tables`` (first night) and ``ours: PostgreSQL, 1M existing rows``
  (every later night: each lead's current row is updated, its history appended);
- ``ours: SQLite, empty tables`` and ``ours: SQLite, existing rows``, on a file in the same
  temporary folder.

PostgreSQL is a throwaway server started for the run (``tests/postgres_server.py``, as the
tests do; fsync off, so both PostgreSQL paths are measured without disk flushes alike).

    .venv/bin/python benchmarks/bench_writeback.py               # 1,000,000 rows
    .venv/bin/python benchmarks/bench_writeback.py --rows 100000 # quick
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from _process import REPO, MiB, cores, maxrss_bytes

sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

import sqlalchemy as sa  # noqa: E402
from postgres_server import throwaway_postgres  # noqa: E402

from pipelines.writeback.base import SCORE_COLUMNS  # noqa: E402
from pipelines.writeback.sql import SqlSink, csv_bytes  # noqa: E402


def score_frame(rows: int, run_id: str, seed: int = 0) -> pd.DataFrame:
    """``rows`` scores shaped like a real run's output."""
    rng = np.random.default_rng(seed)
    p = rng.beta(0.6, 12, rows)
    stage = np.select([p > 0.06, p > 0.03], ["SQL", "MQL"], "nurture")
    words = np.array([
        "Requested a demo 2 times in the last 7 days", "Viewed the pricing page 3 times in the last 7 days",
        "Seniority: director", "Industry: software", "Last activity 12 days ago", "Purchase timeline: no timeline",
        "Budget: 10k 50k", "Signed up with a free email address", "Came in through webinar",
    ], dtype=object)  # fmt: skip
    pick = rng.integers(0, len(words), (rows, 6))
    joined = [words[pick[:, i]] for i in range(6)]
    frame = pd.DataFrame(
        {
            "lead_id": pd.Series(
                np.char.add("L", np.char.zfill(np.arange(rows).astype(str), 8)), dtype=str
            ),
            "score": np.rint(100 * p).astype(int),
            "probability": p,
            "stage": stage,
            "stage_reason": "score 0.041 >= MQL cutoff 0.025",
            "bant_score": rng.integers(0, 5, rows),
            "gate_budget": rng.choice(["pass", "fail", "unknown"], rows),
            "gate_authority": rng.choice(["pass", "fail", "unknown"], rows),
            "gate_need": rng.choice(["pass", "fail", "unknown"], rows),
            "gate_timeline": rng.choice(["pass", "fail", "unknown"], rows),
            "reasons_for": joined[0] + "; " + joined[1] + "; " + joined[2],
            "reasons_against": joined[3] + "; " + joined[4] + "; " + joined[5],
            # The value model's and follow-up's fields (pipelines/follow_up.py, models/value.py).
            "expected_amount": rng.gamma(2.0, 12_000, rows).round(2),
            "expected_value": None,
            "amount_reasons": joined[2] + "; " + joined[0],
            "stage_since": pd.Timestamp("2025-12-20"),
            "last_sales_touch_at": pd.Timestamp("2025-12-28"),
            "follow_up_due": rng.random(rows) < 0.1,
            "model_name": "lead-conversion",
            "model_version": "1",
            "scored_at": pd.Timestamp("2026-01-01"),
            "run_id": run_id,
        }
    )
    frame["expected_value"] = (frame["probability"] * frame["expected_amount"]).round(2)
    for column in ("scored_at", "stage_since", "last_sales_touch_at"):
        frame[column] = frame[column].astype("datetime64[us]")
    return frame[SCORE_COLUMNS]


def bare_copy(url: str, frame: pd.DataFrame, arrow: bool = False) -> float:
    """to_csv (``arrow``: the CSV Arrow writes, as the sink does) + COPY into an empty,
    index-free table; seconds."""
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS bare_copy")
            conn.exec_driver_sql(
                "CREATE TABLE bare_copy (lead_id varchar(64), score integer, probability double precision, "
                "stage varchar(16), stage_reason text, bant_score integer, gate_budget varchar(16), "
                "gate_authority varchar(16), gate_need varchar(16), gate_timeline varchar(16), reasons_for text, "
                "reasons_against text, expected_amount double precision, expected_value double precision, "
                "amount_reasons text, stage_since timestamp, last_sales_touch_at timestamp, "
                "follow_up_due boolean, model_name varchar(128), model_version varchar(32), "
                "scored_at timestamp, run_id varchar(64))"
            )
        start = time.perf_counter()
        with engine.begin() as conn:
            text = (
                csv_bytes(frame).decode()
                if arrow
                else frame.to_csv(index=False, header=False, date_format="%Y-%m-%d %H:%M:%S.%f")
            )
            raw = conn.connection.driver_connection
            with (
                raw.cursor() as cur,
                cur.copy(
                    f"COPY bare_copy ({', '.join(frame.columns)}) FROM STDIN WITH (FORMAT csv)"
                ) as copy,
            ):
                buffer = io.StringIO(text)
                while chunk := buffer.read(1 << 22):
                    copy.write(chunk)
        return time.perf_counter() - start
    finally:
        engine.dispose()


def drop_tables(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for table in ("lead_scores", "lead_score_history"):
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {table}")
    engine.dispose()


def sink_write(url: str, frame: pd.DataFrame, batch_size: int) -> float:
    """Every batch through SqlSink.write_batch (tables created beforehand, not timed); seconds."""
    sink = SqlSink(url, batch_size=batch_size)
    try:
        sink.prepare()
        start = time.perf_counter()
        for begin in range(0, len(frame), batch_size):
            sink.write_batch(frame.iloc[begin : begin + batch_size])
        return time.perf_counter() - start
    finally:
        sink.close()


def count(url: str, table: str) -> int:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        n = conn.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one()
    engine.dispose()
    return int(n)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--batch-size",
        type=int,
        default=100_000,
        help="SqlSink batch (params.yaml score.batch_size.sql)",
    )
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()

    print(
        f"write-back benchmark: {args.rows:,} scores, batches of {args.batch_size:,}, {cores()} cores"
    )
    first, second = score_frame(args.rows, "run-1"), score_frame(args.rows, "run-2", seed=1)
    second["scored_at"] = second["scored_at"] + pd.Timedelta(days=1)
    print(f"frame: {first.memory_usage(deep=True).sum() / MiB:,.0f} MiB in memory")
    times: dict[str, float] = {}
    failures = []
    with (
        tempfile.TemporaryDirectory(prefix="leadscore-bench-") as tmp,
        throwaway_postgres(Path(tmp) / "pg") as pg,
    ):
        sqlite_url = f"sqlite:///{Path(tmp) / 'crm.db'}"
        for _ in range(args.repeat):
            times["reference: bare COPY"] = min(
                times.get("reference: bare COPY", np.inf), bare_copy(pg, first)
            )
            times["reference: bare COPY of Arrow CSV"] = min(
                times.get("reference: bare COPY of Arrow CSV", np.inf),
                bare_copy(pg, first, arrow=True),
            )
            for name, url in (("PostgreSQL", pg), ("SQLite", sqlite_url)):
                drop_tables(url)
                empty = sink_write(url, first, args.batch_size)
                existing = sink_write(url, second, args.batch_size)
                times[f"ours: {name}, empty tables"] = min(
                    times.get(f"ours: {name}, empty tables", np.inf), empty
                )
                times[f"ours: {name}, existing rows"] = min(
                    times.get(f"ours: {name}, existing rows", np.inf), existing
                )
                if (
                    count(url, "lead_scores") != args.rows
                    or count(url, "lead_score_history") != 2 * args.rows
                ):
                    failures.append(f"{name}: row counts wrong")
    ref = times["reference: bare COPY"]
    print(f"\n{'measurement':<36}{'seconds':>9}{'rows/s':>12}{'vs bare COPY':>14}")
    for name, seconds in times.items():
        if name.startswith("peak"):
            continue
        print(f"{name:<36}{seconds:>9.2f}{args.rows / seconds:>12,.0f}{seconds / ref:>13.2f}x")
    pg_path = times["ours: PostgreSQL, empty tables"]
    arrow_ref = times["reference: bare COPY of Arrow CSV"]
    existing = times["ours: PostgreSQL, existing rows"]
    print(
        f"\nPostgreSQL path / bare COPY: {pg_path / ref:.2f}x (target <= 2x); "
        f"existing rows: {existing / ref:.2f}x (target <= 1.5x); against a bare COPY of the "
        f"CSV Arrow writes: {pg_path / arrow_ref:.2f}x empty, {existing / arrow_ref:.2f}x existing"
    )
    print(
        f"SQLite / PostgreSQL path: {times['ours: SQLite, empty tables'] / pg_path:.2f}x empty tables, "
        f"{times['ours: SQLite, existing rows'] / times['ours: PostgreSQL, existing rows']:.2f}x existing rows (target <= 3x)"
    )
    start = time.perf_counter()
    first.to_csv(index=False, header=False, date_format="%Y-%m-%d %H:%M:%S.%f")
    print(
        f"of which frame.to_csv alone (in both PostgreSQL paths): {time.perf_counter() - start:.2f} s"
    )
    print(f"peak resident memory of this process: {maxrss_bytes() / MiB:,.0f} MiB")
    for failure in failures:
        print("FAILED:", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
