"""`dropzone validate`: table or JSON per file, exit 0 all accepted, 1 any quarantined, 2 usage errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dropzone.cli import main

CONTRACT = str(Path(__file__).resolve().parents[2] / "contracts" / "orders.yaml")
HEADER = "order_id,customer_id,order_ts,product_id,amount,quantity,returned,review_text\n"


def good(tmp_path: Path, name: str = "good.csv") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + "O00000001,C000001,2025-01-01T00:00:00Z,P00001,5.5,2,true,nice\n")
    return path


def bad(tmp_path: Path) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "O00000001,C000001,2025-01-01T00:00:00Z,P00001,-5,2,true,nice\n")
    return path


def test_all_accepted_exits_0_with_a_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--contract", CONTRACT, str(good(tmp_path)), str(good(tmp_path, "g2.csv"))]) == 0
    out = capsys.readouterr().out
    assert "good.csv: ACCEPTED" in out
    assert "g2.csv: ACCEPTED" in out
    assert "rows 1   bad 0 (0.00%)" in out
    assert out.rstrip().endswith("2 of 2 file(s) accepted, 0 quarantined")


def test_any_quarantined_exits_1_and_shows_reasons(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--contract", CONTRACT, str(good(tmp_path)), str(bad(tmp_path))]) == 1
    out = capsys.readouterr().out
    assert "bad.csv: QUARANTINED" in out
    assert "- 100.0% of rows are bad (limit 1.0%): 1 of 1" in out
    assert "- amount.min: 1 rows (amount is below 0)" in out
    assert 'row 1: amount.min  {"amount": "-5"}' in out


def test_json_output_is_one_report_per_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--contract", CONTRACT, "--json", str(good(tmp_path)), str(bad(tmp_path))]) == 1
    reports = json.loads(capsys.readouterr().out)
    assert [(r["name"], r["decision"]) for r in reports] == [("good.csv", "ACCEPTED"), ("bad.csv", "QUARANTINED")]
    assert reports[1]["rule_counts"] == {"amount.min": 1}


def test_missing_file_exits_2_with_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--contract", CONTRACT, str(good(tmp_path)), str(tmp_path / "nope.csv")]) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == f"dropzone validate: error: no such file: {tmp_path / 'nope.csv'}"
    assert captured.out == ""  # nothing validated when the command line is wrong


def test_directory_is_not_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "--contract", CONTRACT, str(tmp_path)]) == 2
    assert f"not a file: {tmp_path}" in capsys.readouterr().err


def test_console_script_usage_error_exits_2(tmp_path: Path) -> None:
    # argparse usage errors (no FILE) come from the real entry point
    result = subprocess.run(
        [sys.executable, "-m", "dropzone.cli", "validate", "--contract", CONTRACT],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "the following arguments are required: FILE" in result.stderr
