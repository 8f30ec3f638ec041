"""The Spark compiler of dropzone.rules agrees with the validator, rule by rule, on the same file."""

from __future__ import annotations

import gzip
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import SparkSession

from dropzone.contract import Contract, load_contracts, parse_contract
from dropzone.validation import validate_path
from spark_app.io import Batch, BatchFile, read_batch
from spark_app.rules import BAD, compile_rules, failure_count_columns, failure_counts
from tests.spark.conftest import plan_nodes

pytestmark = pytest.mark.spark

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
UPLOADED = datetime(2026, 3, 1, tzinfo=UTC)
HEADER = "order_id,customer_id,order_ts,product_id,amount,quantity,returned,review_text"
ROWS = [
    "O0000001,C000001,2026-01-01T10:00:00Z,P00001,10.5,1,true,fine",  # good
    "O0000002,C000001,2026-01-01 10:00:00+0100,P00001,1e2,2,1,ok",  # good: space, +hhmm, exponent, bool 1
    "O0000003,C000001,2026-01-01T10:00:00.123456-05:00,P00001,0,1000,FALSE,",  # good: fraction, offset, bounds
    "O0000004,C000001,2026-02-30T00:00:00Z,P00001,1,1,false,",  # not a calendar date: order_ts.parse
    "O0000005,C000001,2026-01-01T00:00:00Z,P00001,nan,1,false,",  # amount.finite only
    "O0000006,C000001,2026-01-01T00:00:00Z,P00001,-inf,1,false,",  # amount.finite and amount.min (-inf < 0)
    "O0000007,C000001,2026-01-01T00:00:00Z,P00001,1, 5,false,",  # a leading space: quantity.parse
    "O0000008,C000001,2026-01-01T00:00:00Z,P00001,1,1,yes,",  # returned.parse
    "O0000009,,2026-01-01T00:00:00Z,P00001,1,1,,",  # customer_id.required; returned empty is fine
    "O0000010,C000001,1999-12-31T23:59:59Z,P00001,1,1,false,",  # order_ts.too_old
    "O0000011,C000001,2026-03-01T01:00:01Z,P00001,1,1,false,",  # order_ts.future (tolerance 1h)
    "O0000012,C000001,2026-01-01T00:00:00Z,P00001,100000.5,1,false,",  # amount.max
    "O0000013,C000001,2026-01-01T00:00:00Z,P1,1,1,false,",  # product_id.regex
    "O0000014,C000001,2026-01-01T00:00:00Z,P00001,1,1,false,=HYPERLINK(1)",  # review_text.formula: flagged only
    "O0000015,C000001,2026-01-01T00:00:00Z,P00001,1,1.5,false,",  # quantity.parse
    "O0000016,C000001,2026-01-01T00:00:00Z,P00001,1,1,false," + "x" * 2001,  # review_text.max_length
    "O0000017,C000001,2026-01-01T00:00:00Z,P00001,-nan,1,false,",  # a signed NaN parses, in any case: amount.finite
]


def test_spark_rules_match_the_validator(spark: SparkSession, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("\n".join([HEADER, *ROWS]) + "\n")
    contract = load_contracts(CONTRACTS)["orders"]
    report = validate_path(path, contract, uploaded_at=UPLOADED)

    batch = Batch("orders", "b", 1, (BatchFile(str(path), "csv"),))
    compiled = compile_rules(read_batch(spark, contract, batch), contract, uploaded_at=UPLOADED)
    counted = compiled.frame.agg(*failure_count_columns(compiled))
    rows, bad, failures = failure_counts(counted.collect()[0], compiled)

    assert rows == report.rows_read == len(ROWS)
    assert bad == report.bad_rows == 13
    assert failures == report.rule_counts
    expected = {
        "order_ts.parse": 1,
        "amount.finite": 3,
        "quantity.parse": 2,
        "returned.parse": 1,
        "customer_id.required": 1,
        "order_ts.too_old": 1,
        "order_ts.future": 1,
        "amount.min": 1,
        "amount.max": 1,
        "product_id.regex": 1,
        "review_text.formula": 1,
        "review_text.max_length": 1,
    }
    assert failures == expected
    # the rules are Spark expressions: no Python UDF reads the rows (BatchEvalPython, ArrowEvalPython, ...)
    names = [n.name for n in plan_nodes(counted)]
    assert "HashAggregate" in names
    assert [n for n in names if "Python" in n or "Arrow" in n] == []


def test_typed_values_of_good_rows(spark: SparkSession, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("\n".join([HEADER, *ROWS[:3]]) + "\n")
    contract = load_contracts(CONTRACTS)["orders"]
    compiled = compile_rules(
        read_batch(spark, contract, Batch("orders", "b", 1, (BatchFile(str(path), "csv"),))), contract, UPLOADED
    )
    got = {r["order_id"]: r for r in compiled.frame.filter(~compiled.frame[BAD]).collect()}
    assert got["O0000001"]["order_ts"] == datetime(2026, 1, 1, 10, 0)  # naive UTC (session time zone)
    assert got["O0000002"]["order_ts"] == datetime(2026, 1, 1, 9, 0)  # +0100
    assert got["O0000003"]["order_ts"] == datetime(2026, 1, 1, 15, 0, 0, 123456)  # -05:00, microseconds
    assert got["O0000002"]["amount"] == 100.0
    assert got["O0000002"]["returned"] is True
    assert got["O0000003"]["returned"] is False
    assert got["O0000003"]["quantity"] == 1000


def test_a_csv_row_with_the_wrong_number_of_fields_is_named_as_by_the_validator(
    spark: SparkSession, tmp_path: Path
) -> None:
    # GIVEN a CSV file with a row short of a field, one with a field too many, and a good one
    path = tmp_path / "orders.csv"
    good = ROWS[0]
    short = "O0000020,C000001,2026-01-01T10:00:00Z,P00001,10.5,1,true"
    long = "O0000021,C000001,2026-01-01T10:00:00Z,P00001,10.5,1,true,fine,extra"
    # a comma inside an unquoted field: each value after it one column to the right (product_id "P" fails its regex,
    # quantity "10.5" its type, were the row read as it stands)
    shifted = "O0000022,C000001,2026-01-01T10:00:00Z,P,00001,10.5,1,true,fine"
    path.write_text("\n".join([HEADER, good, short, long, shifted]) + "\n")
    contract = load_contracts(CONTRACTS)["orders"]
    report = validate_path(path, contract, uploaded_at=UPLOADED)
    # WHEN the Spark job reads it and applies the rules
    batch = Batch("orders", "b", 1, (BatchFile(str(path), "csv"),))
    compiled = compile_rules(read_batch(spark, contract, batch), contract, uploaded_at=UPLOADED)
    rows, bad, failures = failure_counts(compiled.frame.agg(*failure_count_columns(compiled)).collect()[0], compiled)
    # THEN both drop the three rows under one name, row.columns, and nothing else
    assert report.rule_counts == {"row.columns": 3}
    assert (rows, bad, failures) == (4, 3, {"row.columns": 3})


def _parquet_contract(column: dict[str, Any], **fields: Any) -> Contract:
    """A Parquet contract of an ``id`` and a ``v`` column, plus ``fields`` (e.g. ``timestamp``, ``limits``)."""
    columns = {"id": {"type": "string"}, "v": column}
    return parse_contract(
        {"dataset": "t", "entity": "id", "formats": ["parquet"], "columns": columns, **fields}, "t.yaml"
    )


@pytest.mark.parametrize("int96", [False, True])
def test_parquet_nanosecond_timestamps_are_read_to_the_microsecond(
    spark: SparkSession, tmp_path: Path, int96: bool
) -> None:
    # GIVEN a Parquet file with nanosecond timestamps: pandas' default (INT64 TIMESTAMP(NANOS), which Spark refuses
    # as such) or the legacy INT96
    contract = _parquet_contract(
        {"type": "timestamp"}, timestamp="v", limits={"earliest_timestamp": "2000-01-01T00:00:00Z"}
    )
    ns = [1_735_725_600_123_456_789, 946_684_799_999_999_999, 946_684_800_000_000_999, None]
    table = pa.table({"id": ["a", "b", "c", "d"], "v": pa.array(ns, pa.timestamp("ns"))})
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, use_deprecated_int96_timestamps=int96)
    report = validate_path(path, contract, uploaded_at=UPLOADED)
    # WHEN the Spark job reads it and applies the rules
    compiled = compile_rules(
        read_batch(spark, contract, Batch("t", "b", 1, (BatchFile(str(path), "parquet"),))), contract, UPLOADED
    )
    got = {r["id"]: r for r in compiled.frame.collect()}
    # THEN the values are the timestamps floored to the microsecond, and the rules fail as in the validator
    assert [got[k]["v"] for k in "abcd"] == [
        datetime(2025, 1, 1, 10, 0, 0, 123456),
        datetime(1999, 12, 31, 23, 59, 59, 999999),
        datetime(2000, 1, 1),
        None,
    ]
    too_old = compiled.flags["v.too_old"]
    assert [got[k][too_old] for k in "abcd"] == [False, True, False, False]
    assert report.rule_counts == {"v.too_old": 1}


# (contract column, Parquet values, the value Spark reads, rules failing) per row, by hand
PARQUET_TYPES: dict[str, tuple[dict[str, Any], pa.Array, list[Any], list[list[str]]]] = {
    "uint64 beyond int64 in an int column": (
        {"type": "int"},
        pa.array([1, None, 2**64 - 1], pa.uint64()),
        ["1", None, None],
        [[], [], ["v.parse"]],
    ),
    "int64 beyond 2**53 in a double column": (  # the nearest double, which the rules see
        {"type": "double", "max": 9e18},
        pa.array([2**63 - 1, 2**53 + 1], pa.int64()),
        ["9.223372036854776E18", "9.007199254740992E15"],
        [["v.max"], []],
    ),
    "date in a timestamp column": (
        {"type": "timestamp"},
        pa.array([date(2025, 1, 2), None], pa.date32()),
        ["2025-01-02 00:00:00", None],
        [[], []],
    ),
    "dates beyond four-digit years": (  # days from 1970: 9999-12-31, the day after, 0000-01-01, the day before
        {"type": "date"},
        pa.array([2_932_896, 2_932_897, -719_528, -719_529], pa.date32()),
        ["9999-12-31", "+10000-01-01", "0000-01-01", "-0001-12-31"],
        [[], ["v.parse"], [], ["v.parse"]],
    ),
    "timestamps beyond four-digit years": (
        {"type": "timestamp"},
        pa.array([253_402_300_799_999_999, 253_402_300_800_000_000, -62_167_219_200_000_000], pa.timestamp("us")),
        ["9999-12-31 23:59:59.999999", "+10000-01-01 00:00:00", "0000-01-01 00:00:00"],
        [[], ["v.parse"], []],
    ),
}


@pytest.mark.parametrize("case", sorted(PARQUET_TYPES))
def test_parquet_types_the_contract_accepts_read_alike(spark: SparkSession, tmp_path: Path, case: str) -> None:
    # GIVEN a Parquet column of a physical type the contract's type accepts (docs/validation.md, Parquet)
    column, values, expected, rules = PARQUET_TYPES[case]
    contract = _parquet_contract(column)
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": [f"r{i}" for i in range(len(values))], "v": values}), path)
    # WHEN the validator checks it and the Spark job reads it
    report = validate_path(path, contract, uploaded_at=UPLOADED)
    batch = Batch("t", "b", 1, (BatchFile(str(path), "parquet"),))
    compiled = compile_rules(read_batch(spark, contract, batch), contract, UPLOADED)
    rows = sorted(compiled.frame.withColumn("v", compiled.frame["v"].cast("string")).collect(), key=lambda r: r["id"])
    # THEN the same rows fail the same rules, and Spark holds the expected values (as its text)
    failing = [sorted(name for name, col in compiled.flags.items() if r[col]) for r in rows]
    assert failing == rules
    assert sorted((s["row"], s["rules"]) for s in report.samples) == [(i + 1, r) for i, r in enumerate(rules) if r]
    assert [r["v"] for r in rows] == expected


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (pa.array([1.5], pa.float16()), "column 'v' has type halffloat (Spark does not read 16-bit floats)"),
        (
            pa.array([Decimal("1.5")], pa.decimal256(50, 2)),
            "column 'v' has type decimal256(50, 2) (Spark reads decimals of at most 38 digits)",
        ),
    ],
)
def test_parquet_types_spark_cannot_read_are_refused(
    spark: SparkSession, tmp_path: Path, values: pa.Array, reason: str
) -> None:
    # GIVEN a Parquet column of a type Spark's reader refuses (it would fail the whole run)
    contract = _parquet_contract({"type": "double"})
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": ["r0"], "v": values}), path)
    # THEN the validator quarantines the file, naming the column and why
    report = validate_path(path, contract, uploaded_at=UPLOADED)
    assert report.decision == "QUARANTINED"
    assert report.reasons == [f"{reason}, expected double"]
    # and Spark does refuse it
    batch = Batch("t", "b", 1, (BatchFile(str(path), "parquet"),))
    with pytest.raises(Exception, match=r"FLOAT16|precision 50 exceeds"):
        read_batch(spark, contract, batch).collect()


def test_csv_quoted_values_are_read_as_the_validator_reads_them(spark: SparkSession, tmp_path: Path) -> None:
    # GIVEN RFC 4180 quoting, as Python's csv module and pandas write it: a newline, a comma and doubled quotes in a
    # quoted value, a backslash (no escape character), a quoted empty value
    review = {
        "O0000001": "line one\nline two",
        "O0000002": 'a "quoted" word, and a comma',
        "O0000003": "C:\\temp\\",
        "O0000004": "",
    }
    quoted = {k: '"' + v.replace('"', '""') + '"' for k, v in review.items()}
    lines = [f"{k},C000001,2026-01-01T10:00:00Z,P00001,10.5,1,true,{q}" for k, q in quoted.items()]
    path = tmp_path / "orders.csv"
    path.write_text("\n".join([HEADER, *lines]) + "\n")
    contract = load_contracts(CONTRACTS)["orders"]
    report = validate_path(path, contract, uploaded_at=UPLOADED)
    # WHEN the Spark job reads it
    compiled = compile_rules(
        read_batch(spark, contract, Batch("orders", "b", 1, (BatchFile(str(path), "csv"),))), contract, UPLOADED
    )
    got = {r["order_id"]: r for r in compiled.frame.collect()}
    # THEN both see four good rows, and Spark has the values as written ("" is an empty value: null, as in the
    # validator, where an empty field is null)
    assert (report.rows_read, report.bad_rows) == (4, 0)
    assert sorted(got) == sorted(review)
    assert [got[k][BAD] for k in review] == [False] * 4
    assert {k: got[k]["review_text"] for k in review} == {**review, "O0000004": None}


@pytest.mark.parametrize("name", ["orders.csv", "orders.csv.gz"])
@pytest.mark.parametrize("line_end", ["\n", "\r\n"], ids=["lf", "crlf"])
def test_csv_quoted_line_ends_are_kept(spark: SparkSession, tmp_path: Path, line_end: str, name: str) -> None:
    # GIVEN quoted reviews holding CRLF and LF, in a file whose rows end with LF or with CRLF; the orders contract's
    # review_text max_length is 2000, and a CRLF is two characters of it
    review = {
        "O0000001": "windows\r\nline",
        "O0000002": "unix\nline",
        "O0000003": "a" * 1998 + "\r\n",  # 2000 characters: good
        "O0000004": "a" * 1999 + "\r\n",  # 2001: review_text.max_length
        "O0000005": "last",
    }
    lines = [f'{k},C000001,2026-01-01T10:00:00Z,P00001,10.5,1,true,"{v}"' for k, v in review.items()]
    lines.append("O0000006,C000001,2026-01-01T10:00:00Z,P00001,10.5,1,true,unquoted")
    data = line_end.join([HEADER, *lines, ""]).encode()
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    contract = load_contracts(CONTRACTS)["orders"]
    report = validate_path(path, contract, uploaded_at=UPLOADED)
    # WHEN the Spark job reads it
    batch = Batch("orders", "b", 1, (BatchFile(str(path), name.removeprefix("orders.")),))
    compiled = compile_rules(read_batch(spark, contract, batch), contract, UPLOADED)
    got = {r["order_id"]: r for r in compiled.frame.collect()}
    rows, bad, failures = failure_counts(compiled.frame.agg(*failure_count_columns(compiled)).collect()[0], compiled)
    # THEN the values are the file's, line ends inside quotes included, and both count the same bad row
    assert (report.rows_read, report.bad_rows, report.rule_counts) == (6, 1, {"review_text.max_length": 1})
    assert (rows, bad, failures) == (6, 1, {"review_text.max_length": 1})
    assert {k: got[k]["review_text"] for k in review} == review
    assert got["O0000006"]["review_text"] == "unquoted"


@pytest.mark.parametrize(
    ("write", "reason"),
    [
        (
            {"compression": {"id": "snappy", "v": "brotli"}},
            "row group 0 column 'v' is compressed with Brotli, for which Spark has no codec",
        ),
        (
            {"use_dictionary": False, "column_encoding": {"v": "BYTE_STREAM_SPLIT"}},
            "row group 0 column 'v' uses the BYTE_STREAM_SPLIT encoding, which Spark's Parquet reader does not read",
        ),
    ],
    ids=["brotli", "byte_stream_split"],
)
def test_parquet_codecs_and_encodings_spark_cannot_read_are_refused(
    spark: SparkSession, tmp_path: Path, write: dict[str, Any], reason: str
) -> None:
    # GIVEN a Parquet file pyarrow reads but Spark's reader does not (a compression codec, an encoding)
    contract = _parquet_contract({"type": "double"})
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": ["r0", "r1"], "v": [1.5, 2.5]}), path, **write)
    # THEN the validator quarantines it, naming the column and what to write instead
    report = validate_path(path, contract, uploaded_at=UPLOADED)
    assert report.decision == "QUARANTINED"
    assert len(report.reasons) == 1
    assert report.reasons[0].startswith(reason)
    # and Spark does fail on it
    batch = Batch("t", "b", 1, (BatchFile(str(path), "parquet"),))
    with pytest.raises(Exception, match=r"FAILED_READ_FILE|BROTLI|Brotli|BYTE_STREAM_SPLIT"):
        read_batch(spark, contract, batch).collect()


@pytest.mark.parametrize("head_end", ["\n", "\r\n"], ids=["lf_header", "crlf_header"])
def test_csv_rows_with_mixed_line_ends_are_read_as_the_validator_reads_them(
    spark: SparkSession, tmp_path: Path, head_end: str
) -> None:
    # GIVEN a CSV file whose rows end with LF and with CRLF (files joined from two sources, an editor's fix), a blank
    # CRLF line, an empty last value, a multi-line quoted value and a short row
    row = "O000000{},C000001,2026-01-01T10:00:00Z,P00001,10.5,1,true,{}"
    body = (
        row.format(1, "first") + "\n"
        + row.format(2, '"quoted"') + "\r\n"
        + "\r\n"
        + row.format(3, "") + "\r\n"
        + row.format(4, '"multi\nline"') + "\n"
        + "O0000005,C000001,2026-01-01T10:00:00Z,P00001,10.5,1\r\n"
        + row.format(6, "last") + "\r\n"
    )  # fmt: skip
    path = tmp_path / "orders.csv"
    path.write_bytes((HEADER + head_end + body).encode())
    contract = load_contracts(CONTRACTS)["orders"]
    report = validate_path(path, contract, uploaded_at=UPLOADED)
    # WHEN the Spark job reads it
    batch = Batch("orders", "b", 1, (BatchFile(str(path), "csv"),))
    compiled = compile_rules(read_batch(spark, contract, batch), contract, UPLOADED)
    got = {r["order_id"]: r for r in compiled.frame.collect()}
    rows, bad, failures = failure_counts(compiled.frame.agg(*failure_count_columns(compiled)).collect()[0], compiled)
    # THEN both read six rows, one of them bad (the short one), and the same values: no line end is left in a value
    assert (report.rows_read, report.bad_rows, report.rule_counts) == (6, 1, {"row.columns": 1})
    assert (rows, bad, failures) == (6, 1, {"row.columns": 1})
    good = {k: got[k]["review_text"] for k in got if not got[k][BAD]}
    assert good == {
        "O0000001": "first",
        "O0000002": "quoted",
        "O0000003": None,
        "O0000004": "multi\nline",
        "O0000006": "last",
    }
    assert {got[k]["returned"] for k in good} == {True}
