"""`dropzone local run` inputs: the output folder a run may use, and the producer files it uploads."""

from __future__ import annotations

from pathlib import Path

import pytest

from dropzone.contract import load_contracts
from dropzone.local.producer import producer_files
from dropzone.local.run import MARKER, prepare_out_dir

ROOT = Path(__file__).resolve().parents[2]


def _earlier_run(out: Path) -> None:
    """An output folder as a finished run leaves it (the marker, work/, generated data/, report.html)."""
    (out / "work" / "s3" / "bucket" / "curated" / "orders").mkdir(parents=True)
    (out / "work" / "s3" / "bucket" / "curated" / "orders" / "part-0.parquet").write_bytes(b"PAR1")
    (out / "data" / "orders").mkdir(parents=True)
    (out / "data" / "orders" / "orders-001.csv").write_text("order_id\nO1\n")
    (out / "report.html").write_text("<html></html>")
    (out / MARKER).write_text("{}\n")


def test_a_missing_folder_is_created_and_marked(tmp_path: Path) -> None:
    out = tmp_path / "a" / "b"
    prepare_out_dir(out, None, progress=lambda _: None)
    assert sorted(p.name for p in out.iterdir()) == [MARKER]


def test_a_folder_with_other_files_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    (tmp_path / "thesis.tex").write_text("mine")
    with pytest.raises(ValueError, match="not empty and not the output of an earlier run"):
        prepare_out_dir(tmp_path, None, progress=lambda _: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["thesis.tex"]
    assert (tmp_path / "thesis.tex").read_text() == "mine"


def test_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match="a file, not a folder"):
        prepare_out_dir(tmp_path / "f", None, progress=lambda _: None)


def test_an_earlier_run_is_replaced_and_nothing_else_is_touched(tmp_path: Path) -> None:
    _earlier_run(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    said: list[str] = []
    prepare_out_dir(tmp_path, None, progress=said.append)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([MARKER, "notes.txt"])
    assert said == [f"out      | {tmp_path}: the earlier run's outputs removed"]


def test_the_earlier_runs_data_given_back_as_data_is_kept(tmp_path: Path) -> None:
    _earlier_run(tmp_path)
    prepare_out_dir(tmp_path, tmp_path / "data", progress=lambda _: None)
    assert (tmp_path / "data" / "orders" / "orders-001.csv").read_text() == "order_id\nO1\n"
    assert not (tmp_path / "work").exists()
    assert not (tmp_path / "report.html").exists()


def test_data_inside_what_the_run_rewrites_is_refused(tmp_path: Path) -> None:
    _earlier_run(tmp_path)
    with pytest.raises(ValueError, match="inside --out"):
        prepare_out_dir(tmp_path, tmp_path / "work" / "s3", progress=lambda _: None)
    assert (tmp_path / "work" / "s3" / "bucket" / "curated" / "orders" / "part-0.parquet").exists()


def test_every_visible_file_of_a_dataset_folder_is_uploaded(tmp_path: Path) -> None:
    """As a producer's sync would: a name the contract cannot read is quarantined by the ingest with its reason,
    not left out here (`.json` and `.ndjson` were skipped without a word before)."""
    names = ["a.csv", "b.json", "c.ndjson.gz", "d.parquet", "e.jsonl", "notes.txt", "sub/f.csv.gz"]
    for name in [*names, ".DS_Store", ".git/config"]:
        path = tmp_path / "orders" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    (tmp_path / "products").mkdir()
    (tmp_path / "products" / "products.csv").write_text("x")
    found = producer_files(tmp_path, load_contracts(ROOT / "contracts"))
    assert [(d, p.relative_to(tmp_path / d).as_posix()) for d, p in found] == [
        ("products", "products.csv"),
        *[("orders", n) for n in names],
    ]


def test_dataset_folders_with_only_hidden_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "orders").mkdir()
    (tmp_path / "orders" / ".DS_Store").write_text("x")
    with pytest.raises(ValueError, match="no data files under <dataset>/ folders"):
        producer_files(tmp_path, load_contracts(ROOT / "contracts"))
