"""`dropzone local run`: the output folder a run may use, the producer files it uploads, its summary of runs."""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from moto import mock_aws

from dropzone.cli import main
from dropzone.contract import FORMATS, load_contracts
from dropzone.local.producer import bad_file, producer_files
from dropzone.local.report import _roc, summary_lines
from dropzone.local.run import MARKER, RunResult, _feature_runs, prepare_out_dir
from dropzone.local.runtime import Clock
from dropzone.validation import validate_path

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


def test_a_link_among_the_earlier_outputs_is_removed_and_what_it_points_to_is_kept(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _earlier_run(out)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.csv").write_text("a\n1\n")
    shutil.rmtree(out / "work")
    (out / "work").symlink_to(mine, target_is_directory=True)
    prepare_out_dir(out, None, progress=lambda _: None)
    assert sorted(p.name for p in out.iterdir()) == [MARKER]
    assert (mine / "keep.csv").read_text() == "a\n1\n"


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


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_deliberate_bad_file_is_refused_for_its_missing_column_in_any_format_the_contract_takes(
    tmp_path: Path, fmt: str
) -> None:
    """It was always a .csv: for a contract that takes only csv.gz it was refused for its format instead."""
    orders = replace(load_contracts(ROOT / "contracts")["orders"], formats=(fmt,))
    name, body, missing = bad_file(orders)
    assert (name, missing) == (f"bad-missing-order_id.{fmt}", "order_id")
    path = tmp_path / name
    path.write_bytes(body)
    report = validate_path(path, orders)
    assert report.decision == "QUARANTINED"
    assert report.reasons[0] == "missing column 'order_id'"


def test_dataset_folders_with_only_hidden_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "orders").mkdir()
    (tmp_path / "orders" / ".DS_Store").write_text("x")
    with pytest.raises(ValueError, match="no data files under <dataset>/ folders"):
        producer_files(tmp_path, load_contracts(ROOT / "contracts"))


def _orders_manifest(run_id: str, started_at: str, score_rows: int) -> dict[str, Any]:
    manifest = {"dataset": "orders", "run_id": run_id, "started_at": started_at, "kind": "features"}
    counts = {"score_rows": score_rows, "validation_rows": 2, "train_rows": 7}  # not in the summary's order
    return manifest | {"features": [{"name": "x"}] * 3, "row_counts": counts}


def test_the_summary_lists_every_feature_run_in_the_order_they_started() -> None:
    """The ledger lists runs by job run id (random), not by time: the summary must not take the last one listed as the
    latest, and a reference dataset's run says what it curated instead of "0 feature columns"."""
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="runs")
        manifests = {
            "RUN#a-late": _orders_manifest("22222222-1", "2026-11-28T10:05:00+00:00", 12)
            | {
                "curated": {"rows_written": 12, "rows_read": 15, "bad_rows": 2, "duplicate_rows": 1},
                "label": {"name": "active_next_30d", "kind": "active_in_horizon", "positive_fraction": 0.3125},
            },
            "RUN#b-ref": {
                "dataset": "customers",
                "run_id": "00000000-1",
                "started_at": "2026-11-28T10:00:00+00:00",
                "kind": "curate_only",
                "features": [],
                "curated": {"rows_written": 50, "rows_read": 51, "bad_rows": 1, "duplicate_rows": 0},
            },
            "RUN#c-early": _orders_manifest("11111111-1", "2026-11-28T10:01:00+00:00", 10)
            | {"label": {"name": "spend_next_30d", "kind": "sum_in_horizon", "mean": 12.5}},
        }
        ledger: dict[str, list[dict[str, Any]]] = {"orders": [], "customers": []}
        for sk, m in manifests.items():
            s3.put_object(Bucket="runs", Key=f"features/{sk}/_manifest.json", Body=json.dumps(m).encode())
            ledger[m["dataset"]].append({"sk": sk, "state": "SUCCESS", "features_uri": f"s3://runs/features/{sk}/"})
        ledger["orders"].append({"sk": "RUN#d-failed", "state": "FAILED", "features_uri": "s3://runs/features/d/"})
        local = SimpleNamespace(aws=SimpleNamespace(client=lambda name: s3))
        result = SimpleNamespace(ledger=ledger)
        runs = _feature_runs(local, result)  # type: ignore[arg-type]
    assert [m["run_id"] for m in runs] == ["00000000-1", "11111111-1", "22222222-1"]
    shown = [line for line in summary_lines(_result(runs)) if line.startswith(("  features", "  curated"))]
    assert shown == [
        "  curated  | customers: 50 rows of 51 read (1 bad, 0 duplicate)",
        "  features | orders run=11111111…: 3 feature columns; rows: 7 train, 2 validation, 10 score; "
        "label spend_next_30d: mean 12.5",
        "  curated  | orders: 12 rows of 15 read (2 bad, 1 duplicate)",
        "  features | orders run=22222222…: 3 feature columns; rows: 7 train, 2 validation, 12 score; "
        "label active_next_30d: 31.2% positive",
    ]


def test_a_run_s_cost_line_names_the_memory_it_was_billed_for_too() -> None:
    """The cost is vCPU-hours and memory GB-hours at their prices: the line showed the vCPU-hours alone beside the
    total, as if they cost it all."""
    run = SimpleNamespace(
        job_run_id="00r1",
        name="n",
        state="SUCCESS",
        seconds=12.0,
        details="",
        billed={"vCPUHour": 1.0, "memoryGBHour": 4.0, "storageGBHour": 0.0},
    )
    lines = summary_lines(replace(_result([]), emr_runs=[run]))  # type: ignore[list-item]
    # ARM64 us-east-1: 1 x $0.042094 + 4 x $0.004628 = $0.060606
    assert (
        "  run      | 00r1 SUCCESS in 12.0s, billed 1.000 vCPU-h + 4.000 GB-h = $0.0606 at list price (ARM64 us-east-1)"
        in lines
    )


def _result(feature_runs: list[dict[str, Any]], notifications: list[dict[str, Any]] | None = None) -> RunResult:
    return RunResult(
        out_dir=Path("."),
        endpoint_url="",
        data_bucket="b",
        uploads=[],
        bad_key=None,
        duplicated_key=None,
        ledger={},
        clock=Clock(),
        pipeline_seconds=0.0,
        emr_runs=[],
        training_jobs=[],
        model_packages={},
        notifications=notifications or [],
        deliveries={},
        feature_runs=feature_runs,
    )


def test_a_notification_is_summarised_whole_not_cut_like_its_sns_subject() -> None:
    summary = "orders model Rejected: validation auc is unavailable (e.g. one class only in the validation channel)"
    note = {"subject": f"dropzone: {summary}"[:96] + "...", "message": json.dumps({"kind": "k", "summary": summary})}
    lines = summary_lines(_result([], notifications=[note]))
    assert f"  notified | dropzone: {summary}" in lines


def test_the_report_draws_no_roc_curve_for_a_validation_channel_of_one_class(tmp_path: Path) -> None:
    """A tiny run can validate on one class only: no ROC exists (sklearn warned and drew a meaningless one)."""
    import pandas as pd
    import xgboost as xgb

    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "train.py").write_text((ROOT / "training" / "train.py").read_text())
    train = pd.DataFrame({"x": [float(i) for i in range(20)], "y": [i % 2 for i in range(20)]})
    for channel, frame in {"train": train, "validation": train.assign(y=0)}.items():
        (tmp_path / "input" / "data" / channel).mkdir(parents=True)
        frame.to_parquet(tmp_path / "input" / "data" / channel / "part-0.parquet")
    booster = xgb.train({"objective": "binary:logistic"}, xgb.DMatrix(train[["x"]], label=train["y"]), 2)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "xgboost-model").write_bytes(booster.save_raw("ubj"))
    document = {"task": "classification", "features": ["x"], "label": "y", "best_iteration": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # sklearn's UndefinedMetricWarning would fail the test
        assert _roc(tmp_path, document) is None
    (tmp_path / "input" / "data" / "validation" / "part-0.parquet").unlink()
    train.to_parquet(tmp_path / "input" / "data" / "validation" / "part-0.parquet")
    curve = _roc(tmp_path, document)
    assert curve is not None
    assert len(curve[0]) == len(curve[1]) >= 2


def test_local_up_reuses_only_its_own_earlier_working_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # an earlier `local up` folder: every entry is the runtime's own, all removed
    (tmp_path / "up" / "s3" / "bucket").mkdir(parents=True)
    (tmp_path / "up" / "sample" / "orders").mkdir(parents=True)
    (tmp_path / "up" / MARKER).write_text("{}\n")
    prepare_out_dir(tmp_path / "up", None, progress=lambda _: None, outputs=None)
    assert sorted(p.name for p in (tmp_path / "up").iterdir()) == [MARKER]
    # any other folder is refused before anything starts
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    assert main(["local", "up", "--root", str(ROOT), "--out", str(tmp_path / "mine")]) == 2
    assert "not empty and not the output of an earlier run" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["local", "run", "--rows", "100"], "local run"),
        (["demo", "--rows", "100"], "demo"),
        (["local", "up"], "local up"),
    ],
    ids=["local run", "demo", "local up"],
)
@pytest.mark.parametrize("where", ["under a file", "in /proc"])
def test_an_out_folder_that_cannot_be_created_is_one_line_naming_it(
    argv: list[str], command: str, where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file.csv").write_text("a,b\n")
    out = tmp_path / "file.csv" / "run" if where == "under a file" else Path("/proc/dropzone-no-such-folder")
    reason = "Not a directory" if where == "under a file" else "No such file or directory"
    assert main([*argv, "--root", str(ROOT), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"dropzone {command}: error: --out {out}: cannot write there: {reason}")
    assert err.count("\n") == 1  # one line, no traceback
    assert (tmp_path / "file.csv").read_text() == "a,b\n"


def test_a_run_with_no_dataset_to_train_on_says_so() -> None:
    """Only reference contracts (--contracts with products.yaml alone): exit 1 as documented, and the summary says
    why no model was registered."""
    why = (
        "  training | none: no dataset with a label in the contracts (only reference data): nothing to train, "
        "no model to register"
    )
    assert why in summary_lines(replace(_result([]), trainable=[]))
    assert why not in summary_lines(replace(_result([]), trainable=["orders"]))


def test_a_run_without_files_of_the_labelled_dataset_says_so() -> None:
    """--data with products/ and customers/ but no orders/: exit 1, and the summary said only "no model registered"."""
    why = "  training | orders: none started: no orders file was uploaded (no orders/ folder with files under --data)"
    assert why in summary_lines(replace(_result([]), trainable=["orders"], ledger={"products": [{"sk": "FILE#x"}]}))
    with_files = {"orders": [{"sk": "FILE#a"}]}
    assert why not in summary_lines(replace(_result([]), trainable=["orders"], ledger=with_files))
