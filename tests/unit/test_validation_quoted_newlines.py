"""Quoted values holding newlines, cut by the CSV reader's block boundaries, still give the file's own rows.

Arrow's reader with ``newlines_in_values=False`` cuts blocks at the last newline without tracking quotes; near
the end of a file such a cut inside a quoted value is accepted silently (the value ends at the cut, its rest
becomes an extra row) when that rest looks like a row. The validator must read these files exactly.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

import pytest

from dropzone.contract import Contract, load_contract
from dropzone.validation import validate_stream
from dropzone.validation import validator as validator_module

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
UPLOADED = datetime(2026, 6, 1, tzinfo=UTC)
HEADER = ["order_id", "customer_id", "order_ts", "product_id", "amount", "quantity", "returned", "review_text"]


def _file(rows: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    for i in range(rows):
        # every third review holds a newline followed by text that is itself a valid orders row
        fake = f"O{900000 + i},C000001,2025-05-10T00:00:27Z,P00519,1.5,1,false,"
        review = f"line a\n{fake}" if i % 3 == 0 else f"plain {i}"
        writer.writerow([f"O{100000 + i}", "C000002", "2025-05-10T00:01:23Z", "P00519", "11.9", "1", "true", review])
    return out.getvalue().encode()


@pytest.mark.parametrize("block", [256, 333, 512, 777, 1024])
def test_rows_are_the_files_rows_whatever_the_block_cuts(block: int, monkeypatch: pytest.MonkeyPatch) -> None:
    orders: Contract = load_contract(CONTRACTS / "orders.yaml")
    data = _file(300)
    monkeypatch.setattr(validator_module, "CSV_BLOCK", block)
    # WHEN validated in blocks small enough to cut inside quoted values
    report = validate_stream(io.BytesIO(data), name="o.csv", contract=orders, size=len(data), uploaded_at=UPLOADED)
    # THEN every row is read as written: 300 rows, none bad, no repeated id from a fake row
    assert (report.rows_read, report.bad_rows, report.decision) == (300, 0, "ACCEPTED")
    assert report.rule_counts.get("order_id.unique", 0) == 0


def test_bad_and_invalid_rows_carry_their_data_row_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    orders: Contract = load_contract(CONTRACTS / "orders.yaml")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    expected: dict[int, list[str]] = {}
    for row in range(1, 2_001):
        if row % 97 == 0:
            out.write("O1,C1\n")  # wrong field count
            expected[row] = ["row.columns"]
            continue
        amount = "-1" if row % 89 == 0 else "11.9"
        review = "two\nlines" if row % 7 == 0 else "fine"
        writer.writerow([f"O{100000 + row}", "C000002", "2025-05-10T00:01:23Z", "P00519", amount, "1", "", review])
        if row % 89 == 0:
            expected[row] = ["amount.min"]
    data = out.getvalue().encode()
    monkeypatch.setattr(validator_module, "CSV_BLOCK", 4 * 1024)
    reports = []
    for per_check in (1, 3, 8):
        # WHEN checked in small blocks, grouped in several ways, a few times over
        monkeypatch.setattr(validator_module, "CSV_BATCHES_PER_CHECK", per_check)
        for _ in range(3):
            report = validate_stream(
                io.BytesIO(data), name="o.csv", contract=orders, size=len(data), uploaded_at=UPLOADED, max_samples=100
            )
            reports.append({row["row"]: row["rules"] for row in report.samples})
    # THEN every sample names its own data row (quoted newlines do not shift them) and every report is the same
    assert reports[0] == expected
    assert all(r == reports[0] for r in reports)
