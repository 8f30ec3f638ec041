"""Row rules derived from contracts, and their pyarrow compilation: the semantics the rules module documents."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from dropzone.contract import Contract, load_contract, parse_contract
from dropzone.rules import RowRule, row_rules
from dropzone.validation.compiler import failure_mask, parse_text, typed_values

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"


@pytest.fixture(scope="module")
def orders() -> Contract:
    return load_contract(CONTRACTS / "orders.yaml")


def one_column(spec: dict[str, Any], timestamp: bool = False) -> Contract:
    columns: dict[str, Any] = {"id": {"type": "string", "required": True}, "x": spec}
    document: dict[str, Any] = {"dataset": "t", "entity": "id", "columns": columns}
    if timestamp:
        document["timestamp"] = "x"
        document["limits"] = {"earliest_timestamp": "2000-01-01T00:00:00Z", "future_tolerance": "1h"}
    return parse_contract(document, "t.yaml")


def failures(contract: Contract, values: list[Any], uploaded_at: datetime | None = None) -> list[list[str]]:
    """For each value of column x: the names of the rules that fail on it."""
    column = contract.column("x")
    rules = [r for r in row_rules(contract, uploaded_at) if r.column == "x"]
    raw = (
        pa.array(values, type=pa.string()) if all(v is None or isinstance(v, str) for v in values) else pa.array(values)
    )
    typed, parse_failed = typed_values(raw, column.type)
    masks = {r.name: failure_mask(r, column, raw, typed, parse_failed).to_pylist() for r in rules}
    return [[name for name, mask in masks.items() if mask[i]] for i in range(len(values))]


def test_orders_rules_have_stable_names_and_flags(orders: Contract) -> None:
    rules = row_rules(orders, datetime(2026, 1, 1, tzinfo=UTC))
    names = {r.name for r in rules}
    assert {"order_id.required", "order_id.regex", "order_ts.parse", "order_ts.too_old", "order_ts.future"} <= names
    assert {"amount.finite", "amount.min", "amount.max", "quantity.parse", "returned.parse"} <= names
    assert "review_text.max_length" in names
    assert [r.name for r in rules if not r.blocking] == ["review_text.formula"]  # id columns have a regex instead
    assert "returned.required" not in names


def test_future_bound_is_upload_time_plus_tolerance(orders: Contract) -> None:
    uploaded = datetime(2026, 3, 1, 12, tzinfo=UTC)
    future = next(r for r in row_rules(orders, uploaded) if r.kind == "future")
    assert future == RowRule("order_ts.future", "order_ts", "future", datetime(2026, 3, 1, 13, tzinfo=UTC))
    too_old = next(r for r in row_rules(orders, uploaded) if r.kind == "too_old")
    assert too_old.value == datetime(2000, 1, 1, tzinfo=UTC)


def test_null_is_fine_unless_required() -> None:
    optional = one_column({"type": "double", "min": 0, "max": 1})
    required = one_column({"type": "double", "min": 0, "max": 1, "required": True})
    assert failures(optional, [None]) == [[]]
    assert failures(required, [None]) == [["x.required"]]


def test_min_and_max_are_inclusive_and_nan_only_fails_finite() -> None:
    c = one_column({"type": "double", "min": 0, "max": 100000})
    values = ["0", "100000", "-0.01", "100000.5", "nan", "1e3"]
    assert failures(c, values) == [[], [], ["x.min"], ["x.max"], ["x.finite"], []]


def test_int_text_forms() -> None:
    c = one_column({"type": "int", "min": 1})
    values = ["5", "+7", "-3", "1.0", " 5", "12345678901234567890", "0x10"]
    assert failures(c, values) == [[], [], ["x.min"], ["x.parse"], ["x.parse"], ["x.parse"], ["x.parse"]]


def test_bool_text_forms() -> None:
    typed, failed = parse_text(pa.array(["true", "FALSE", "1", "0", "yes", None]), "bool")
    assert typed.to_pylist() == [True, False, True, False, None, None]
    assert failed.to_pylist() == [False, False, False, False, True, False]


def test_timestamp_forms_and_zones() -> None:
    values = [
        "2025-06-06T18:27:59Z",
        "2025-06-06 18:27:59",
        "2025-06-06T18:27:59.123+02:00",
        "2025-06-06T18:27:59-0130",
        "2025-06-06",
        "2025-02-29T00:00:00Z",
        "06/06/2025 18:27",
    ]
    typed, failed = parse_text(pa.array(values), "timestamp")
    utc = UTC
    assert typed.to_pylist()[:4] == [
        datetime(2025, 6, 6, 18, 27, 59, tzinfo=utc),
        datetime(2025, 6, 6, 18, 27, 59, tzinfo=utc),  # no zone means UTC
        datetime(2025, 6, 6, 16, 27, 59, 123000, tzinfo=utc),
        datetime(2025, 6, 6, 19, 57, 59, tzinfo=utc),
    ]
    assert failed.to_pylist() == [False, False, False, False, True, True, True]


def test_timestamp_bounds() -> None:
    c = one_column({"type": "timestamp"}, timestamp=True)
    uploaded = datetime(2026, 1, 1, tzinfo=UTC)
    values = ["1999-12-31T23:59:59Z", "2000-01-01T00:00:00Z", "2026-01-01T01:00:00Z", "2026-01-01T01:00:01Z"]
    assert failures(c, values, uploaded) == [["x.too_old"], [], [], ["x.future"]]


def test_date_column_parses_real_dates_only() -> None:
    c = one_column({"type": "date"})
    assert failures(c, ["2024-02-29", "2023-02-29", "2024-13-01", "2024-1-1"]) == [
        [],
        ["x.parse"],
        ["x.parse"],
        ["x.parse"],
    ]


def test_regex_is_a_search_unless_anchored() -> None:
    loose = one_column({"type": "string", "regex": "ab"})
    anchored = one_column({"type": "string", "regex": "^ab$"})
    assert failures(loose, ["xaby", "ba"]) == [[], ["x.regex"]]
    assert failures(anchored, ["xaby", "ab"]) == [["x.regex"], []]


def test_max_length_counts_characters_not_bytes() -> None:
    c = one_column({"type": "string", "max_length": 3})
    assert failures(c, ["ééé", "éééé"]) == [[], ["x.max_length"]]


def test_allowed_values_are_exact() -> None:
    c = one_column({"type": "string", "allowed": ["home", "books"]})
    assert failures(c, ["home", "Home", "books "]) == [[], ["x.allowed"], ["x.allowed"]]


def test_formula_prefixes_are_flagged() -> None:
    c = one_column({"type": "string"})
    values = ["=1+1", "+1 great", "-dash", "@SUM(A1)", "a=b", "ok"]
    assert failures(c, values) == [["x.formula"]] * 4 + [[], []]


def test_typed_parquet_values_are_checked_like_text() -> None:
    c = one_column({"type": "int", "min": 1, "max": 10})
    assert failures(c, [1, 11, None, 0]) == [[], ["x.max"], [], ["x.min"]]


def test_naive_typed_timestamps_are_utc() -> None:
    naive = pa.array([datetime(2025, 1, 1, 12)], pa.timestamp("ms"))
    typed, failed = typed_values(naive, "timestamp")
    assert typed.to_pylist() == [datetime(2025, 1, 1, 12, tzinfo=UTC)]
    assert failed.to_pylist() == [False]
    assert typed.type == pa.timestamp("us", tz="UTC")
    assert timedelta(0) == typed.to_pylist()[0].utcoffset()
