"""Reasons a producer reads first: the names a file may have, and a wrong CSV delimiter before what it causes."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dropzone.contract import FILE_SUFFIXES, FORMATS, Contract, load_contract
from dropzone.validation import validate_path
from dropzone.validation.report import ValidationReport

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
HEADER = "order_id,customer_id,order_ts,product_id,amount,quantity,returned,review_text"
ROW = "O00000001,C000001,2025-01-01T00:00:00Z,P00001,5.5,2,true,nice"


@pytest.fixture(scope="module")
def orders() -> Contract:
    return load_contract(CONTRACTS / "orders.yaml")


def test_an_unsupported_name_is_told_every_name_that_is_read(tmp_path: Path, orders: Contract) -> None:
    # GIVEN a file whose name says no format
    path = tmp_path / "o.xlsx"
    path.write_text(HEADER + "\n" + ROW + "\n")
    # WHEN it is validated
    report = validate_path(path, orders)
    # THEN the reason lists every suffix the validator reads, .ndjson and the .gz of .json and .ndjson included
    assert report.reasons == [
        "unsupported file name 'o.xlsx': expected .csv, .csv.gz, .json, .json.gz, .jsonl, .jsonl.gz, .ndjson, "
        ".ndjson.gz or .parquet"
    ]
    assert {fmt for _, fmt in FILE_SUFFIXES} == set(FORMATS)  # each suffix names a format a contract can take


def test_a_semicolon_delimited_csv_is_told_so_first(tmp_path: Path, orders: Contract) -> None:
    # GIVEN a CSV written with semicolons (a spreadsheet export in many locales)
    path = tmp_path / "o.csv"
    path.write_text((HEADER + "\n" + ROW + "\n").replace(",", ";"))
    # WHEN it is validated
    report = validate_path(path, orders)
    # THEN the delimiter comes first, then the missing and unexpected columns it causes
    assert report.decision == "QUARANTINED"
    assert report.reasons[0] == "the header has one column: the file looks semicolon-delimited; expected commas"
    assert report.reasons[1:] == [
        *(f"missing column {name!r}" for name in orders.column_names),
        f"unexpected column {HEADER.replace(',', ';')!r}",
    ]


def _order(i: int, **overrides: Any) -> str:
    values: dict[str, Any] = {
        "order_id": f"O{i:08d}",
        "customer_id": "C000001",
        "order_ts": "2025-01-01T00:00:00Z",
        "product_id": "P00001",
        "amount": 5.5,
        "quantity": 2,
        "returned": True,
        "review_text": "nice",
    }
    return json.dumps(values | overrides)


def _jsonl(tmp_path: Path, lines: list[str]) -> ValidationReport:
    path = tmp_path / "o.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return validate_path(path, load_contract(CONTRACTS / "orders.yaml"), uploaded_at=datetime(2026, 1, 1, tzinfo=UTC))


def test_a_json_value_of_the_wrong_type_is_one_parse_failure_told_what_it_got(tmp_path: Path) -> None:
    # GIVEN a bool and a list where an int belongs, and a number where a string belongs
    lines = [_order(1), _order(2, quantity=True), _order(3, quantity=["a", 1]), _order(4, customer_id=17)]
    # WHEN validated
    report = _jsonl(tmp_path, lines)
    # THEN each is one parse failure of its column (not "missing" too), described by the JSON types it got
    assert report.rule_counts == {"quantity.parse": 2, "customer_id.parse": 1}
    assert report.bad_rows == 3
    assert "quantity.parse: 2 rows (quantity expected an int, got a bool or an array)" in report.reasons
    assert "customer_id.parse: 1 rows (customer_id expected a string, got a number)" in report.reasons
    # and the samples show the values as they were in the file
    samples = {s["row"]: s for s in report.samples}
    assert samples[2]["rules"] == ["quantity.parse"]
    assert samples[2]["values"]["quantity"] is True
    assert samples[3]["values"]["quantity"] == '["a", 1]'
    assert samples[4]["rules"] == ["customer_id.parse"]
    assert samples[4]["values"]["customer_id"] == 17


def test_values_in_a_spreadsheet_s_local_forms_are_told_the_form_expected(tmp_path: Path, orders: Contract) -> None:
    # GIVEN a day-first date and time, a decimal comma and "yes" for a bool, as a spreadsheet exports them
    path = tmp_path / "o.csv"
    path.write_text(HEADER + "\n" + 'O00000001,C000001,01/03/2025 10:00,P00001,"5,5",2,yes,nice' + "\n")
    # WHEN it is validated THEN each reason names the form the column takes
    report = validate_path(path, orders)
    assert report.reasons[1:] == [
        "order_ts.parse: 1 rows (order_ts is not a valid timestamp: expected ISO 8601 such as 2025-03-01T10:00:00Z or"
        " 2025-03-01 10:00:00+01:00)",
        "amount.parse: 1 rows (amount is not a valid double: expected a plain number such as 10.5 or 1e3, without"
        " thousands separators, currency signs or decimal commas)",
        "returned.parse: 1 rows (returned is not a valid bool: expected true, false, 1 or 0)",
    ]


def test_a_value_outside_a_short_allowed_list_is_told_the_list(tmp_path: Path) -> None:
    customers = load_contract(CONTRACTS / "customers.yaml")
    header = ",".join(customers.column_names)
    values = {"customer_id": "C000001", "segment": "enterprise", "region": "north"}
    path = tmp_path / "c.csv"
    path.write_text(header + "\n" + ",".join(values.get(c, "") for c in customers.column_names) + "\n")
    report = validate_path(path, customers)
    assert "segment.allowed: 1 rows (segment is not one of consumer, small_business, corporate)" in report.reasons


def test_rows_no_parser_read_are_told_by_their_first_one_without_its_text(tmp_path: Path, orders: Contract) -> None:
    # GIVEN a CSV row cut short, and JSON Lines written in Latin-1 (reasons reach notifications: no row values)
    short = tmp_path / "o.csv"
    short.write_text(HEADER + "\n" + ROW + "\n" + "O00000002,C000001\n")
    latin = tmp_path / "o.jsonl"
    latin.write_bytes((_order(1) + "\n").replace("nice", "tr\u00e8s").encode("latin-1") + (_order(2) + "\n").encode())
    # THEN the reason says what the first one is
    assert (
        "row.columns: 1 rows (row has the wrong number of fields; the first: data row 2, expected 8 fields, got 2)"
        in validate_path(short, orders).reasons
    )
    assert (
        "row.json: 1 rows (line is not one readable JSON object; the first: line 1 is not valid UTF-8 (0xE8 at byte"
        " 179): save the file as UTF-8)" in validate_path(latin, orders).reasons
    )


def test_a_number_that_is_not_whole_in_an_int_column_shows_its_value(tmp_path: Path) -> None:
    # GIVEN 2.5 where an int belongs (3.0 is an int)
    report = _jsonl(tmp_path, [_order(1, quantity=3.0), _order(2, quantity=2.5), _order(3)])
    # THEN: one parse failure, no "missing", and the sample shows 2.5, not null
    assert report.rule_counts == {"quantity.parse": 1}
    assert (
        "quantity.parse: 1 rows (quantity is not a valid int: expected a whole number such as 42, within 64 bits)"
        in report.reasons
    )
    assert report.samples == [{"row": 2, "rules": ["quantity.parse"], "values": json.loads(_order(2, quantity=2.5))}]


def test_bad_text_and_wrong_json_types_in_one_column_are_told_apart(tmp_path: Path) -> None:
    # GIVEN text that is no int, and an object, in the int column
    report = _jsonl(tmp_path, [_order(1, quantity="x"), _order(2, quantity="y"), _order(3, quantity={"n": 1})])
    # THEN the reason says both
    assert report.rule_counts == {"quantity.parse": 3}
    assert (
        "quantity.parse: 3 rows (quantity is not a valid int: expected a whole number such as 42, within 64 bits; 1 of"
        " them: quantity expected an int, got an object)" in report.reasons
    )


def test_json_null_and_a_missing_key_are_missing(tmp_path: Path) -> None:
    lines = [_order(1, quantity=None), json.dumps({k: v for k, v in json.loads(_order(2)).items() if k != "quantity"})]
    report = _jsonl(tmp_path, [*lines, _order(3)])
    assert report.rule_counts == {"quantity.required": 2}
    assert "quantity.required: 2 rows (quantity is missing)" in report.reasons


def test_a_rule_the_validator_cannot_compile_fails_loudly_instead_of_quarantining_the_file(
    tmp_path: Path, orders: Contract, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a good file and a rule list holding a kind the pyarrow compiler does not know (a bug of ours, e.g. the
    # shared rules module newer than the compiler)
    from dropzone import rules
    from dropzone.validation import validator

    path = tmp_path / "o.csv"
    path.write_text(HEADER + "\n" + ROW + "\n")

    class Stray(rules.RowRule):
        def describe(self) -> str:
            return "is stray"

    stray = Stray("amount.stray", "amount", "stray", None, True)  # type: ignore[arg-type]
    monkeypatch.setattr(validator, "row_rules", lambda *a, **k: [*rules.row_rules(*a, **k), stray])
    # WHEN it is validated THEN the error is raised, not turned into "file cannot be read as csv" for the producer
    with pytest.raises(NotImplementedError, match="no pyarrow compiler for rule kind 'stray'"):
        validate_path(path, orders)
