"""Hostile input is data, never a crash: each case ends QUARANTINED with a specific reason, or ACCEPTED where the
validator tolerates it on purpose (BOM, CRLF, brackets inside JSON strings, quoted newlines).

Files are generated here, in tmp_path, never committed.
"""

from __future__ import annotations

import gzip
import io
import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from dropzone.contract import Contract, load_contract, parse_contract
from dropzone.validation import validate_path, validate_stream
from dropzone.validation.report import ValidationReport

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
UPLOADED = datetime(2026, 1, 1, tzinfo=UTC)
HEADER = "order_id,customer_id,order_ts,product_id,amount,quantity,returned,review_text"


@pytest.fixture(scope="module")
def orders() -> Contract:
    return load_contract(CONTRACTS / "orders.yaml")


def orders_with(**limits: Any) -> Contract:
    """The orders contract with some limits changed (the YAML is re-checked by the contract module)."""
    document = yaml.safe_load((CONTRACTS / "orders.yaml").read_text())
    document["limits"].update(limits)
    return parse_contract(document, "orders.yaml")


def row(i: int, **overrides: str) -> str:
    values = {
        "order_id": f"O{i:08d}",
        "customer_id": f"C{i % 1000:06d}",
        "order_ts": f"2025-03-{1 + i % 28:02d}T10:00:00Z",
        "product_id": f"P{i % 100:05d}",
        "amount": f"{10 + i % 50}.5",
        "quantity": str(1 + i % 3),
        "returned": "false",
        "review_text": "fine",
    }
    values.update(overrides)
    return ",".join(values.values())


def csv_text(n: int = 10, **overrides: str) -> str:
    return HEADER + "\n" + "".join(row(i, **overrides) + "\n" for i in range(n))


def check(path: Path, contract: Contract) -> ValidationReport:
    report = validate_path(path, contract, uploaded_at=UPLOADED)
    assert json.loads(json.dumps(report.to_dict()))["decision"] == report.decision
    return report


def quarantined(report: ValidationReport, fragment: str) -> None:
    assert report.decision == "QUARANTINED", report.to_dict()
    assert any(fragment in reason for reason in report.reasons), report.reasons


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    p = tmp_path / name
    p.write_bytes(data.encode() if isinstance(data, str) else data)
    return p


# --- empty and structural ---------------------------------------------------------------------------------------


def test_empty_file(tmp_path: Path, orders: Contract) -> None:
    quarantined(check(write(tmp_path, "o.csv", b""), orders), "file is empty (0 bytes)")


def test_empty_gzip_member(tmp_path: Path, orders: Contract) -> None:
    quarantined(check(write(tmp_path, "o.csv.gz", gzip.compress(b"")), orders), "file is empty")


def test_header_only(tmp_path: Path, orders: Contract) -> None:
    quarantined(check(write(tmp_path, "o.csv", HEADER + "\n"), orders), "file has a header but no data rows")


def test_missing_column(tmp_path: Path, orders: Contract) -> None:
    text = "\n".join(",".join(line.split(",")[:4] + line.split(",")[5:]) for line in csv_text(3).splitlines())
    report = check(write(tmp_path, "o.csv", text + "\n"), orders)
    quarantined(report, "missing column 'amount'")
    assert report.schema.missing == ["amount"]


def test_extra_column(tmp_path: Path, orders: Contract) -> None:
    text = "\n".join(line + ",x" for line in csv_text(3).splitlines()).replace("review_text,x", "review_text,discount")
    report = check(write(tmp_path, "o.csv", text + "\n"), orders)
    quarantined(report, "unexpected column 'discount'")
    assert report.schema.extra == ["discount"]


def test_duplicate_header_column(tmp_path: Path, orders: Contract) -> None:
    text = HEADER + ",amount\n" + row(1) + ",3\n"
    quarantined(check(write(tmp_path, "o.csv", text), orders), "header repeats column 'amount'")


def test_wrong_delimiter(tmp_path: Path, orders: Contract) -> None:
    report = check(write(tmp_path, "o.csv", csv_text(5).replace(",", ";")), orders)
    quarantined(report, "missing column 'order_id'")
    quarantined(report, "the file looks semicolon-delimited; expected commas")


def test_an_excel_delimiter_hint_line_is_named(tmp_path: Path, orders: Contract) -> None:
    # GIVEN the "sep=," line some tools write first for Excel, above a good header and rows
    report = check(write(tmp_path, "o.csv", "sep=,\r\n" + csv_text(3)), orders)
    # THEN the first reason says what that line is, before the columns it puts out of place
    assert report.reasons[0] == (
        "the first line is 'sep=,', a delimiter hint for Excel, not the header: remove it (the header must be the"
        " first line)"
    )
    quarantined(report, "missing column 'order_id'")


def test_ragged_rows(tmp_path: Path, orders: Contract) -> None:
    text = csv_text(5) + "O99999999,C000001,2025-01-01T00:00:00Z\n"
    report = check(write(tmp_path, "o.csv", text), orders)
    quarantined(report, "row.columns: 1 rows")
    assert report.bad_rows == 1
    assert report.rows_read == 6
    assert "expected 8 fields, got 3" in report.samples[0]["detail"]


def test_unsupported_file_name(tmp_path: Path, orders: Contract) -> None:
    quarantined(check(write(tmp_path, "o.xlsx", csv_text()), orders), "unsupported file name 'o.xlsx'")


def test_format_not_accepted_by_contract(tmp_path: Path) -> None:
    document = yaml.safe_load((CONTRACTS / "orders.yaml").read_text())
    document["formats"] = ["csv"]
    contract = parse_contract(document, "orders.yaml")
    report = check(write(tmp_path, "o.jsonl", '{"order_id": "O00000001"}\n'), contract)
    quarantined(report, "format jsonl is not accepted for orders (accepted: csv)")


# --- compression ------------------------------------------------------------------------------------------------


def test_truncated_gzip(tmp_path: Path, orders: Contract) -> None:
    data = gzip.compress(csv_text(2000).encode())
    quarantined(check(write(tmp_path, "o.csv.gz", data[: len(data) // 2]), orders), "gzip stream is truncated")


def test_corrupt_gzip(tmp_path: Path, orders: Contract) -> None:
    data = bytearray(gzip.compress(csv_text(2000).encode()))
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(range(64))
    quarantined(check(write(tmp_path, "o.csv.gz", bytes(data)), orders), "gzip stream is corrupt")


def test_gzip_bomb(tmp_path: Path, orders: Contract) -> None:
    line = (row(1) + "\n").encode()
    bomb = gzip.compress(HEADER.encode() + b"\n" + line * (40_000_000 // len(line)), compresslevel=9)
    assert len(bomb) < 200_000
    report = check(write(tmp_path, "o.csv.gz", bomb), orders)
    quarantined(report, "refused as a decompression bomb")
    assert report.bytes_read == len(bomb)


def test_gzip_over_max_bytes_decompressed(tmp_path: Path) -> None:
    contract = orders_with(max_bytes="64 KiB")
    data = gzip.compress(csv_text(3000).encode())
    assert len(data) < 64 * 1024 < len(csv_text(3000))
    quarantined(check(write(tmp_path, "o.csv.gz", data), contract), "decompressed size exceeds max_bytes 64.0 KiB")


@pytest.mark.parametrize("name", ["o.csv", "o.jsonl"])
def test_gzip_under_a_plain_name_is_sniffed_and_refused_with_the_name_to_use(
    tmp_path: Path, orders: Contract, name: str
) -> None:
    # the feature job's reader decompresses by the name only: accepted, the file would fail the batch's run
    report = check(write(tmp_path, name, gzip.compress(csv_text(7).encode())), orders)
    quarantined(report, f"content is gzip but the name says {name[2:]}: name it {name}.gz")


def test_gz_name_with_plain_content(tmp_path: Path, orders: Contract) -> None:
    report = check(write(tmp_path, "o.csv.gz", csv_text(3)), orders)
    quarantined(report, "file name says gzip but the content is not gzip")


def test_file_larger_than_max_bytes_is_refused_before_reading(orders: Contract) -> None:
    class Untouchable(io.RawIOBase):
        def read(self, n: int = -1) -> bytes:
            raise AssertionError("must not be read")

    report = validate_stream(Untouchable(), name="o.csv", contract=orders, size=6 * 2**30, uploaded_at=UPLOADED)
    quarantined(report, "file is 6.0 GiB, larger than max_bytes 5.0 GiB")


# --- encodings and bytes ----------------------------------------------------------------------------------------


OTHER_ENCODING = (
    'the file is probably in another encoding, such as Windows-1252 or Latin-1 (Excel\'s "CSV (Comma delimited)"'
    ' writes one): save it as UTF-8 ("CSV UTF-8" in Excel)'
)


def test_invalid_utf8_in_a_row_is_placed(tmp_path: Path, orders: Contract) -> None:
    data = csv_text(5).encode().replace(b"fine", b"caf\xe9", 3)  # Windows-1252, not UTF-8, in rows 1 to 3
    report = check(write(tmp_path, "o.csv", data), orders)
    assert report.reasons == [
        "file is not valid UTF-8 text at data row 1, column 'review_text', byte 4 of its value (0xE9 in \"caf\\xe9\"): "
        + OTHER_ENCODING
    ]


@pytest.mark.parametrize("name", ["o.csv", "o.csv.gz"])
def test_invalid_utf8_deep_in_a_large_file_is_placed(tmp_path: Path, orders: Contract, name: str) -> None:
    # GIVEN 200,000 rows (~16 MiB) of UTF-8 reviews with accents, a quoted review holding a newline in row 10, a row
    # with too few fields in row 100,000 (rows are not lines), and row 150,000 written in Latin-1
    review = "cr\u00e8me br\u00fbl\u00e9e"
    data = csv_text(200_000, review_text=review).encode()
    line = row(149_999, review_text=review)
    data = data.replace(line.encode(), line.encode("latin-1"))
    data = data.replace(row(9, review_text=review).encode(), row(9, review_text='"two\nlines"').encode())
    data = data.replace(row(99_999, review_text=review).encode(), b"O1,C1")
    report = check(write(tmp_path, name, gzip.compress(data, 1) if name.endswith(".gz") else data), orders)
    # THEN the reason names that row, its column and the first byte that is no UTF-8: the è of crème, its 3rd
    assert report.reasons == [
        "file is not valid UTF-8 text at data row 150000, column 'review_text', byte 3 of its value (0xE8 in "
        '"cr\\xe8me br\\xfbl\\xe9e"): ' + OTHER_ENCODING
    ]


def test_invalid_utf8_in_the_header(tmp_path: Path, orders: Contract) -> None:
    data = b"order_id\xff," + csv_text(2).encode()
    report = check(write(tmp_path, "o.csv", data), orders)
    assert report.reasons == [
        "header line is not valid UTF-8 (0xFF at byte 9): the file is binary, or in another encoding, such as"
        ' Windows-1252 or Latin-1 (Excel\'s "CSV (Comma delimited)" writes one): save it as UTF-8 ("CSV UTF-8" in'
        " Excel)"
    ]


def test_binary_garbage_with_nul_bytes(tmp_path: Path, orders: Contract) -> None:
    data = random.Random(1).randbytes(50_000)
    quarantined(check(write(tmp_path, "o.csv", data), orders), "NUL byte at offset")


def test_binary_garbage_without_nul_bytes(tmp_path: Path, orders: Contract) -> None:
    rng = random.Random(2)
    data = bytes(rng.randrange(128, 256) for _ in range(50_000))  # no newline, no NUL: one long invalid line
    report = check(write(tmp_path, "o.csv", data), orders)
    quarantined(report, "header line is not valid UTF-8")


def test_parquet_bytes_under_a_csv_name(tmp_path: Path, orders: Contract) -> None:
    table = pa.table({"order_id": ["O00000001"]})
    pq.write_table(table, tmp_path / "t.parquet")
    data = (tmp_path / "t.parquet").read_bytes()
    quarantined(check(write(tmp_path, "o.csv", data), orders), "content is Parquet (PAR1 magic bytes)")


def test_utf8_bom_is_tolerated_and_stripped(tmp_path: Path, orders: Contract) -> None:
    report = check(write(tmp_path, "o.csv", b"\xef\xbb\xbf" + csv_text(4).encode()), orders)
    assert report.decision == "ACCEPTED"
    assert report.rows_read == 4
    assert not report.schema


def test_utf16_is_refused(tmp_path: Path, orders: Contract) -> None:
    data = csv_text(2).encode("utf-16")  # starts with the FF FE byte order mark
    quarantined(check(write(tmp_path, "o.csv", data), orders), "file is UTF-16 encoded")


def test_crlf_line_endings_are_accepted(tmp_path: Path, orders: Contract) -> None:
    report = check(write(tmp_path, "o.csv", csv_text(6).replace("\n", "\r\n")), orders)
    assert report.decision == "ACCEPTED"
    assert report.rows_read == 6
    assert report.bad_rows == 0


CR_REASON = "the file's lines end with a carriage return alone (CR, as classic Mac OS"


@pytest.mark.parametrize("name", ["o.csv", "o.csv.gz"])
def test_cr_line_endings_are_refused_naming_them(tmp_path: Path, orders: Contract, name: str) -> None:
    # GIVEN a small file whose lines end with CR alone (no LF anywhere: its first "line" is the whole file)
    data = csv_text(6).replace("\n", "\r").encode()
    report = check(write(tmp_path, name, gzip.compress(data) if name.endswith(".gz") else data), orders)
    # THEN it is quarantined for that, with the way out (it was a crash in the header's CSV parser)
    quarantined(report, "the header line holds a carriage return not followed by LF")
    quarantined(report, "save it with LF or CRLF line ends")


def test_a_large_cr_file_is_refused_naming_its_line_ends(tmp_path: Path, orders: Contract) -> None:
    # GIVEN more than max_line_length (1 MiB) of CR-ended lines: the line-length guard stops it first
    report = check(write(tmp_path, "o.csv", csv_text(20_000).replace("\n", "\r")), orders)
    quarantined(report, f"line 1 is longer than max_line_length 1.0 MiB: {CR_REASON}")


def test_a_long_crlf_line_is_not_taken_for_cr_line_ends(tmp_path: Path, orders: Contract) -> None:
    # GIVEN a CRLF file with one line over the limit, found in the chunk that holds the line's CR LF
    text = csv_text(3).replace("\n", "\r\n") + row(4, review_text="x" * (2**20 + 10)) + "\r\n"
    report = check(write(tmp_path, "o.csv", text), orders)
    quarantined(report, "line 5 is longer than max_line_length 1.0 MiB")
    assert not any("carriage return" in reason for reason in report.reasons), report.reasons


LONE_CR = "holds a carriage return not followed by LF: some readers end a row there and others do not"


@pytest.mark.parametrize("name", ["o.csv", "o.csv.gz"])
@pytest.mark.parametrize(
    "review",
    ["before\rafter", '"quoted, then a CR\r"', '"a CR\rin quotes"'],
    ids=["unquoted", "quoted_at_the_end", "quoted_inside"],
)
def test_a_carriage_return_alone_in_a_csv_row_is_refused_naming_its_line(
    tmp_path: Path, orders: Contract, name: str, review: str
) -> None:
    # GIVEN a CRLF file whose fourth row (line 5) holds a CR not followed by LF: pyarrow would end a row there, Spark
    # would not (and would take a CR that ends a quoted last value for a line end's)
    text = csv_text(3).replace("\n", "\r\n") + row(3, review_text=review) + "\r\n" + row(4) + "\r\n"
    data = text.encode()
    report = check(write(tmp_path, name, gzip.compress(data) if name.endswith(".gz") else data), orders)
    # THEN the file is refused, naming the line and the way out
    quarantined(report, f"line 5 {LONE_CR}")
    quarantined(report, "end every line with LF or CRLF and take lone CRs out of the values")


def test_crlf_in_a_quoted_value_and_at_the_end_of_the_file_is_accepted(tmp_path: Path, orders: Contract) -> None:
    # GIVEN a CR before each LF (in a quoted value too), and a file that ends with a CR (its last line end cut short)
    text = csv_text(3).replace("\n", "\r\n") + row(3, review_text='"two\r\nlines"') + "\r\n" + row(4) + "\r"
    report = check(write(tmp_path, "o.csv", text), orders)
    # THEN nothing is refused
    assert (report.decision, report.rows_read, report.bad_rows) == ("ACCEPTED", 5, 0), report.reasons


def test_a_cr_json_lines_file_names_its_line_ends(tmp_path: Path) -> None:
    document = yaml.safe_load((CONTRACTS / "orders.yaml").read_text())
    contract = parse_contract({**document, "formats": ["jsonl"]}, "orders.yaml")
    rows = [dict(zip(HEADER.split(","), row(i).split(","), strict=True)) for i in range(3)]
    report = check(write(tmp_path, "o.jsonl", "".join(json.dumps(r) + "\r" for r in rows)), contract)
    quarantined(report, "row.json: 1 rows")
    assert report.samples[0]["detail"].endswith("a carriage return alone ends no line here: end lines with LF or CRLF")


def test_quoted_newline_in_text_is_accepted(tmp_path: Path, orders: Contract) -> None:
    text = csv_text(3) + row(9, review_text='"two\nlines, and a comma"') + "\n"
    report = check(write(tmp_path, "o.csv", text), orders)
    assert report.decision == "ACCEPTED"
    assert report.rows_read == 4


# --- line length --------------------------------------------------------------------------------------------------


class EndlessLine(io.RawIOBase):
    """A 100 MB line that is generated as read: proves the validator stops early instead of buffering it."""

    def __init__(self, total: int) -> None:
        self.left = total
        self.served = 0
        self.head = (HEADER + "\n" + row(1) + ",").encode()

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        out = self.head[:n]
        self.head = self.head[n:]
        out += b"x" * (n - len(out))
        self.left -= len(out)
        self.served += len(out)
        return out


def test_100_mb_single_line_is_refused_without_buffering_it(orders: Contract) -> None:
    stream = EndlessLine(100 * 2**20)
    report = validate_stream(stream, name="o.csv", contract=orders, size=100 * 2**20, uploaded_at=UPLOADED)
    quarantined(report, "line 2 is longer than max_line_length 1.0 MiB")
    assert stream.served <= 3 * 2**20  # stopped after about one line limit plus one read chunk


def test_100_mb_header_line(tmp_path: Path, orders: Contract) -> None:
    path = tmp_path / "o.csv"
    with path.open("wb") as f:
        for _ in range(100):
            f.write(b"a" * 2**20)
    quarantined(check(path, orders), "line 1 is longer than max_line_length 1.0 MiB")


# --- cell values ----------------------------------------------------------------------------------------------


def test_formula_cells_are_flagged_not_bad(tmp_path: Path, orders: Contract) -> None:
    text = csv_text(10) + row(20, review_text="=HYPERLINK(1)") + "\n" + row(21, review_text="@SUM(A1)") + "\n"
    report = check(write(tmp_path, "o.csv", text), orders)
    assert report.decision == "ACCEPTED"
    assert report.bad_rows == 0
    assert report.flagged == {"review_text.formula": 2}


def test_formula_in_an_id_column_breaks_its_regex(tmp_path: Path, orders: Contract) -> None:
    report = check(write(tmp_path, "o.csv", csv_text(4, customer_id="=cmd|' /C calc'!A0")), orders)
    quarantined(report, "customer_id.regex: 4 rows")


def test_nan_and_infinity(tmp_path: Path, orders: Contract) -> None:
    text = HEADER + "\n" + row(1, amount="NaN") + "\n" + row(2, amount="inf") + "\n" + row(3, amount="-Infinity") + "\n"
    report = check(write(tmp_path, "o.csv", text), orders)
    quarantined(report, "amount.finite: 3 rows")
    assert report.rule_counts == {"amount.finite": 3, "amount.min": 1, "amount.max": 1}  # NaN: finite only
    assert report.bad_rows == 3


def test_future_timestamp(tmp_path: Path, orders: Contract) -> None:
    # uploaded 2026-01-01T00:00Z, tolerance 1h: 00:59:59 is fine, 01:00:01 is in the future
    rows = [row(1, order_ts="2026-01-01T00:59:59Z"), row(2, order_ts="2026-01-01T01:00:01Z")]
    text = HEADER + "\n" + "\n".join(rows) + "\n"
    report = check(write(tmp_path, "o.csv", text), orders)
    quarantined(report, "order_ts.future: 1 rows")
    assert report.samples[0]["row"] == 2


def test_absurdly_old_timestamp(tmp_path: Path, orders: Contract) -> None:
    report = check(write(tmp_path, "o.csv", csv_text(3, order_ts="1970-01-01T00:00:00Z")), orders)
    quarantined(report, "order_ts.too_old: 3 rows")


def test_unparseable_timestamp(tmp_path: Path, orders: Contract) -> None:
    report = check(write(tmp_path, "o.csv", csv_text(3, order_ts="yesterday")), orders)
    quarantined(report, "order_ts.parse: 3 rows")


def test_impossible_calendar_date(tmp_path: Path, orders: Contract) -> None:
    text = csv_text(3) + row(5, order_ts="2025-02-30T10:00:00Z") + "\n"
    report = check(write(tmp_path, "o.csv", text), orders)
    quarantined(report, "order_ts.parse: 1 rows")
    assert report.samples[0]["values"]["order_ts"] == "2025-02-30T10:00:00Z"


def test_duplicate_ids(tmp_path: Path, orders: Contract) -> None:
    text = csv_text(5) + row(2) + "\n"
    report = check(write(tmp_path, "o.csv", text), orders)
    quarantined(report, "order_id.unique: 1 rows")
    assert report.samples == [{"row": 6, "rules": ["order_id.unique"], "values": report.samples[0]["values"]}]


def test_too_many_rows(tmp_path: Path) -> None:
    report = check(write(tmp_path, "o.csv", csv_text(20)), orders_with(max_rows=5))
    quarantined(report, "file has more than max_rows 5 rows")


# --- JSON Lines ---------------------------------------------------------------------------------------------------


def json_row(i: int, **overrides: Any) -> str:
    values: dict[str, Any] = dict(zip(HEADER.split(","), row(i).split(","), strict=True))
    values.update(amount=10.5, quantity=2, returned=False)
    values.update(overrides)
    return json.dumps(values)


def test_json_nesting_20001_deep_is_refused_before_parsing(tmp_path: Path, orders: Contract) -> None:
    deep = '{"order_id": ' + "[" * 20001 + "]" * 20001 + "}"
    report = check(write(tmp_path, "o.jsonl", deep + "\n" + json_row(1) + "\n"), orders)
    quarantined(report, "nesting depth 20002 exceeds limit 32 at line 1")


def test_json_nesting_names_its_line(tmp_path: Path, orders: Contract) -> None:
    lines = [json_row(1), json_row(2), json.dumps({"order_id": "O1", "x": [[[[[[[[[[1]]]]]]]]]]})]
    contract = orders_with(max_nesting_depth=5)
    quarantined(check(write(tmp_path, "o.jsonl", "\n".join(lines) + "\n"), contract), "exceeds limit 5 at line 3")


def test_brackets_inside_json_strings_do_not_count_as_nesting(tmp_path: Path, orders: Contract) -> None:
    text = json_row(1, review_text="[" * 500 + "{" * 500) + "\n" + json_row(2) + "\n"
    report = check(write(tmp_path, "o.jsonl", text), orders)
    assert report.decision == "ACCEPTED"
    assert report.rows_read == 2


def test_json_array_instead_of_lines(tmp_path: Path, orders: Contract) -> None:
    text = "[\n" + json_row(1) + ",\n" + json_row(2) + "\n]\n"
    quarantined(check(write(tmp_path, "o.json", text), orders), "file is a JSON array; expected JSON Lines")


def test_json_broken_lines(tmp_path: Path, orders: Contract) -> None:
    text = json_row(1) + "\n" + '{"order_id": "O1",\n' + "42\n"
    report = check(write(tmp_path, "o.jsonl", text), orders)
    quarantined(report, "row.json: 2 rows")
    assert [s["row"] for s in report.samples] == [2, 3]
    assert "line 3 is a JSON int, not an object" in report.samples[1]["detail"]


def test_json_extra_key(tmp_path: Path, orders: Contract) -> None:
    text = json_row(1, coupon="X") + "\n"
    quarantined(check(write(tmp_path, "o.jsonl", text), orders), "unexpected column 'coupon'")


def test_json_list_where_a_number_belongs(tmp_path: Path, orders: Contract) -> None:
    text = json_row(1, amount=[1, 2]) + "\n" + json_row(2) + "\n"
    report = check(write(tmp_path, "o.jsonl", text), orders)
    quarantined(report, "amount.parse: 1 rows")
    assert report.samples[0]["row"] == 1


def test_json_invalid_utf8(tmp_path: Path, orders: Contract) -> None:
    data = (json_row(1) + "\n").encode().replace(b"fine", b"f\xffne")
    report = check(write(tmp_path, "o.jsonl", data), orders)
    quarantined(report, "row.json: 1 rows")
    # 177 bytes up to `"review_text": `, then the quote, the f and the byte
    assert report.samples[0]["detail"] == "line 1 is not valid UTF-8 (0xFF at byte 180): save the file as UTF-8"


# --- Parquet ------------------------------------------------------------------------------------------------------


def parquet_bytes(tmp_path: Path, n: int = 50, **columns: Any) -> bytes:
    data: dict[str, Any] = {name: [row(i).split(",")[k] for i in range(n)] for k, name in enumerate(HEADER.split(","))}
    data["amount"] = [10.5] * n
    data["quantity"] = pa.array([2] * n, pa.int32())
    data["returned"] = [False] * n
    data["order_ts"] = pa.array([datetime(2025, 5, 1, tzinfo=UTC)] * n, pa.timestamp("ms", tz="UTC"))
    data.update(columns)
    data = {k: v for k, v in data.items() if v is not None}
    path = tmp_path / "source.parquet"
    pq.write_table(pa.table(data), path, row_group_size=20)
    return path.read_bytes()


def test_parquet_baseline_is_accepted(tmp_path: Path, orders: Contract) -> None:
    report = check(write(tmp_path, "o.parquet", parquet_bytes(tmp_path)), orders)
    assert report.decision == "ACCEPTED"
    assert report.rows_read == 50


def test_parquet_footer_length_lies(tmp_path: Path, orders: Contract) -> None:
    data = bytearray(parquet_bytes(tmp_path))
    data[-8:-4] = (len(data) * 3).to_bytes(4, "little")
    quarantined(check(write(tmp_path, "o.parquet", bytes(data)), orders), "Parquet footer claims")


def test_parquet_footer_garbage(tmp_path: Path, orders: Contract) -> None:
    data = bytearray(parquet_bytes(tmp_path))
    footer = int.from_bytes(data[-8:-4], "little")
    data[-8 - footer : -8] = b"\xa5" * footer
    quarantined(check(write(tmp_path, "o.parquet", bytes(data)), orders), "Parquet footer is unreadable")


def test_parquet_truncated(tmp_path: Path, orders: Contract) -> None:
    data = parquet_bytes(tmp_path)
    quarantined(check(write(tmp_path, "o.parquet", data[:-100]), orders), "no PAR1 magic bytes at the end")


def test_parquet_name_with_csv_content(tmp_path: Path, orders: Contract) -> None:
    quarantined(check(write(tmp_path, "o.parquet", csv_text()), orders), "no PAR1 magic bytes at the start")


def test_parquet_wrong_type(tmp_path: Path, orders: Contract) -> None:
    report = check(write(tmp_path, "o.parquet", parquet_bytes(tmp_path, quantity=[2.5] * 50)), orders)
    quarantined(report, "column 'quantity' has type double, expected int")
    assert report.schema.wrong_type == [{"column": "quantity", "expected": "int", "found": "double"}]


def test_parquet_missing_column(tmp_path: Path, orders: Contract) -> None:
    report = check(write(tmp_path, "o.parquet", parquet_bytes(tmp_path, amount=None)), orders)
    quarantined(report, "missing column 'amount'")


def test_parquet_nan_and_nulls(tmp_path: Path, orders: Contract) -> None:
    amounts = [float("nan")] + [10.0] * 49
    ids = [None] + [f"O{i:08d}" for i in range(1, 50)]
    report = check(write(tmp_path, "o.parquet", parquet_bytes(tmp_path, amount=amounts, order_id=ids)), orders)
    assert report.rule_counts == {"amount.finite": 1, "order_id.required": 1}
    quarantined(report, "2.0% of rows are bad (limit 1.0%): 1 of 50")


def test_long_line_in_the_middle_of_a_chunk_is_named(tmp_path: Path) -> None:
    contract = orders_with(max_line_length=200)
    text = csv_text(5) + row(6, review_text="y" * 300) + "\n" + csv_text(5).split("\n", 1)[1]
    quarantined(check(write(tmp_path, "o.csv", text), contract), "line 7 is longer than max_line_length 200 B")
