"""The curated table with unique columns that are not required, several unique columns and rows without a timestamp
(hand-written expectations).

The shipped contracts have one required unique column and a required timestamp; these contracts have neither, as
users write them. Each test merges hand-built batches with ``spark_app.curate.curate`` and checks the rows of the
table read back, the counts of ``CurateResult`` and the partition folders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from dropzone.contract import Contract, parse_contract_text
from spark_app.curate import _rank_per_key
from spark_app.io import JobInputError
from spark_app.job import parse_args, run
from tests.spark.conftest import curate_rows

pytestmark = pytest.mark.spark

UNDATED = "event_date=__HIVE_DEFAULT_PARTITION__"  # Spark's folder for a null event_date

# One unique column that may be empty, a timestamp that may be empty.
EVENTS = """
dataset: clicks
entity: user_id
timestamp: ts
columns:
  event_id: {type: string, unique: true}
  user_id:  {type: string, required: true}
  ts:       {type: timestamp}
  n:        {type: int}
"""

# Two unique columns, each checked on its own by the validator.
SESSIONS = """
dataset: clicks
entity: user_id
timestamp: ts
columns:
  session_id: {type: string, required: true, unique: true}
  ext_id:     {type: string, required: true, unique: true}
  user_id:    {type: string, required: true}
  ts:         {type: timestamp}
  n:          {type: int}
"""

D1, D2, D3 = "2026-10-01T10:00:00", "2026-10-02T10:00:00", "2026-10-03T10:00:00"


def _table(spark: SparkSession, root: Path, contract: Contract) -> list[tuple[Any, ...]]:
    """The table's rows as (the contract's columns but the timestamp, event_date ISO or None, _batch_id)."""
    names = [c.name for c in contract.columns if c.name != contract.timestamp]
    rows = spark.read.parquet(str(root / contract.dataset)).collect()
    table = [(*(r[n] for n in names), r.event_date.isoformat() if r.event_date else None, r._batch_id) for r in rows]
    return sorted(table, key=repr)


def _dates(root: Path, contract: Contract) -> list[str]:
    return sorted(p.name for p in (root / contract.dataset).iterdir() if p.is_dir())


@pytest.fixture(scope="module")
def events() -> Contract:
    return parse_contract_text(EVENTS, "events")


@pytest.fixture(scope="module")
def sessions() -> Contract:
    return parse_contract_text(SESSIONS, "sessions")


def test_rows_with_an_empty_key_are_never_duplicates(spark: SparkSession, events: Contract, tmp_path: Path) -> None:
    # 7 rows, 3 of them without an event_id (two of those identical): the validator counts no repeat, so every
    # row is kept, as in a dataset without unique columns.
    batch = [
        ("E1", "U1", D1, 1),
        ("E2", "U1", D1, 2),
        ("E3", "U2", D1, 3),
        ("E4", "U2", D2, 4),
        (None, "U1", D1, 5),
        (None, "U3", D1, 6),
        (None, "U3", D1, 6),
    ]
    first = curate_rows(spark, events, tmp_path, "b1", batch)

    assert (first.rows_in, first.duplicate_rows, first.rows_written, first.replaced_rows) == (7, 0, 7, 0)
    expected = sorted(
        [
            ("E1", "U1", 1, "2026-10-01", "b1"),
            ("E2", "U1", 2, "2026-10-01", "b1"),
            ("E3", "U2", 3, "2026-10-01", "b1"),
            ("E4", "U2", 4, "2026-10-02", "b1"),
            (None, "U1", 5, "2026-10-01", "b1"),
            (None, "U3", 6, "2026-10-01", "b1"),
            (None, "U3", 6, "2026-10-01", "b1"),
        ],
        key=repr,
    )
    assert _table(spark, tmp_path, events) == expected

    # A later batch on the same date: its empty keys replace none of the existing ones; E1 is replaced.
    second = [("E1", "U1", D1, 10), (None, "U1", D1, 5), (None, "U4", D1, 7)]
    result = curate_rows(spark, events, tmp_path, "b2", second)

    assert (result.rows_in, result.duplicate_rows, result.rows_written, result.replaced_rows) == (3, 0, 3, 1)
    after = sorted(
        [
            *(r for r in expected if r[0] != "E1"),
            ("E1", "U1", 10, "2026-10-01", "b2"),
            (None, "U1", 5, "2026-10-01", "b2"),
            (None, "U4", 7, "2026-10-01", "b2"),
        ],
        key=repr,
    )
    assert _table(spark, tmp_path, events) == after

    # Re-running the batch drops the rows its first attempt wrote, empty keys included.
    curate_rows(spark, events, tmp_path, "b2", second)

    assert _table(spark, tmp_path, events) == after


def test_rows_with_an_empty_key_are_spread_over_the_window_tasks(spark: SparkSession) -> None:
    # 400 rows without a key and 4 with one: ranked per key, the empty keys must not all land in one task (a table
    # with many would make one task sort them all). AQE off so that the 8 shuffle partitions stay as planned.
    rows = [(None, i, 0, 0) for i in range(400)] + [(f"E{i}", i, 0, 0) for i in range(4)]
    df = spark.createDataFrame(rows, "event_id string, n int, _priority int, _file_index long")
    conf = {"spark.sql.adaptive.enabled": "false", "spark.sql.shuffle.partitions": "8"}
    before = {k: spark.conf.get(k) for k in conf}
    try:
        for k, v in conf.items():
            spark.conf.set(k, v)
        # the task of each row kept (the filter on the rank keeps the window in the plan)
        kept = _rank_per_key(df, "event_id").filter(F.col("_rn") == 1).withColumn("task", F.spark_partition_id())
        tasks = kept.filter(F.col("event_id").isNull()).groupBy("task").count().collect()
        assert kept.count() == 404
    finally:
        for k, v in before.items():
            spark.conf.set(k, v)
    assert len(tasks) == 8
    assert max(t["count"] for t in tasks) < 100


def test_each_unique_column_holds_a_value_once(spark: SparkSession, sessions: Contract, tmp_path: Path) -> None:
    curate_rows(spark, sessions, tmp_path, "b1", [("S1", "E1", "U1", D1, 1)])

    result = curate_rows(spark, sessions, tmp_path, "b2", [("S1", "E2", "U1", D1, 2)])

    assert (result.rows_in, result.duplicate_rows, result.rows_written, result.replaced_rows) == (1, 0, 1, 1)
    assert _table(spark, tmp_path, sessions) == [("S1", "E2", "U1", 2, "2026-10-01", "b2")]


def test_several_unique_columns_in_the_batch_and_the_merge(
    spark: SparkSession, sessions: Contract, tmp_path: Path
) -> None:
    # In the batch, key by key: S1 twice, the later file wins, (S1, E2); E2 is then in it twice, the later file
    # wins again: one row of three.
    first = curate_rows(
        spark,
        sessions,
        tmp_path,
        "b1",
        [("S1", "E1", "U1", D1, 1), ("S1", "E2", "U1", D1, 2), ("S2", "E2", "U2", D1, 3), ("S3", "E3", "U3", D2, 4)],
        files=[0, 1, 0, 0],
    )

    assert (first.rows_in, first.duplicate_rows, first.rows_written) == (4, 2, 2)
    assert _table(spark, tmp_path, sessions) == [
        ("S1", "E2", "U1", 2, "2026-10-01", "b1"),
        ("S3", "E3", "U3", 4, "2026-10-02", "b1"),
    ]

    # (S1, E2) again matches the existing row on both columns: one replaced row, not two. (S4, E3) replaces
    # (S3, E3) through ext_id alone, so 2026-10-02 is left without rows and deleted.
    result = curate_rows(spark, sessions, tmp_path, "b2", [("S1", "E2", "U1", D3, 5), ("S4", "E3", "U4", D3, 6)])

    assert (result.rows_in, result.duplicate_rows, result.rows_written, result.replaced_rows) == (2, 0, 2, 2)
    assert result.partitions == ["2026-10-03"]
    assert _table(spark, tmp_path, sessions) == [
        ("S1", "E2", "U1", 5, "2026-10-03", "b2"),
        ("S4", "E3", "U4", 6, "2026-10-03", "b2"),
    ]
    assert _dates(tmp_path, sessions) == ["event_date=2026-10-03"]


def test_rows_without_a_timestamp_are_kept_across_batches(
    spark: SparkSession, events: Contract, tmp_path: Path
) -> None:
    first = curate_rows(spark, events, tmp_path, "b1", [("S1", "U1", None, 1), ("S2", "U2", D1, 2)])
    assert first.partitions == ["2026-10-01"]

    batch = [("S3", "U3", None, 3), ("S4", "U4", D2, 4)]
    second = curate_rows(spark, events, tmp_path, "b2", batch)

    assert (second.rows_written, second.replaced_rows, second.partitions) == (2, 0, ["2026-10-02"])
    both = [
        ("S1", "U1", 1, None, "b1"),
        ("S2", "U2", 2, "2026-10-01", "b1"),
        ("S3", "U3", 3, None, "b2"),
        ("S4", "U4", 4, "2026-10-02", "b2"),
    ]
    assert _table(spark, tmp_path, events) == sorted(both, key=repr)

    # Re-running the batch leaves the table as one run did.
    curate_rows(spark, events, tmp_path, "b2", batch)
    assert _table(spark, tmp_path, events) == sorted(both, key=repr)

    # S1 and S3 re-delivered with a date: the undated partition is left without rows and deleted.
    third = curate_rows(spark, events, tmp_path, "b3", [("S1", "U1", D3, 5), ("S3", "U3", D3, 6)])

    assert (third.rows_written, third.replaced_rows, third.partitions) == (2, 2, ["2026-10-03"])
    assert _table(spark, tmp_path, events) == [
        ("S1", "U1", 5, "2026-10-03", "b3"),
        ("S2", "U2", 2, "2026-10-01", "b1"),
        ("S3", "U3", 6, "2026-10-03", "b3"),
        ("S4", "U4", 4, "2026-10-02", "b2"),
    ]
    assert _dates(tmp_path, events) == ["event_date=2026-10-01", "event_date=2026-10-02", "event_date=2026-10-03"]
    assert UNDATED not in _dates(tmp_path, events)


def test_a_dated_row_re_delivered_without_a_timestamp(spark: SparkSession, events: Contract, tmp_path: Path) -> None:
    # The reverse move: S1's date is emptied and deleted, S2's undated row stays beside S1's.
    curate_rows(spark, events, tmp_path, "b1", [("S1", "U1", D1, 1), ("S2", "U2", None, 2)])

    result = curate_rows(spark, events, tmp_path, "b2", [("S1", "U1", None, 3)])

    assert (result.rows_written, result.replaced_rows, result.partitions) == (1, 1, [])
    assert _table(spark, tmp_path, events) == [("S1", "U1", 3, None, "b2"), ("S2", "U2", 2, None, "b1")]
    assert _dates(tmp_path, events) == [UNDATED]

    # A table of undated rows only (Spark reads its event_date as the null type) takes more of them.
    last = curate_rows(spark, events, tmp_path, "b3", [("S3", "U3", None, 4), ("S2", "U2", None, 5)])

    assert (last.rows_written, last.replaced_rows, last.partitions) == (2, 1, [])
    assert _table(spark, tmp_path, events) == [
        ("S1", "U1", 3, None, "b2"),
        ("S2", "U2", 5, None, "b3"),
        ("S3", "U3", 4, None, "b3"),
    ]


LABELLED = (
    EVENTS
    + """
features:
  windows: [30]
  aggregations:
    - {column: n, functions: [sum]}
label: {kind: active_in_horizon, name: active_next_30d, horizon_days: 30}
training: {algorithm: xgboost}
"""
)


def test_the_feature_job_on_events_without_a_timestamp_says_so(spark: SparkSession, tmp_path: Path) -> None:
    contracts = tmp_path / "contracts"
    contracts.mkdir()
    (contracts / "clicks.yaml").write_text(LABELLED)
    batch = tmp_path / "in" / "clicks.csv"
    batch.parent.mkdir()
    batch.write_text("event_id,user_id,ts,n\nE1,U1,,1\nE2,U2,,2\n")
    (tmp_path / "m.json").write_text(json.dumps([str(batch)]))
    argv = ["--manifest", str(tmp_path / "m.json"), "--contracts", str(contracts), "--dataset", "clicks"]
    argv += ["--curated", str(tmp_path / "curated"), "--features", str(tmp_path / "features"), "--run-id", "r1"]
    with pytest.raises(JobInputError) as raised:
        run(spark, parse_args(argv))
    assert str(raised.value) == (
        f"{tmp_path / 'curated' / 'clicks'}: the curated table holds no event with a timestamp (ts is empty in every "
        "row): the cutoffs and windows need dated events"
    )
    assert _dates(tmp_path / "curated", parse_contract_text(EVENTS, "events")) == [UNDATED]
