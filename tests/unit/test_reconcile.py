"""ReconcileFunction: lost events, batches past max_wait, leases left behind, one dataset failing alone."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from moto import mock_aws

from dropzone.ledger import iso
from dropzone.runs import training_sk
from dropzone.training_jobs import training_job_name
from tests.unit.completion_stack import BUCKET, REPO, Stack, hours_ago, load_app, make_stack

SCHEDULE = json.loads((REPO / "events" / "schedule_reconcile.json").read_text())


@pytest.fixture
def stack(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with mock_aws():
        yield make_stack(monkeypatch)


def _age_batch(stack: Stack, dataset: str, batch_id: str, hours: float) -> None:
    stack.ledger.update_batch(dataset, batch_id, started_at=iso(hours_ago(hours)), created_at=iso(hours_ago(hours)))


def test_lost_run_event_is_recovered(stack: Stack, lambda_context: Any) -> None:
    # GIVEN a run that finished an hour ago whose SUCCESS event never arrived
    stack.accept_files("orders", 2)
    started = stack.start_batch("orders")
    stack.write_run_manifest("orders", started.client_token)
    _age_batch(stack, "orders", started.batch_id, 1)
    app = load_app("reconcile")

    # WHEN the reconciler runs
    summary = app.handler(SCHEDULE, lambda_context)

    # THEN the run was processed as if its event had come: batch done, training started, lease free
    (orders,) = [d for d in summary["datasets"] if d["dataset"] == "orders"]
    assert orders["runs"] == [{"job_run_id": started.job_run_id, "state": "SUCCESS", "action": "succeeded"}]
    batch = stack.ledger.get_batch("orders", started.batch_id)
    assert batch is not None
    assert batch["status"] == "SUCCEEDED"
    name = training_job_name("dz", "orders", started.job_run_id)
    assert stack.sagemaker.describe_training_job(TrainingJobName=name)["TrainingJobName"] == name
    assert stack.ledger.get_lease("orders") is None


def test_recent_run_is_left_to_its_event(stack: Stack, lambda_context: Any) -> None:
    stack.accept_files("orders", 2)
    started = stack.start_batch("orders")
    app = load_app("reconcile")

    app.handler(SCHEDULE, lambda_context)

    batch = stack.ledger.get_batch("orders", started.batch_id)
    assert batch is not None
    assert batch["status"] == "RUNNING"
    assert stack.item("orders", f"RUN#{started.job_run_id}") is None


def test_files_past_max_wait_are_flushed(stack: Stack, lambda_context: Any) -> None:
    # GIVEN one orders file (min_files is 2) that has waited an hour (max_wait 15m); a fresh file waits (next test)
    old = stack.accept_files("orders", 1, seen_at=hours_ago(1))
    app = load_app("reconcile")

    summary = app.handler(SCHEDULE, lambda_context)

    by_dataset = {d["dataset"]: d for d in summary["datasets"]}
    assert by_dataset["orders"]["started_job_run_id"] is not None
    assert stack.item("orders", old[0])["status"] == "BATCHED"  # type: ignore[index]


def test_flush_invocation_batches_fresh_files_below_min_files(stack: Stack, lambda_context: Any) -> None:
    # GIVEN one fresh orders file (min_files is 2, max_wait not reached)
    (fresh,) = stack.accept_files("orders", 1)
    app = load_app("reconcile")

    # WHEN the schedule runs, the file waits; WHEN an operator invokes with {"flush": true}, it is batched
    scheduled = {d["dataset"]: d for d in app.handler(SCHEDULE, lambda_context)["datasets"]}
    assert scheduled["orders"]["started_job_run_id"] is None
    assert stack.item("orders", fresh)["status"] == "ACCEPTED"  # type: ignore[index]
    flushed = {d["dataset"]: d for d in app.handler({"flush": True}, lambda_context)["datasets"]}

    # THEN one run started with that file
    assert flushed["orders"]["started_job_run_id"] is not None
    assert stack.item("orders", fresh)["status"] == "BATCHED"  # type: ignore[index]


def test_lost_training_event_is_recovered(stack: Stack, lambda_context: Any) -> None:
    # GIVEN a training job that completed but whose Completed event never came
    stack.accept_files("orders", 2)
    started = stack.start_batch("orders")
    stack.write_run_manifest("orders", started.client_token)
    load_app("job_finished").completions.job_run_finished(stack.app_id, started.job_run_id, now=hours_ago(1))
    name = training_job_name("dz", "orders", started.job_run_id)
    stack.ledger.update_with_condition(
        "DATASET#orders", training_sk(name), set_values={"created_at": iso(hours_ago(1))}
    )
    job = stack.sagemaker.describe_training_job(TrainingJobName=name)
    metrics = {"validation": {"auc": 0.8}, "baseline": {"auc": 0.5}, "dataset": "orders"}
    stack.upload_training_output(job["ModelArtifacts"]["S3ModelArtifacts"], metrics)
    app = load_app("reconcile")

    # WHEN the reconciler runs
    summary = app.handler(SCHEDULE, lambda_context)

    # THEN the model was judged and registered
    (orders,) = [d for d in summary["datasets"] if d["dataset"] == "orders"]
    assert orders["trainings"] == [{"name": name, "status": "Completed", "action": "registered"}]
    item = stack.item("orders", training_sk(name))
    assert item is not None
    assert item["decision"] == "Approved"
    assert item["model_package_arn"].startswith("arn:aws:sagemaker:")


def test_lease_left_behind_by_a_processed_run_is_released_and_next_batch_starts(
    stack: Stack, lambda_context: Any
) -> None:
    # GIVEN a batch that succeeded but whose lease was never given back, and two files waiting
    stack.accept_files("orders", 2)
    started = stack.start_batch("orders")
    stack.ledger.update_batch("orders", started.batch_id, status="SUCCEEDED")
    stack.accept_files("orders", 2, start=10)
    app = load_app("reconcile")

    summary = app.handler(SCHEDULE, lambda_context)

    (orders,) = [d for d in summary["datasets"] if d["dataset"] == "orders"]
    assert orders["leases_released"] == 1
    lease = stack.ledger.get_lease("orders")
    assert lease is not None
    assert lease["owner"] != started.batch_id
    assert orders["started_job_run_id"] is not None


def test_a_broken_dataset_fails_the_invocation_but_not_the_others(stack: Stack, lambda_context: Any) -> None:
    # GIVEN a published contract that does not parse, and an orders file past max_wait
    stack.s3.put_object(Bucket=BUCKET, Key="assets/contracts/broken.yaml", Body=b"dataset: broken\ncolumns: [\n")
    stack.accept_files("orders", 1, seen_at=hours_ago(1))
    app = load_app("reconcile")

    # WHEN the reconciler runs
    with pytest.raises(app.ReconcileFailed, match=r"broken: ContractError: .*broken.yaml.*not valid YAML"):
        app.handler(SCHEDULE, lambda_context)

    # THEN orders was still flushed
    assert len(stack.emr.list_job_runs(applicationId=stack.app_id)["jobRuns"]) == 1


def test_files_skipped_before_their_contract_are_sent_to_the_ingest_queue(
    stack: Stack, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a file of orders recorded SKIPPED (it came before the orders contract), and one of a dataset that still
    # has no contract
    from urllib.parse import unquote_plus

    queue = stack.sqs.create_queue(QueueName="ingest")["QueueUrl"]
    monkeypatch.setenv("INGEST_QUEUE_URL", queue)
    for dataset in ("orders", "widgets"):
        key = f"incoming/{dataset}/early file+1.csv"
        etag = stack.s3.put_object(Bucket=BUCKET, Key=key, Body=b"order_id\n")["ETag"].strip('"')
        record = {"bucket": BUCKET, "key": key, "version": etag, "etag": etag, "status": "SKIPPED", "size": 9}
        stack.ledger.record_file(dataset, {**record, "seen_at": iso(hours_ago(2))})
    app = load_app("reconcile")

    # WHEN the reconciler runs twice
    app.handler(SCHEDULE, lambda_context)
    app.handler(SCHEDULE, lambda_context)

    # THEN the orders file's notification is on the ingest queue once (key encoded as S3 does), widgets' is not
    messages = stack.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10)["Messages"]
    assert len(messages) == 1
    [record] = json.loads(messages[0]["Body"])["Records"]
    assert record["s3"]["bucket"]["name"] == BUCKET
    assert record["s3"]["object"]["key"] == "incoming/orders/early+file%2B1.csv"
    assert unquote_plus(record["s3"]["object"]["key"]) == "incoming/orders/early file+1.csv"
