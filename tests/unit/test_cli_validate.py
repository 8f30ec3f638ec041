"""`dropzone validate`: table or JSON per file, exit 0 all accepted, 1 any quarantined, 2 usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from dropzone.cli import main

Change = Callable[[dict[str, Any]], None]
CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
CONTRACT = str(CONTRACTS / "orders.yaml")
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


@pytest.mark.parametrize("as_json", [False, True], ids=["table", "json"])
def test_a_reader_that_stops_early_ends_the_output_quietly(tmp_path: Path, as_json: bool) -> None:
    # GIVEN stdout is a pipe nobody reads any more, as in `dropzone validate ... | head -2` once head has its lines
    read_end, write_end = os.pipe()
    os.close(read_end)
    command = [sys.executable, "-m", "dropzone.cli", "validate", "--contract", CONTRACT, str(good(tmp_path))]
    # WHEN the command writes its reports there
    try:
        result = subprocess.run(
            [*command, "--json"] if as_json else command,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
        )
    finally:
        os.close(write_end)
    # THEN it ends without a traceback, and its exit code still says what the validation found
    assert result.stderr == ""
    assert result.returncode == 0


def _contracts_in(folder: Path, *, orders: Change, references: dict[str, Change | None]) -> Path:
    """orders.yaml changed by ``orders`` and, next to it, the shipped reference contracts named in ``references``
    (each changed by its function, if any)."""
    for name, change in references.items():
        document = yaml.safe_load((CONTRACTS / f"{name}.yaml").read_text())
        if change is not None:
            change(document)
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(document, sort_keys=False))
    document = yaml.safe_load((CONTRACTS / "orders.yaml").read_text())
    orders(document)
    contract = folder / "orders.yaml"
    contract.write_text(yaml.safe_dump(document, sort_keys=False))
    return contract


def _attributes(document: dict[str, Any]) -> None:
    document["features"]["joins"][1]["attributes"] = ["segment", "nope"]


def _key_quantity(document: dict[str, Any]) -> None:
    document["features"]["joins"][0]["key"] = "quantity"


def _quantity_as_text(document: dict[str, Any]) -> None:
    document["columns"]["quantity"] = {"type": "string"}


JOIN_MISTAKES: list[tuple[str, Change, dict[str, Change | None], str]] = [
    (
        "attribute the reference lacks",
        _attributes,
        {"products": None, "customers": None},
        "features.joins[1].attributes[1]: 'nope' is not a column of customers",
    ),
    (
        "key of another type",
        _key_quantity,
        {"products": _quantity_as_text, "customers": None},
        "features.joins[0].key: quantity is int here but string in products: the join needs one type",
    ),
    (
        "only the reference at hand",
        _attributes,
        {"customers": None},
        "features.joins[1].attributes[1]: 'nope' is not a column of customers",
    ),
]


@pytest.mark.parametrize(("label", "orders", "references", "problem"), JOIN_MISTAKES, ids=[m[0] for m in JOIN_MISTAKES])
def test_joins_are_checked_against_the_reference_contracts_next_to_the_contract(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    label: str,
    orders: Change,
    references: dict[str, Change | None],
    problem: str,
) -> None:
    # GIVEN a contract whose join does not fit the reference contract in its folder
    contract = _contracts_in(tmp_path, orders=orders, references=references)
    # WHEN a file is validated against it
    code = main(["validate", "--contract", str(contract), str(good(tmp_path))])
    # THEN the contract is refused as at deploy (load_contracts), with the field at fault, and nothing is validated
    captured = capsys.readouterr()
    assert code == 2
    assert captured.err.strip() == f"dropzone validate: error: {contract}: {problem}"
    assert captured.out == ""


def test_a_reference_contract_not_in_the_folder_is_a_note_not_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN orders.yaml alone in its folder: the contracts of the datasets it joins are elsewhere
    contract = _contracts_in(tmp_path, orders=lambda document: None, references={})
    # WHEN a good file is validated against it
    code = main(["validate", "--contract", str(contract), str(good(tmp_path))])
    # THEN the file is validated, and one line on stderr says which joins were not checked
    captured = capsys.readouterr()
    assert code == 0
    assert "good.csv: ACCEPTED" in captured.out
    assert captured.err == (
        f"dropzone validate: note: {tmp_path} holds no customers.yaml, products.yaml, "
        "so the joins on customers, products were not checked\n"
    )
