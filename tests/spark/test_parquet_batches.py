"""A batch of Parquet files whose columns have different physical types (or are missing) from file to file: the
validator checks each file on its own and accepts them, so the Spark job must read each one with its own types."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from dropzone.contract import Contract, parse_contract
from dropzone.validation import validate_path
from spark_app.io import FILE_INDEX, Batch, BatchFile, read_batch
from spark_app.rules import BAD, compile_rules

pytestmark = pytest.mark.spark

UPLOADED = datetime(2026, 3, 1, tzinfo=UTC)


def _contract() -> Contract:
    columns = {
        "id": {"type": "string", "required": True},
        "amount": {"type": "double"},
        "day": {"type": "date"},
        "note": {"type": "string"},  # optional
        "at": {"type": "timestamp"},
    }
    return parse_contract({"dataset": "t", "entity": "id", "formats": ["parquet"], "columns": columns}, "t.yaml")


# The type of each column in a file that does not set it (all null): the validator refuses a file without a
# contract column, required or not.
DEFAULTS = {
    "amount": pa.float64(),
    "day": pa.date32(),
    "note": pa.string(),
    "at": pa.timestamp("us", tz="UTC"),
}


def _files(tmp_path: Path, contract: Contract, *tables: dict[str, pa.Array]) -> Batch:
    """Each table written as its own Parquet file (the columns it leaves out all null, of their DEFAULTS type), each
    checked by the validator on its own (all accepted), in one batch in that order."""
    files = []
    for i, columns in enumerate(tables):
        rows = len(columns["id"])
        full = {name: columns.get(name, pa.nulls(rows, DEFAULTS.get(name))) for name in contract.column_names}
        path = tmp_path / f"p{i}.parquet"
        pq.write_table(pa.table(full), path)
        report = validate_path(path, contract, uploaded_at=UPLOADED)
        assert report.decision == "ACCEPTED", report.reasons
        assert report.bad_rows == 0
        files.append(BatchFile(str(path), "parquet"))
    return Batch("t", "b", 1, tuple(files))


def _read(spark: SparkSession, contract: Contract, batch: Batch) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The job's rows of the batch by id: as read_batch gives them (text) and as the rules type them."""
    text = read_batch(spark, contract, batch)
    compiled = compile_rules(text, contract, UPLOADED)
    names = ["id", *contract.column_names[1:], FILE_INDEX]
    read = sorted(({n: r[n] for n in names} for r in text.collect()), key=lambda r: r["id"])
    typed = sorted(({n: r[n] for n in [*names, BAD]} for r in compiled.frame.collect()), key=lambda r: r["id"])
    return read, typed


def test_a_double_column_stored_as_int64_in_one_file_and_double_in_another(spark: SparkSession, tmp_path: Path) -> None:
    # GIVEN amount as int64 in the first file and as double in the second
    contract = _contract()
    batch = _files(
        tmp_path,
        contract,
        {"id": pa.array(["a", "b"]), "amount": pa.array([3, -7], pa.int64())},
        {"id": pa.array(["c"]), "amount": pa.array([2.5], pa.float64())},
    )
    # WHEN the job reads the batch
    read, typed = _read(spark, contract, batch)
    # THEN every row is there, each file's values rendered from its own type (an int64 as its digits)
    assert [(r["id"], r["amount"], r[FILE_INDEX]) for r in read] == [("a", "3", 0), ("b", "-7", 0), ("c", "2.5", 1)]
    assert [(r["id"], r["amount"], r[BAD]) for r in typed] == [("a", 3.0, False), ("b", -7.0, False), ("c", 2.5, False)]


def test_a_date_column_stored_as_text_in_one_file_and_as_date_in_another(spark: SparkSession, tmp_path: Path) -> None:
    # GIVEN day as a date in the first file and as text in the second (the order of the reported failure)
    contract = _contract()
    batch = _files(
        tmp_path,
        contract,
        {"id": pa.array(["a", "b"]), "day": pa.array([date(2024, 1, 2), None], pa.date32())},
        {"id": pa.array(["c", "d"]), "day": pa.array(["2024-02-29", "2023-12-31"])},
    )
    # WHEN the job reads the batch
    read, typed = _read(spark, contract, batch)
    # THEN the dates of both files, as the same text and the same typed values
    assert [(r["id"], r["day"]) for r in read] == [
        ("a", "2024-01-02"),
        ("b", None),
        ("c", "2024-02-29"),
        ("d", "2023-12-31"),
    ]
    assert [(r["id"], r["day"], r[BAD]) for r in typed] == [
        ("a", date(2024, 1, 2), False),
        ("b", None, False),
        ("c", date(2024, 2, 29), False),
        ("d", date(2023, 12, 31), False),
    ]


def test_an_optional_column_with_values_only_in_the_second_file_is_kept(spark: SparkSession, tmp_path: Path) -> None:
    # GIVEN the optional note with no value in the first file, of Parquet's null type (what pyarrow writes for a
    # column of None only), and text in the second
    contract = _contract()
    batch = _files(
        tmp_path,
        contract,
        {"id": pa.array(["a", "b"]), "amount": pa.array([1.5, 2.0]), "note": pa.array([None, None])},
        {"id": pa.array(["c", "d"]), "amount": pa.array([4.25, None]), "note": pa.array(["first", None])},
    )
    # WHEN the job reads the batch
    read, typed = _read(spark, contract, batch)
    # THEN the second file's notes are kept; the first file's rows have none
    assert [(r["id"], r["amount"], r["note"]) for r in read] == [
        ("a", "1.5", None),
        ("b", "2.0", None),
        ("c", "4.25", "first"),
        ("d", None, None),
    ]
    assert [(r["id"], r["note"], r[BAD]) for r in typed] == [
        ("a", None, False),
        ("b", None, False),
        ("c", "first", False),
        ("d", None, False),
    ]


def test_timestamps_in_nanoseconds_microseconds_and_dates_in_one_batch(spark: SparkSession, tmp_path: Path) -> None:
    # GIVEN a timestamp column in nanoseconds (read as their int64 count), as a date (midnight UTC) and in
    # microseconds, one file each
    contract = _contract()
    batch = _files(
        tmp_path,
        contract,
        {"id": pa.array(["a"]), "at": pa.array([1_735_725_600_123_456_789], pa.timestamp("ns"))},
        {"id": pa.array(["b"]), "at": pa.array([date(2025, 1, 2)], pa.date32())},
        {"id": pa.array(["c"]), "at": pa.array([1_735_725_600_000_001], pa.timestamp("us", tz="UTC"))},
    )
    # WHEN the job reads the batch
    read, typed = _read(spark, contract, batch)
    # THEN each file's values as a batch of that file alone gives them
    assert [(r["id"], r["at"], r[FILE_INDEX]) for r in read] == [
        ("a", "2025-01-01 10:00:00.123456", 0),
        ("b", "2025-01-02 00:00:00", 1),
        ("c", "2025-01-01 10:00:00.000001", 2),
    ]
    assert [(r["id"], r["at"], r[BAD]) for r in typed] == [
        ("a", datetime(2025, 1, 1, 10, 0, 0, 123456), False),
        ("b", datetime(2025, 1, 2), False),
        ("c", datetime(2025, 1, 1, 10, 0, 0, 1), False),
    ]


def test_files_of_one_schema_are_read_in_one_job(spark: SparkSession, tmp_path: Path) -> None:
    # GIVEN three files of the same schema
    contract = _contract()
    table = {"id": pa.array(["a"]), "amount": pa.array([1.5]), "day": pa.array([date(2024, 1, 2)])}
    batch = _files(tmp_path, contract, table, table, table)
    # WHEN the job plans the read of the batch
    spark.sparkContext.setJobGroup("parquet-one-schema", "read_batch")
    try:
        frame = read_batch(spark, contract, batch)
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    # THEN one Spark job read the footers (one schema, no fallback per file), and the rows are all there
    assert len(spark.sparkContext.statusTracker().getJobIdsForGroup("parquet-one-schema")) == 1
    assert frame.count() == 3


def test_files_of_two_schemas_are_grouped_without_a_job_per_file(spark: SparkSession, tmp_path: Path) -> None:
    # GIVEN six files, a double column stored as int64 in three of them and as double in the other three
    contract = _contract()
    whole = {"id": pa.array(["w"]), "amount": pa.array([2], pa.int64())}
    real = {"id": pa.array(["r"]), "amount": pa.array([2.5])}
    batch = _files(tmp_path, contract, whole, real, whole, real, whole, real)
    # WHEN the job plans the read of the batch
    spark.sparkContext.setJobGroup("parquet-two-schemas", "read_batch")
    try:
        frame = read_batch(spark, contract, batch)
    finally:
        spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
    # THEN the files' types came from their footers, read by the driver: no Spark job per file (before, 9 jobs: the
    # merged read that found two types, one for each file's schema, one for each group); the rows are all there
    jobs = spark.sparkContext.statusTracker().getJobIdsForGroup("parquet-two-schemas")
    assert len(jobs) < len(batch.files)
    assert sorted(r["amount"] for r in frame.collect()) == ["2", "2", "2", "2.5", "2.5", "2.5"]
