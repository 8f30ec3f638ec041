"""JSON Lines: blocks read by pyarrow's JSON reader must give the same report as the per-line path, line for line.

Each file is validated twice: as shipped (pyarrow's reader where it provably agrees) and with the fast path
switched off (every line through ``json.loads``). Small blocks mix both paths within one file.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dropzone.contract import Contract, load_contract
from dropzone.validation import validate_path, validator
from dropzone.validation.report import ValidationReport

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
UPLOADED = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def orders() -> Contract:
    return load_contract(CONTRACTS / "orders.yaml")


def obj(i: int, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "order_id": f"O{i:08d}",
        "customer_id": f"C{i % 1000:06d}",
        "order_ts": f"2025-03-{1 + i % 28:02d}T10:00:00Z",
        "product_id": f"P{i % 100:05d}",
        "amount": 10.5 + i % 7,
        "quantity": 1 + i % 3,
        "returned": i % 2 == 0,
        "review_text": None if i % 5 else "fine",
    }
    values.update(overrides)
    return values


def line(i: int, **overrides: Any) -> str:
    return json.dumps(obj(i, **overrides))


def raw(i: int, **tokens: str) -> str:
    """A line with each of ``tokens`` written as is (a JSON number as long as a test needs)."""
    text = line(i, **dict.fromkeys(tokens, "@@"))
    for token in tokens.values():
        text = text.replace('"@@"', token, 1)
    return text


def summary(report: ValidationReport) -> dict[str, Any]:
    d = report.to_dict()
    return {k: d[k] for k in ("decision", "reasons", "rows_read", "bad_rows", "rule_counts", "flagged", "schema")} | {
        "sample_rows": [(s["row"], s["rules"]) for s in d["samples"]]
    }


# Each case: lines around which good lines are placed; the odd line out must be judged alike by both paths.
ODD_LINES: dict[str, list[str]] = {
    "clean": [],
    "number in a string column": [line(1, customer_id=5)],
    "bool in a string column": [line(1, review_text=True)],
    "list in a string column": [line(1, review_text=["a"])],
    "3.0 in an int column": [line(1, quantity=3.0)],
    "3.5 in an int column": [line(1, quantity=3.5)],
    "text in an int column": [line(1, quantity="3")],
    "int too large": [line(1, quantity=10**20)],
    "1 in a bool column": [line(1, returned=1)],
    "text in a bool column": [line(1, returned="TRUE")],
    "int in a double column": [line(1, amount=7)],
    "huge int in a double column": [line(1, amount=10**20)],
    "NaN": ['{"order_id": "O9", "amount": NaN}'],
    "1e400": ['{"order_id": "O9", "amount": 1e400, "quantity": 1}'],
    "repeated key": ['{"order_id": "O1", "order_id": "O2", "customer_id": "C000001"}'],
    "two objects on a line": [line(1) + line(2)],
    "blank lines": ["", "   ", line(3)],
    "a blank line and two objects on a line": ["  ", line(1) + line(2)],  # as many rows as lines
    "not an object": ["42", "[1, 2]"],
    "broken": ['{"order_id": "O1",'],
    "extra keys": [line(1, coupon="X", zeta=1), line(2, alpha=2)],
    "escaped quote and key text in a value": [line(1, review_text='x"review_text')],
    "lone surrogate": ['{"order_id": "O1", "review_text": "\\ud800"}'],
    "repeated id": [line(1), line(1)],
    "bad values": [line(1, amount=-5), line(2, order_id="X1"), line(3, order_ts="2025-02-30T00:00:00Z")],
    "Infinity": ['{"order_id": "O9", "amount": Infinity, "quantity": 1}'],
    "1e2 and 1000000000000000000.0 in an int column": [
        line(1).replace('"quantity": 2', '"quantity": 1e2'),
        line(4).replace('"quantity": 2', '"quantity": 1000000000000000000.0'),
    ],
    "object in a timestamp column": [line(1, order_ts={"at": 1})],
    "number in a timestamp column": [line(1, order_ts=1735689600)],
    "something after the object": [line(1) + " x", line(2) + "]"],
    # pyarrow reads a double of any length, Spark's parser none above 1000 digits (row.json)
    "a double of 1000 digits": [raw(1, amount="0." + "0" * 999 + "1")],
    "a double of 1001 digits": [raw(1, amount="0." + "0" * 1000 + "1")],
    "a long run of digits in a text": [line(1, review_text="9" * 1200)],
}


def test_json_values_by_type_on_both_paths(tmp_path: Path, orders: Contract, monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN good lines around one odd value per line (docs/validation.md, "JSON Lines": the table of JSON types)
    odd = [
        line(1, quantity=3.0),  # a whole number: an int
        line(2, quantity=2.5),  # quantity.parse
        line(3, quantity=True),  # quantity.parse
        line(4, returned=1),  # returned.parse: 1 is a number, not true
        line(5, returned="1"),  # the text 1 is true
        line(6, customer_id=5),  # customer_id.parse
        line(7, amount="12.5"),  # a number as text
        line(8, amount=None),  # amount.required
        line(9, review_text=["a"]),  # review_text.parse
        '{"order_id": "O10", "amount": NaN}',  # not JSON: row.json
    ]
    lines = [line(i) for i in range(20, 40)] + odd + [line(i) for i in range(40, 60)]
    path = tmp_path / "o.jsonl"
    path.write_text("\n".join(lines) + "\n")
    for fast in (True, False):
        if not fast:
            monkeypatch.setattr(validator, "_jsonl_fast", lambda *args: None)
        # WHEN validated
        report = validate_path(path, orders, uploaded_at=UPLOADED)
        # THEN each odd value fails one rule, by its JSON type
        assert report.rule_counts == {
            "quantity.parse": 2,
            "returned.parse": 1,
            "customer_id.parse": 1,
            "amount.required": 1,
            "review_text.parse": 1,
            "row.json": 1,
        }
        assert sorted((s["row"], s["rules"]) for s in report.samples) == [
            (22, ["quantity.parse"]),
            (23, ["quantity.parse"]),
            (24, ["returned.parse"]),
            (26, ["customer_id.parse"]),
            (28, ["amount.required"]),
            (29, ["review_text.parse"]),
            (30, ["row.json"]),
        ]


@pytest.mark.parametrize("block", [1 << 20, 700])
@pytest.mark.parametrize("case", sorted(ODD_LINES))
def test_fast_and_per_line_paths_agree(
    tmp_path: Path, orders: Contract, monkeypatch: pytest.MonkeyPatch, case: str, block: int
) -> None:
    # GIVEN good lines with the odd lines in the middle
    lines = [line(i) for i in range(10, 60)] + ODD_LINES[case] + [line(i) for i in range(60, 90)]
    path = tmp_path / "o.jsonl"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(validator, "JSON_BLOCK", block)
    # WHEN validated with the fast path and without it
    calls: list[bool] = []
    fast = validator._jsonl_fast

    def counting(*args: Any) -> Any:
        out = fast(*args)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(validator, "_jsonl_fast", counting)
    shipped = validate_path(path, orders, uploaded_at=UPLOADED)
    monkeypatch.setattr(validator, "_jsonl_fast", lambda *args: None)
    per_line = validate_path(path, orders, uploaded_at=UPLOADED)
    # THEN the reports agree, and the fast path did take part (on the clean blocks at least)
    assert summary(shipped) == summary(per_line)
    if block < 1000 or case == "clean":  # one 1 MiB block holds the odd lines, and goes the per-line way
        assert any(calls)
    if case == "clean":
        assert all(calls)
        assert shipped.decision == "ACCEPTED"


def test_key_missing_from_every_line_is_still_reported(tmp_path: Path, orders: Contract) -> None:
    # an all-null column cannot tell null from a missing key: the block goes the per-line way, which can
    lines = [json.dumps({k: v for k, v in obj(i).items() if k != "review_text"}) for i in range(20)]
    path = tmp_path / "o.jsonl"
    path.write_text("\n".join(lines) + "\n")
    report = validate_path(path, orders, uploaded_at=UPLOADED)
    assert report.schema is not None
    assert report.schema.missing == ["review_text"]
    with_nulls = tmp_path / "n.jsonl"
    with_nulls.write_text("\n".join(line(i, review_text=None) for i in range(20)) + "\n")
    assert validate_path(with_nulls, orders, uploaded_at=UPLOADED).decision == "ACCEPTED"


def test_a_lone_surrogate_escape_is_a_bad_row_named_with_its_line(tmp_path: Path, orders: Contract) -> None:
    # GIVEN an escaped emoji cut in half (as a UTF-16 producer truncating a string leaves it) among 200 good lines
    lines = [line(i) for i in range(1, 201)]
    lines.insert(3, '{"order_id": "O9", "review_text": "cut \\ud83d"}')
    path = tmp_path / "o.jsonl"
    path.write_text("\n".join(lines) + "\n")
    # WHEN validated THEN that line is a bad row naming the escape (not invalid UTF-8: its bytes are ASCII); the
    # others are read, and one bad row in 201 is within the contract's 1%
    report = validate_path(path, orders, uploaded_at=UPLOADED)
    assert (report.decision, report.rows_read, report.bad_rows) == ("ACCEPTED", 201, 1)
    assert report.rule_counts == {"row.json": 1}
    assert report.samples == [
        {
            "row": 4,
            "rules": ["row.json"],
            "detail": "line 4 has an escape of half a UTF-16 surrogate pair (\\ud83d alone), which is no text: write"
            " the character whole",
        }
    ]


def test_a_sampled_number_shows_its_value_as_written(tmp_path: Path, orders: Contract) -> None:
    # GIVEN int values with a fraction: one a double holds (2.5), one no double holds (its double is 5.0)
    lines = [raw(1, quantity="2.5"), raw(2, quantity="5.00000000000000000001"), raw(3, amount="1e400")]
    path = tmp_path / "o.jsonl"
    path.write_text("\n".join(lines) + "\n")
    # WHEN validated THEN each sample shows the number, or its text when a double would show another number
    report = validate_path(path, orders, uploaded_at=UPLOADED)
    values = [(s["row"], s["rules"], s["values"]["quantity"], s["values"]["amount"]) for s in report.samples]
    assert values == [
        (1, ["quantity.parse"], 2.5, 11.5),
        (2, ["quantity.parse"], "5.00000000000000000001", 12.5),
        (3, ["amount.finite", "amount.max"], 1, "1e400"),
    ]
