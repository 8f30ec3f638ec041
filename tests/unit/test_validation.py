"""The validator on well-formed files: every format, several batches, counts, samples and the report's shape."""

from __future__ import annotations

import csv
import gzip
import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from dropzone.contract import Contract, load_contract, parse_contract
from dropzone.generate import generate
from dropzone.validation import validate_path, validate_stream
from dropzone.validation import validator as validator_module

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
UPLOADED = datetime(2026, 6, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("generated")
    return generate(out, rows=3000, seed=3, files=1, end_date="2026-05-01") | {"dir": out}


@pytest.fixture(scope="module")
def orders() -> Contract:
    return load_contract(CONTRACTS / "orders.yaml")


def orders_csv(generated: dict[str, Any]) -> Path:
    return next((generated["dir"] / "orders").glob("*.csv"))


def with_negative_amount(line: str) -> str:
    """The CSV line with its amount (5th field) set to -1, which the orders contract's min rule refuses."""
    fields = next(csv.reader([line]))
    fields[4] = "-1"
    return ",".join(f'"{f}"' if "," in f else f for f in fields)


def test_generated_files_pass_their_contracts(generated: dict[str, Any]) -> None:
    for dataset in ("orders", "products", "customers"):
        contract = load_contract(CONTRACTS / f"{dataset}.yaml")
        for path in (generated["dir"] / dataset).glob("*.csv"):
            report = validate_path(path, contract, uploaded_at=UPLOADED)
            assert report.decision == "ACCEPTED", report.reasons
            assert report.bad_rows == 0
            assert report.rows_read == sum(1 for _ in csv.reader(path.open())) - 1


def test_every_format_gives_the_same_counts(tmp_path: Path, generated: dict[str, Any], orders: Contract) -> None:
    source = orders_csv(generated)
    table = pa_csv.read_csv(source, convert_options=pa_csv.ConvertOptions(column_types={"quantity": pa.int64()}))
    rows = table.to_pylist()
    (tmp_path / "o.csv.gz").write_bytes(gzip.compress(source.read_bytes()))
    jsonl = "".join(json.dumps(r, default=str) + "\n" for r in rows)
    (tmp_path / "o.jsonl").write_text(jsonl)
    (tmp_path / "o.jsonl.gz").write_bytes(gzip.compress(jsonl.encode()))
    pq.write_table(table, tmp_path / "o.parquet", row_group_size=700)
    reports = [validate_path(source, orders, uploaded_at=UPLOADED)]
    for name in ("o.csv.gz", "o.jsonl", "o.jsonl.gz", "o.parquet"):
        reports.append(validate_path(tmp_path / name, orders, uploaded_at=UPLOADED))
    assert [r.format for r in reports] == ["csv", "csv.gz", "jsonl", "jsonl.gz", "parquet"]
    assert {(r.decision, r.rows_read, r.bad_rows) for r in reports} == {("ACCEPTED", 3000, 0)}
    assert reports[1].bytes_read == (tmp_path / "o.csv.gz").stat().st_size


def test_bad_rows_across_many_batches(
    tmp_path: Path, generated: dict[str, Any], orders: Contract, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN 3000 good rows with 40 broken ones spread over the file, read in ~16 KiB blocks (many batches)
    monkeypatch.setattr(validator_module, "CSV_BLOCK", 16 * 1024)
    lines = orders_csv(generated).read_text().splitlines()
    header, body = lines[0], lines[1:]
    for i in range(0, 3000, 75):  # 40 rows: negative amount
        body[i] = with_negative_amount(body[i])
    body.append(body[2999])  # one repeated order id, thousands of rows after its first occurrence
    path = tmp_path / "o.csv"
    path.write_text("\n".join([header, *body]) + "\n")
    # WHEN
    report = validate_path(path, orders, uploaded_at=UPLOADED)
    # THEN counts are exact, samples are capped and numbered by data row
    assert report.rows_read == 3001
    assert report.rule_counts == {"amount.min": 40, "order_id.unique": 1}
    assert report.bad_rows == 41
    assert report.decision == "QUARANTINED"
    assert report.reasons[0] == "1.4% of rows are bad (limit 1.0%): 41 of 3001"
    assert "amount.min: 40 rows (amount is below 0)" in report.reasons
    assert len(report.samples) == 20
    assert [s["row"] for s in report.samples[:3]] == [1, 76, 151]
    assert report.samples[0]["values"]["amount"] == "-1"


def test_bad_fraction_at_the_limit_is_accepted(tmp_path: Path, generated: dict[str, Any], orders: Contract) -> None:
    lines = orders_csv(generated).read_text().splitlines()
    body = lines[1:]
    for i in range(30):  # exactly 1.0% of 3000
        fields = next(csv.reader([body[i * 100]]))
        fields[6] = "maybe"
        body[i * 100] = ",".join(f'"{f}"' if "," in f else f for f in fields)
    path = tmp_path / "o.csv"
    path.write_text("\n".join([lines[0], *body]) + "\n")
    report = validate_path(path, orders, uploaded_at=UPLOADED)
    assert report.rule_counts == {"returned.parse": 30}
    assert report.decision == "ACCEPTED"
    assert report.reasons == []


def test_parquet_from_a_non_seekable_stream(tmp_path: Path, generated: dict[str, Any], orders: Contract) -> None:
    table = pa_csv.read_csv(orders_csv(generated))
    pq.write_table(table, tmp_path / "o.parquet")
    data = (tmp_path / "o.parquet").read_bytes()

    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self.inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def seekable(self) -> bool:
            return False

        def readinto(self, b: Any) -> int:
            return self.inner.readinto(b)

    report = validate_stream(Pipe(), name="o.parquet", contract=orders, size=len(data), uploaded_at=UPLOADED)
    assert report.decision == "ACCEPTED"
    assert report.rows_read == 3000


def test_report_is_json_and_complete(tmp_path: Path, orders: Contract) -> None:
    path = tmp_path / "o.csv"
    path.write_text(
        "order_id,customer_id,order_ts,product_id,amount,quantity,returned,review_text\n"
        "O00000001,C000001,2025-01-01T00:00:00Z,P00001,5.5,2,,=1+1\n"
        "O00000002,C000001,2025-01-01T00:00:00Z,P00001,5.5,0,,\n"
    )
    d = json.loads(json.dumps(validate_path(path, orders, uploaded_at=UPLOADED).to_dict()))
    assert d["decision"] == "QUARANTINED"
    assert d["rows_read"] == 2
    assert d["bad_rows"] == 1
    assert d["rule_counts"] == {"quantity.min": 1, "review_text.formula": 1}
    assert d["flagged"] == {"review_text.formula": 1}
    assert d["samples"][0]["row"] == 2
    assert d["samples"][0]["rules"] == ["quantity.min"]
    assert d["schema"] == {"missing": [], "extra": [], "wrong_type": []}
    assert d["bytes_read"] == path.stat().st_size
    assert d["duration_s"] >= 0
    assert d["uploaded_at"] == "2026-06-01T00:00:00+00:00"


def test_fractional_seconds_up_to_nine_digits_are_accepted_and_ten_are_not(tmp_path: Path, orders: Contract) -> None:
    # GIVEN timestamps with 9, 7 and 6 fractional digits (the rules' forms) and one with 10 (outside them)
    stamps = [
        "2024-01-02T03:04:05.123456789Z",
        "2024-01-02 03:04:05.1234567+01:00",
        "2024-01-02T03:04:05.123456Z",
        "2024-01-02T03:04:05.1234567891Z",
    ]
    header = "order_id,customer_id,order_ts,product_id,amount,quantity,returned,review_text"
    rows = [f"O{100000 + i},C000001,{ts},P00001,10.0,1,false,ok" for i, ts in enumerate(stamps)]
    path = tmp_path / "stamps.csv"
    path.write_text("\n".join([header, *rows]) + "\n")

    # WHEN it is validated
    report = validate_path(path, orders, uploaded_at=UPLOADED)

    # THEN only the 10-digit one fails to parse (row 4)
    assert report.rule_counts == {"order_ts.parse": 1}
    assert [s["row"] for s in report.samples] == [4]


def test_checking_blocks_in_groups_keeps_row_numbers_and_counts(
    tmp_path: Path, generated: dict[str, Any], orders: Contract, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN rows with too few fields and bad amounts spread over many ~8 KiB blocks
    monkeypatch.setattr(validator_module, "CSV_BLOCK", 8 * 1024)
    lines = orders_csv(generated).read_text().splitlines()
    header, body = lines[0], lines[1:]
    for i in range(5, 3000, 170):
        body[i] = "O1,C1"  # wrong field count: counted when the parser meets it
    for i in range(40, 3000, 130):
        body[i] = with_negative_amount(body[i])
    path = tmp_path / "o.csv"
    path.write_text("\n".join([header, *body]) + "\n")
    # WHEN checked one block at a time and three at a time
    reports = []
    for per_check in (1, 3):
        monkeypatch.setattr(validator_module, "CSV_BATCHES_PER_CHECK", per_check)
        reports.append(validate_path(path, orders, uploaded_at=UPLOADED).to_dict())
    # THEN the reports are the same: counts, reasons and the numbered samples
    for d in reports:
        d.pop("duration_s")
    assert reports[0] == reports[1]
    assert reports[0]["rule_counts"] == {"row.columns": 18, "amount.min": 23}
    assert reports[0]["rows_read"] == 3000


def parquet_contract(columns: dict[str, Any], **fields: Any) -> Contract:
    """A Parquet contract of an ``id`` column and ``columns``, plus ``fields`` (e.g. ``timestamp``, ``limits``)."""
    document = {
        "dataset": "t",
        "entity": "id",
        "formats": ["parquet"],
        "columns": {"id": {"type": "string"}, **columns},
    }
    return parse_contract({**document, **fields}, "t.yaml")


def test_parquet_timestamps_in_nanoseconds_are_kept_to_the_microsecond(tmp_path: Path) -> None:
    # GIVEN a Parquet file with nanosecond timestamps (pandas' default), some with digits below the microsecond
    contract = parquet_contract(
        {"ts": {"type": "timestamp"}}, timestamp="ts", limits={"earliest_timestamp": "2000-01-01T00:00:00Z"}
    )
    ns = [
        1_735_725_600_123_456_789,  # 2025-01-01T10:00:00.123456789
        946_684_799_999_999_999,  # 1999-12-31T23:59:59.999999999: before the earliest timestamp
        946_684_800_000_000_999,  # 2000-01-01T00:00:00.000000999: the earliest timestamp, once floored
        None,
    ]
    table = pa.table({"id": ["a", "b", "c", "d"], "ts": pa.array(ns, pa.timestamp("ns"))})
    pq.write_table(table, tmp_path / "t.parquet")
    # WHEN validated THEN every value is a timestamp: only the one before 2000 fails, too_old
    report = validate_path(tmp_path / "t.parquet", contract, uploaded_at=UPLOADED)
    assert report.rule_counts == {"ts.too_old": 1}
    assert [(s["row"], s["rules"]) for s in report.samples] == [(2, ["ts.too_old"])]


def test_parquet_dates_beyond_year_9999_fail_parse_and_are_sampled_as_text(tmp_path: Path) -> None:
    # GIVEN Parquet dates beyond four-digit years (which Python's date cannot hold), one next to a missing value
    contract = parquet_contract({"dt": {"type": "date"}, "n": {"type": "int", "required": True}})
    days = [2_932_896, 2_932_897, -719_529]  # 9999-12-31, 10000-01-01, -0001-12-31 (days from 1970)
    table = pa.table({"id": ["a", "b", "c"], "dt": pa.array(days, pa.date32()), "n": [1, None, 3]})
    pq.write_table(table, tmp_path / "t.parquet")
    # WHEN validated THEN the two fail dt.parse (the Spark job reads them as text '+10000-01-01', '-0001-12-31'),
    # and the samples show them as text, not a crash
    report = validate_path(tmp_path / "t.parquet", contract, uploaded_at=UPLOADED)
    assert report.rule_counts == {"dt.parse": 2, "n.required": 1}
    assert [(s["row"], sorted(s["rules"]), s["values"]["dt"]) for s in report.samples] == [
        (2, ["dt.parse", "n.required"], "10000-01-01"),
        (3, ["dt.parse"], "-0001-12-31"),
    ]
