"""The whole pipeline of template.yaml on the embedded runtime: the default way dropzone runs, end to end."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pytest
from pyarrow import csv as pacsv

from dropzone.generate import generate
from dropzone.local.producer import producer_files, upload
from dropzone.local.report import summary_lines, write_report
from dropzone.local.run import RunOptions, RunResult, read_notifications, run_pipeline, subscribe_notifications
from dropzone.local.runtime import LocalStack, Pipeline, ledger_items
from dropzone.local.server import embedded_aws

ROOT = Path(__file__).resolve().parents[2]
ROWS = 4000

pytestmark = [pytest.mark.slow, pytest.mark.spark]


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, list[str]]:
    out = tmp_path_factory.mktemp("local-run")
    lines: list[str] = []
    # 6 order files: fewer than the contract's min_files (10), so the run ends by flushing the waiting files
    run = run_pipeline(RunOptions(root=ROOT, out_dir=out, rows=ROWS, files=6), progress=lines.append)
    (out / "progress.txt").write_text("\n".join(lines))
    return run, lines


@pytest.fixture(scope="module")
def result(local_run: tuple[RunResult, list[str]]) -> RunResult:
    return local_run[0]


def _files(result: RunResult) -> dict[str, dict]:
    return {str(i["key"]): i for items in result.ledger.values() for i in items if str(i["sk"]).startswith("FILE#")}


def test_the_pipeline_ends_with_a_registered_model_that_beats_the_baseline(result: RunResult) -> None:
    assert [r.state for r in result.emr_runs] == ["SUCCESS"] * len(result.emr_runs)
    assert result.training_jobs, "no training job ran"
    job = result.training_jobs[-1]
    assert job.status == "Completed", job.failure_reason
    assert job.metrics["validation:auc"] > job.metrics["baseline:auc"]
    statuses = [p["status"] for p in result.model_packages["dropzone-orders"]]
    assert statuses == ["Approved"]


def test_the_local_driver_writes_no_checksum_files(result: RunResult) -> None:
    """The local driver writes through a raw local file system (dropzone.local.localfs): no .crc file beside each
    Parquet file, each of which would cost a chmod process of its own."""
    work = result.out_dir / "work"
    parquet = list(work.rglob("*.parquet"))
    assert any("event_date=" in str(p) for p in parquet), "the curated table was not written under the work folder"
    assert sorted(work.rglob("*.crc")) == []


def test_the_bad_file_is_quarantined_with_its_reason(result: RunResult) -> None:
    assert result.bad_key is not None
    bad = _files(result)[result.bad_key]
    assert bad["status"] == "QUARANTINED"
    assert "order_id" in json.dumps(bad.get("reasons"))
    assert f"quarantine/{result.bad_key.removeprefix('incoming/')}" in result.bucket_keys
    assert bad["report_key"] == f"reports/{result.bad_key.removeprefix('incoming/')}/{bad['version']}.json"
    assert bad["report_key"] in result.bucket_keys
    assert result.bad_key in result.bucket_keys  # the original is never deleted


def test_the_duplicated_notification_did_nothing_twice(result: RunResult) -> None:
    assert result.duplicated_key is not None
    uploads = len(result.uploads)
    # every object was notified once, one of them twice: the ingest function saw one message more than uploads
    ingest = result.deliveries["IngestFunction"]
    assert ingest.succeeded == uploads + 1 + 1  # + the duplicate + the s3:TestEvent of the notification setup
    matching = [k for k in _files(result) if k == result.duplicated_key]
    assert len(matching) == 1
    batches = [i for items in result.ledger.values() for i in items if str(i["sk"]).startswith("BATCH#")]
    in_batches = [f for b in batches for f in b.get("files") or [] if result.duplicated_key in str(f)]
    assert len(in_batches) == 1


def test_the_ledger_accounts_for_every_file(result: RunResult) -> None:
    files = _files(result)
    assert sorted(files) == sorted(u.key for u in result.uploads)
    accepted = {k for k, f in files.items() if f["status"] != "QUARANTINED"}
    assert accepted == {u.key for u in result.uploads} - {result.bad_key}
    # every accepted file, reference snapshots included, went through a successful Spark run
    assert {k: files[k]["status"] for k in accepted} == dict.fromkeys(accepted, "DONE")


def test_files_below_min_files_are_flushed_at_the_end_of_a_local_run(
    local_run: tuple[RunResult, list[str]],
) -> None:
    result, lines = local_run
    progress = "\n".join(lines)
    assert "files waiting below min_files (orders 6)" in progress
    orders_runs = [b for b in result.ledger["orders"] if str(b["sk"]).startswith("BATCH#")]
    assert len(orders_runs) == 1
    assert len(orders_runs[0]["files"]) == 6


def test_the_summary_and_report_show_the_outcome(result: RunResult) -> None:
    lines = summary_lines(result)
    text = "\n".join(lines)
    assert "registry | dropzone-orders: v1 Approved" in text
    assert "quarant. | orders: incoming/orders/bad-missing-order_id.csv" in text
    assert "cost     | EMR Serverless $" in text
    # the training job's billed time on the contract's instance (ml.m5.large), priced
    (training,) = [line for line in lines if line.startswith("  training | ")]
    bill = re.search(
        r": Completed in [0-9.]+s, billed ([0-9]+) s on 1 x ml\.m5\.large = \$(0\.[0-9]+) at list price$", training
    )
    assert bill is not None, training
    # priced at ml.m5.large's $0.115 an hour, shown to two significant digits when below a cent (not $0.0000)
    seconds, shown = int(bill[1]), bill[2]
    assert float(shown) == pytest.approx(seconds * 0.115 / 3600, rel=0.05)
    assert seconds == 0 or float(shown) > 0
    assert f"\n  cost     | SageMaker training ${shown} for 1 job(s) at list prices\n" in text
    report = write_report(result, lines)
    html = report.read_text()
    assert html.count("data:image/png;base64,") >= 3


def _young_data(data: Path) -> None:
    """Reference data and 2 order files holding only the last 10 days of orders (the label horizon is 30)."""
    written = generate(data, ROWS, seed=12, files=2)
    since = (datetime.fromisoformat(written["end"]) - timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
    for path in sorted((data / "orders").glob("*.csv")):
        table = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types={"order_ts": pa.string()}))
        recent = table.filter(pc.greater_equal(table["order_ts"], since))  # ISO 8601 in UTC: text order is time order
        pacsv.write_csv(recent, path, pacsv.WriteOptions(quoting_style="needed"))


def test_a_dataset_younger_than_its_label_horizon_trains_nothing_and_says_why(tmp_path: Path) -> None:
    # GIVEN reference data and 2 order files holding only the last 10 days of orders (the label horizon is 30)
    data = tmp_path / "data"
    _young_data(data)

    # WHEN the pipeline runs on them
    run = run_pipeline(RunOptions(root=ROOT, out_dir=tmp_path / "out", data_dir=data, bad_file=False, duplicate=False))

    # THEN the feature run succeeded with no training rows, no training job started, and the run says why
    assert [r.state for r in run.emr_runs] == ["SUCCESS"] * 3
    assert run.features["orders"]["row_counts"]["train_rows"] == 0
    assert run.features["orders"]["row_counts"]["score_rows"] > 0
    assert run.training_jobs == []
    (skipped,) = [i["training_skipped"] for i in run.ledger["orders"] if i.get("training_skipped")]
    assert skipped.startswith("no training rows: no entity has an event before the training cutoff")
    assert f"training | orders: none started: {skipped}" in "\n".join(summary_lines(run))
    assert run.model_packages["dropzone-orders"] == []


def test_a_second_run_into_the_same_out_folder_starts_from_an_empty_stack(tmp_path: Path) -> None:
    # GIVEN a finished run on 2 order files of recent orders (quick: too young to train)
    data, out = tmp_path / "data", tmp_path / "out"
    _young_data(data)
    paths = sorted((data / "orders").glob("*.csv"))
    as_text = pacsv.ConvertOptions(column_types={"order_ts": pa.string()})
    (rows,) = [t for t in (pacsv.read_csv(p, convert_options=as_text) for p in paths) if t.num_rows]
    for p in paths:
        p.unlink()
    half = rows.num_rows // 2
    needed = pacsv.WriteOptions(quoting_style="needed")
    pacsv.write_csv(rows.slice(0, half), data / "orders" / "a.csv", needed)
    pacsv.write_csv(rows.slice(half), data / "orders" / "b.csv", needed)
    quiet = {"bad_file": False, "duplicate": False}
    run_pipeline(RunOptions(root=ROOT, out_dir=out, data_dir=data, **quiet), progress=lambda _: None)

    # WHEN the same command runs again into the same folder, with the second file taken out of the data
    (data / "orders" / "b.csv").unlink()
    lines: list[str] = []
    run = run_pipeline(RunOptions(root=ROOT, out_dir=out, data_dir=data, **quiet), progress=lines.append)

    # THEN the earlier run's outputs were removed first: the curated table and the features hold the first file only
    assert f"out      | {out}: the earlier run's outputs removed" in lines
    kept = rows.slice(0, half)
    (curated,) = (out / "work" / "s3").glob("*/curated/orders")
    assert ds.dataset(curated, format="parquet", partitioning="hive").count_rows() == kept.num_rows
    assert run.features["orders"]["row_counts"]["score_rows"] == len(pc.unique(kept["customer_id"]))


@pytest.fixture
def local(tmp_path: Path) -> Iterator[LocalStack]:
    with embedded_aws() as aws:
        yield LocalStack.start(aws, ROOT, tmp_path / "work")


def test_a_failing_spark_job_is_retried_then_failed_and_the_next_batch_still_trains(
    local: LocalStack, tmp_path: Path
) -> None:
    # GIVEN curated reference data, 20 order files in two halves and a Spark entry point that breaks
    data = tmp_path / "data"
    generate(data, ROWS, seed=11, files=20)
    files = producer_files(data, local.contracts)
    reference = [f for f in files if local.contracts[f[0]].is_reference]
    orders = [f for f in files if f[0] == "orders"]
    s3 = local.aws.client("s3")
    entry = local.stack.setting("SPARK_ENTRY_POINT")
    bucket, _, key = entry[5:].partition("/")
    good = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    topic_queue = s3_notifications_queue(local)
    pipeline = Pipeline(local, progress=lambda line: None)
    upload(local.aws, local.data_bucket, data, reference)
    pipeline.run_until_idle()
    assert [r.state for r in pipeline.emr.outcomes] == ["SUCCESS"] * len(reference)  # reference data curated
    curated = len(pipeline.emr.outcomes)
    s3.put_object(Bucket=bucket, Key=key, Body=b"raise SystemExit('broken job: the contract cannot be computed')\n")
    # WHEN the first batch runs with the broken job
    upload(local.aws, local.data_bucket, data, orders[:10])
    pipeline.run_until_idle()
    # THEN it was retried up to the contract's max_attempts and then failed, with a notification
    attempts = local.contracts["orders"].batching.max_attempts
    assert [r.state for r in pipeline.emr.outcomes[curated:]] == ["FAILED"] * attempts
    items = ledger_items(local)["orders"]
    batches = [i for i in items if str(i["sk"]).startswith("BATCH#")]
    assert [b["status"] for b in batches] == ["FAILED"]
    notes = read_notifications(local, topic_queue)
    assert any("fail" in json.dumps(n).lower() for n in notes), notes
    assert not pipeline.training.outcomes
    # WHEN the job is fixed and the next files arrive
    s3.put_object(Bucket=bucket, Key=key, Body=good)
    upload(local.aws, local.data_bucket, data, orders[10:])
    pipeline.run_until_idle()
    # THEN the next batch runs and trains
    assert pipeline.emr.outcomes[-1].state == "SUCCESS"
    assert [t.status for t in pipeline.training.outcomes] == ["Completed"]
    batches = [i for i in ledger_items(local)["orders"] if str(i["sk"]).startswith("BATCH#")]
    assert sorted(b["status"] for b in batches) == ["FAILED", "SUCCEEDED"]


def s3_notifications_queue(local: LocalStack) -> str:
    """An SQS queue subscribed to the stack's topic, to read what was notified."""
    url = subscribe_notifications(local)
    assert url is not None
    return url


PINGS = """\
dataset: pings
description: Device heartbeats, one row per ping.
formats: [jsonl]
entity: device_id
timestamp: ping_ts
columns:
  ping_id:   {type: string, required: true, unique: true}
  device_id: {type: string, required: true, regex: '^D[0-9]{4}$'}
  ping_ts:   {type: timestamp, required: true}
  battery:   {type: double, required: true, min: 0, max: 100}
batching: {min_files: 2, max_wait: 5m}
features:
  windows: [30, 90]
  aggregations:
    - {column: ping_id, functions: [count]}
    - {column: battery, functions: [mean, min]}
label: {kind: active_in_horizon, name: pings_next_30d, horizon_days: 30}
training:
  algorithm: xgboost
  hyperparameters: {max_depth: 3, eta: 0.3, num_round: 20}
  gate: {metric: auc, margin: 0.0, when_not_better: pending}
"""


def _pings(data: Path, days: int = 200, devices: int = 120) -> None:
    """Two JSON Lines files of pings: device i pings every (i % 7 + 1) days and stops for good after day
    ``days * (i % 5 + 1) / 5``, so recent activity tells who is still pinging."""
    end = datetime(2026, 11, 1)
    lines: list[str] = []
    for i in range(devices):
        last = days * (i % 5 + 1) // 5
        for day in range(0, last, i % 7 + 1):
            ts = end - timedelta(days=days - day, hours=i % 24)
            row = {"ping_id": f"p{i}-{day}", "device_id": f"D{i:04d}", "ping_ts": ts.isoformat() + "Z"}
            lines.append(json.dumps({**row, "battery": float(100 - day % 100)}))
    (data / "pings").mkdir(parents=True)
    half = len(lines) // 2
    (data / "pings" / "a.jsonl").write_text("\n".join(lines[:half]) + "\n")
    (data / "pings" / "b.jsonl").write_text("\n".join(lines[half:]) + "\n")


def test_your_own_contracts_are_deployed_instead_of_the_shipped_ones_and_run_end_to_end(tmp_path: Path) -> None:
    # GIVEN a contracts folder holding one dataset of a user's own (no orders, no reference data) and its files
    mine = tmp_path / "contracts"
    mine.mkdir()
    (mine / "pings.yaml").write_text(PINGS)
    data = tmp_path / "data"
    _pings(data)

    # WHEN the pipeline runs with those contracts
    lines: list[str] = []
    run = run_pipeline(
        RunOptions(root=ROOT, out_dir=tmp_path / "out", data_dir=data, contracts_dir=mine, duplicate=False),
        progress=lines.append,
    )

    # THEN only that contract was published, its files went through a feature run, and the deliberate bad file
    # (written for its contract: JSON Lines, lacking its unique column) was quarantined for that
    assert sorted(k for k in run.bucket_keys if k.startswith("assets/contracts/")) == ["assets/contracts/pings.yaml"]
    files = _files(run)
    assert {k: i["status"] for k, i in files.items() if k != run.bad_key} == {
        "incoming/pings/a.jsonl": "DONE",
        "incoming/pings/b.jsonl": "DONE",
    }
    assert str(run.bad_key).startswith("incoming/pings/")
    assert str(run.bad_key).endswith(".jsonl")
    assert files[str(run.bad_key)]["status"] == "QUARANTINED"
    assert "ping_id" in json.dumps(files[str(run.bad_key)]["reasons"])
    # AND its features came from its own feature section, and a model was trained and registered in its own group
    assert [r.state for r in run.emr_runs] == ["SUCCESS"]
    columns = {f["name"] for f in run.features["pings"]["features"]}
    assert {"ping_id_count_30d", "battery_mean_90d", "battery_min_30d"} <= columns
    assert not any(c.startswith(("amount", "order_id", "category")) for c in columns)
    assert [t.status for t in run.training_jobs] == ["Completed"]
    assert len(run.model_packages["dropzone-pings"]) == 1
    # AND the summary speaks of its datasets only (the template's orders model group stays out of it)
    summary = "\n".join(summary_lines(run))
    assert "registry | dropzone-pings: v1 " in summary
    assert "orders" not in summary
