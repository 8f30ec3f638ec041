"""Reasons a producer reads first: the names a file may have, and a wrong CSV delimiter before what it causes."""

from __future__ import annotations

from pathlib import Path

import pytest

from dropzone.contract import FILE_SUFFIXES, FORMATS, Contract, load_contract
from dropzone.validation import validate_path

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
