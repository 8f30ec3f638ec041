"""`dropzone local` / `dropzone demo` command lines: bad input is refused with a clear message before any work."""

from __future__ import annotations

from pathlib import Path

import pytest

from dropzone.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_data_without_dataset_folders_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "loose.csv").write_text("a\n1\n")
    code = main(["local", "run", "--root", str(ROOT), "--data", str(tmp_path), "--out", str(tmp_path / "out")])
    assert code == 2
    assert "no data files" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_a_folder_without_a_contract_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "invoices").mkdir()
    (tmp_path / "invoices" / "a.csv").write_text("a\n1\n")
    assert main(["local", "run", "--root", str(ROOT), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no contract for sub-directory(ies) invoices" in err
    assert "customers, orders, products" in err


def test_a_root_without_template_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--root", str(tmp_path)]) == 2
    assert "has no template.yaml" in capsys.readouterr().err


def test_rows_must_be_positive(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["local", "run", "--root", str(ROOT), "--rows", "0"]) == 2
    assert "--rows and --files must be at least 1" in capsys.readouterr().err
