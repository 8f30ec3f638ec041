"""JobFinishedFunction: EMR Serverless job run state changes through the real handler, moto behind it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from moto import mock_aws

from dropzone.runs import CompletionError
from dropzone.training_jobs import training_job_name
from tests.unit.completion_stack import (
    BUCKET,
    Stack,
    emr_event,
    load_app,
    make_stack,
    patch_job_run,
    refuse,
)


@pytest.fixture
def stack(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with mock_aws():
        yield make_stack(monkeypatch)


def _handle(app: Any, event: dict[str, Any], lambda_context: Any) -> dict[str, Any]:
    return dict(app.handler(event, lambda_context))


def _emf(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{") and '"_aws"' in line]


def _assert_done_and_next_batch_running(stack: Stack, batch_id: str, files: list[str]) -> None:
    batch = stack.ledger.get_batch("orders", batch_id)
    assert batch is not None
    assert batch["status"] == "SUCCEEDED"
    assert {stack.item("orders", sk)["status"] for sk in files} == {"DONE"}  # type: ignore[index]
    lease = stack.ledger.get_lease("orders")
    assert lease is not None
    assert lease["owner"] != batch_id
    next_batch = stack.ledger.get_batch("orders", str(lease["owner"]))
    assert next_batch is not None
    assert next_batch["status"] == "RUNNING"


def test_success_records_cost_starts_training_releases_lease_and_starts_next_batch(
    stack: Stack, lambda_context: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a running batch of 2 orders files, 2 more files waiting, and the run's feature manifest
    files = stack.accept_files("orders", 2)
    started = stack.start_batch("orders")
    stack.accept_files("orders", 2, start=10)
    stack.write_run_manifest("orders", started.client_token)
    app = load_app("job_finished")
    patch_job_run(
        app.completions.emr,
        billedResourceUtilization={"vCPUHour": 2.5, "memoryGBHour": 10.0, "storageGBHour": 4.0},
        totalExecutionDurationSeconds=900,
    )
    capsys.readouterr()

    # WHEN the run's SUCCESS event arrives
    answer = _handle(app, emr_event("emr_job_success.json", stack.app_id, started.job_run_id), lambda_context)

    # THEN the run, its cost at ARM64 list prices and its training job are in the ledger
    assert answer == {"batchItemFailures": []}
    run = stack.item("orders", f"RUN#{started.job_run_id}")
    assert run is not None
    assert run["state"] == "SUCCESS"
    assert run["duration_s"] == 900
    # 2.5 vCPU-h x 0.042094 + 10 GB-h x 0.004628 + 4 storage GB-h x 0.000111
    assert run["cost_usd"] == pytest.approx(0.151959, abs=1e-9)
    assert run["features_uri"] == f"s3://{BUCKET}/features/orders/run={started.client_token}/"
    name = training_job_name("dz", "orders", started.job_run_id)
    assert run["training_job"] == name
    job = stack.sagemaker.describe_training_job(TrainingJobName=name)
    assert job["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"] == (
        f"s3://{BUCKET}/features/orders/run={started.client_token}/train/"
    )
    assert json.loads(job["HyperParameters"]["label"]) == "active_next_30d"
    training = stack.item("orders", f"TRAINING#{name}")
    assert training is not None
    assert training["status"] == "InProgress"
    assert training["run_id"] == started.client_token
    # AND the batch succeeded, its files are DONE, and the next batch took the lease with a new run
    _assert_done_and_next_batch_running(stack, started.batch_id, files)
    # AND RunCostUSD went out as a metric with the dataset dimension
    documents = [d for d in _emf(capsys.readouterr().out) if "RunCostUSD" in d]
    assert len(documents) == 1
    assert documents[0]["RunCostUSD"] == [pytest.approx(0.151959, abs=1e-9)]
    assert documents[0]["dataset"] == "orders"


def test_same_success_event_twice_changes_nothing_the_second_time(
    stack: Stack, lambda_context: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a run whose SUCCESS event was processed once
    stack.accept_files("orders", 2)
    started = stack.start_batch("orders")
    stack.write_run_manifest("orders", started.client_token)
    app = load_app("job_finished")
    event = emr_event("emr_job_success.json", stack.app_id, started.job_run_id)
    _handle(app, event, lambda_context)
    run_before = stack.item("orders", f"RUN#{started.job_run_id}")
    capsys.readouterr()

    # WHEN the same event is delivered again (SageMaker would now answer ResourceInUse; moto overwrites instead)
    refuse(
        app.completions.sagemaker, "sagemaker.CreateTrainingJob", "ResourceInUse", "Training job names must be unique"
    )
    answer = _handle(app, event, lambda_context)

    # THEN it succeeds, there is still one training job, the run item is unchanged and no second metric went out
    assert answer == {"batchItemFailures": []}
    assert len(stack.sagemaker.list_training_jobs()["TrainingJobSummaries"]) == 1
    assert stack.item("orders", f"RUN#{started.job_run_id}") == run_before
    assert not [d for d in _emf(capsys.readouterr().out) if "RunCostUSD" in d]
    assert stack.ledger.get_lease("orders") is None


def test_completion_before_the_start_was_recorded(stack: Stack, lambda_context: Any) -> None:
    # GIVEN StartJobRun answered but the ledger never got the run id (a crash right after StartJobRun)
    stack.accept_files("orders", 2)
    started = stack.start_batch("orders")
    stack.ledger.update_batch("orders", started.batch_id, remove=("job_run_id", "started_at"), status="STARTING")
    stack.write_run_manifest("orders", started.client_token)
    app = load_app("job_finished")

    # WHEN the run's SUCCESS event arrives
    answer = _handle(app, emr_event("emr_job_success.json", stack.app_id, started.job_run_id), lambda_context)

    # THEN the batch learns its run id from the completion and succeeds
    assert answer == {"batchItemFailures": []}
    batch = stack.ledger.get_batch("orders", started.batch_id)
    assert batch is not None
    assert batch["status"] == "SUCCEEDED"
    assert batch["job_run_id"] == started.job_run_id
    assert stack.sagemaker.list_training_jobs()["TrainingJobSummaries"]


def test_foreign_application_and_non_terminal_states_are_ignored(stack: Stack, lambda_context: Any) -> None:
    stack.accept_files("orders", 2)
    started = stack.start_batch("orders")
    app = load_app("job_finished")
    calls: list[str] = []
    app.completions.emr.meta.events.register("before-call.emr-serverless.GetJobRun", lambda **_: calls.append("x"))

    foreign = _handle(
        app, emr_event("emr_job_foreign_app.json", "00fothers0app0id", started.job_run_id), lambda_context
    )
    running = _handle(app, emr_event("emr_job_running.json", stack.app_id, started.job_run_id), lambda_context)

    assert foreign == running == {"batchItemFailures": []}
    assert calls == []  # not even asked
    assert stack.item("orders", f"RUN#{started.job_run_id}") is None
    batch = stack.ledger.get_batch("orders", started.batch_id)
    assert batch is not None
    assert batch["status"] == "RUNNING"


def test_clients_are_created_by_the_first_event_that_needs_them(stack: Stack, lambda_context: Any) -> None:
    # GIVEN a freshly imported function (a cold start) and a running batch with its feature manifest
    stack.accept_files("orders", 2)
    started = stack.start_batch("orders")
    stack.write_run_manifest("orders", started.client_token)
    app = load_app("job_finished")
    completions = app.completions
    clients = {
        "s3": completions.s3,
        "dynamodb": completions.ledger.client,
        "emr-serverless": completions.emr,
        "sagemaker": completions.sagemaker,
        "sns": completions.notifier.sns,
    }
    assert not [name for name, client in clients.items() if client.created]

    # WHEN an event it ignores arrives, then the run's SUCCESS event
    _handle(app, emr_event("emr_job_running.json", stack.app_id, started.job_run_id), lambda_context)
    ignored = sorted(name for name, client in clients.items() if client.created)
    answer = _handle(app, emr_event("emr_job_success.json", stack.app_id, started.job_run_id), lambda_context)

    # THEN the ignored event created no client; the success created those it called, SNS (failures only) not
    assert answer == {"batchItemFailures": []}
    assert stack.sagemaker.list_training_jobs()["TrainingJobSummaries"]
    assert ignored == []
    assert sorted(name for name, client in clients.items() if client.created) == [
        "dynamodb",
        "emr-serverless",
        "s3",
        "sagemaker",
    ]


def test_failed_run_is_retried_then_given_up_with_a_notification(stack: Stack, lambda_context: Any) -> None:
    # GIVEN a batch of 2 files whose every attempt fails (max_attempts 3)
    files = stack.accept_files("orders", 2)
    started = stack.start_batch("orders")
    app = load_app("job_finished")
    patch_job_run(app.completions.emr, state="FAILED", stateDetails="Job failed, ExitCode: 1. OutOfMemoryError")
    job_run_id = started.job_run_id

    # WHEN the FAILED events of attempts 1 and 2 arrive
    tokens = []
    for attempt in (1, 2):
        answer = _handle(app, emr_event("emr_job_failed.json", stack.app_id, job_run_id), lambda_context)
        assert answer == {"batchItemFailures": []}
        batch = stack.ledger.get_batch("orders", started.batch_id)
        assert batch is not None
        # THEN each starts the next attempt of the same files with a new clientToken
        assert batch["attempt"] == attempt + 1
        assert batch["status"] == "RUNNING"
        assert batch["job_run_id"] != job_run_id
        job_run_id = str(batch["job_run_id"])
        run = stack.emr.get_job_run(applicationId=stack.app_id, jobRunId=job_run_id)["jobRun"]
        tokens.append(run["tags"]["attempt"])
    assert tokens == ["2", "3"]
    assert stack.notifications() == []

    # WHEN the third attempt fails too
    answer = _handle(app, emr_event("emr_job_failed.json", stack.app_id, job_run_id), lambda_context)

    # THEN the batch and its files are FAILED for good, the lease is free, and people are told which files and why
    assert answer == {"batchItemFailures": []}
    batch = stack.ledger.get_batch("orders", started.batch_id)
    assert batch is not None
    assert batch["status"] == "FAILED"
    assert {stack.item("orders", sk)["status"] for sk in files} == {"FAILED"}  # type: ignore[index]
    assert stack.ledger.get_lease("orders") is None
    (note,) = stack.notifications()
    assert note["kind"] == "batch_failed"
    assert note["attempts"] == 3
    assert "OutOfMemoryError" in note["reason"]
    assert sorted(note["files"]) == sorted(sk.removeprefix("FILE#") for sk in files)
    assert len(stack.emr.list_job_runs(applicationId=stack.app_id)["jobRuns"]) == 3

    # AND the same FAILED event again notifies nobody twice
    _handle(app, emr_event("emr_job_failed.json", stack.app_id, job_run_id), lambda_context)
    assert stack.notifications() == []


def test_throttled_retry_fails_the_message_and_the_redelivery_starts_it_once(stack: Stack, lambda_context: Any) -> None:
    # GIVEN a failed first attempt while StartJobRun is throttled
    stack.accept_files("orders", 2)
    started = stack.start_batch("orders")
    app = load_app("job_finished")
    patch_job_run(app.completions.emr, state="FAILED", stateDetails="Executor lost")
    undo = refuse(app.completions.emr, "emr-serverless.StartJobRun", "ThrottlingException")
    event = emr_event("emr_job_failed.json", stack.app_id, started.job_run_id)

    # WHEN the FAILED event is handled
    answer = _handle(app, event, lambda_context)

    # THEN the message is reported failed, so SQS redelivers it; the batch waits as attempt 2
    assert answer["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]
    batch = stack.ledger.get_batch("orders", started.batch_id)
    assert batch is not None
    assert (batch["status"], batch["attempt"]) == ("STARTING", 2)

    # WHEN throttling ends and the message comes back (twice)
    undo()
    assert _handle(app, event, lambda_context) == {"batchItemFailures": []}
    assert _handle(app, event, lambda_context) == {"batchItemFailures": []}

    # THEN attempt 2 runs exactly once
    runs = stack.emr.list_job_runs(applicationId=stack.app_id)["jobRuns"]
    assert len(runs) == 2
    batch = stack.ledger.get_batch("orders", started.batch_id)
    assert batch is not None
    assert (batch["status"], batch["attempt"]) == ("RUNNING", 2)


def test_reference_dataset_run_trains_nothing(stack: Stack, lambda_context: Any) -> None:
    stack.accept_files("customers", 1)
    started = stack.start_batch("customers")
    app = load_app("job_finished")

    answer = _handle(app, emr_event("emr_job_success.json", stack.app_id, started.job_run_id), lambda_context)

    assert answer == {"batchItemFailures": []}
    batch = stack.ledger.get_batch("customers", started.batch_id)
    assert batch is not None
    assert batch["status"] == "SUCCEEDED"
    assert stack.sagemaker.list_training_jobs()["TrainingJobSummaries"] == []
    assert stack.ledger.get_lease("customers") is None


@pytest.mark.parametrize(
    ("counts", "reason"),
    [
        (
            {"train_rows": 0, "validation_rows": 0},
            "no training rows: no entity has an event before the training cutoff 2026-10-28 (the as-of date less "
            "the 30-day label horizon); training starts once the history is longer",
        ),
        ({"train_rows": 3, "validation_rows": 0}, "3 training and 0 validation rows: each split needs at least one"),
        ({"positive": 0.0}, "active_next_30d is 0 for every training row: there is nothing to learn"),
    ],
    ids=["young dataset", "no validation entity", "one label value"],
)
def test_a_run_whose_features_cannot_train_records_why_and_starts_no_training_job(
    stack: Stack, lambda_context: Any, counts: dict[str, Any], reason: str
) -> None:
    # GIVEN a running batch whose feature run produced nothing a model can learn from
    files = stack.accept_files("orders", 2)
    started = stack.start_batch("orders")
    stack.accept_files("orders", 2, start=10)
    stack.write_run_manifest("orders", started.client_token, **counts)
    app = load_app("job_finished")

    # WHEN the run's SUCCESS event arrives
    answer = _handle(app, emr_event("emr_job_success.json", stack.app_id, started.job_run_id), lambda_context)

    # THEN no SageMaker job starts (it could only fail), the run says why, and the pipeline goes on as after a success
    assert answer == {"batchItemFailures": []}
    assert stack.sagemaker.list_training_jobs()["TrainingJobSummaries"] == []
    run = stack.item("orders", f"RUN#{started.job_run_id}")
    assert run is not None
    assert "training_job" not in run
    assert run["training_skipped"].startswith(reason), run["training_skipped"]
    _assert_done_and_next_batch_running(stack, started.batch_id, files)


def test_missing_run_manifest_fails_the_message_with_the_reason(stack: Stack, lambda_context: Any) -> None:
    stack.accept_files("orders", 2)
    started = stack.start_batch("orders")
    app = load_app("job_finished")
    event = emr_event("emr_job_success.json", stack.app_id, started.job_run_id)

    answer = _handle(app, event, lambda_context)

    assert answer["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]
    assert stack.sagemaker.list_training_jobs()["TrainingJobSummaries"] == []
    with pytest.raises(CompletionError, match=rf"run={started.client_token}/_manifest.json cannot be read"):
        app.completions.job_run_finished(stack.app_id, started.job_run_id, now=datetime.now(UTC))


def test_a_body_that_is_not_an_event_fails_only_its_message(stack: Stack, lambda_context: Any) -> None:
    app = load_app("job_finished")
    event = emr_event("emr_job_running.json", stack.app_id, "x")
    good = event["Records"][0]
    bad = {**good, "messageId": "bad-1", "body": "not json"}
    answer = _handle(app, {"Records": [good, bad]}, lambda_context)
    assert answer == {"batchItemFailures": [{"itemIdentifier": "bad-1"}]}


def test_200_files_run_as_20_batches_one_at_a_time_each_file_in_exactly_one(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, lambda_context: Any
) -> None:
    # GIVEN 200 accepted orders files at once and min_files 10
    with mock_aws():
        stack = make_stack(monkeypatch, min_files=10)
        files = stack.accept_files("orders", 200)
        stack.start_batch("orders", force_due=False)
        app = load_app("job_finished")
        seen_batches: list[str] = []

        # WHEN each run's SUCCESS event is processed in turn (each one starts the next run)
        while (lease := stack.ledger.get_lease("orders")) is not None:
            batch = stack.ledger.get_batch("orders", str(lease["owner"]))
            assert batch is not None
            assert batch["status"] == "RUNNING"
            in_flight = [b for b in stack.ledger.query_dataset("orders", "BATCH#") if b["status"] == "RUNNING"]
            assert len(in_flight) == 1  # one run at a time per dataset
            seen_batches.append(str(batch["batch_id"]))
            stack.write_run_manifest("orders", f"{batch['batch_id']}-{batch['attempt']}")
            answer = app.handler(
                emr_event("emr_job_success.json", stack.app_id, str(batch["job_run_id"])), lambda_context
            )
            assert answer == {"batchItemFailures": []}

        # THEN ceil(200 / 10) = 20 runs ran, and every file is DONE in exactly one batch
        assert len(seen_batches) == len(set(seen_batches)) == 20
        assert len(stack.emr.list_job_runs(applicationId=stack.app_id, maxResults=50)["jobRuns"]) == 20
        batches = list(stack.ledger.query_dataset("orders", "BATCH#"))
        members = [sk for b in batches for sk in b["files"]]
        assert sorted(members) == sorted(files)
        assert {stack.item("orders", sk)["status"] for sk in files} == {"DONE"}  # type: ignore[index]
        assert len(stack.sagemaker.list_training_jobs(MaxResults=100)["TrainingJobSummaries"]) == 20


def test_function_bundles_do_not_need_pyarrow(stack: Stack) -> None:
    """pyarrow ships only with the ingest function: the completion functions must import without it."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import functions.job_finished.app, functions.model_trained.app, functions.reconcile.app\n"
        "heavy = sorted(m for m in ('pyarrow', 'pandas', 'xgboost', 'sklearn', 'pyspark') if m in sys.modules)\n"
        "print(heavy)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_training_quota_fails_loudly_names_the_quota_and_notifies_once(stack: Stack, lambda_context: Any) -> None:
    # GIVEN a successful run while the account's SageMaker quota for ml.m5.large training is 0
    stack.accept_files("orders", 2)
    started = stack.start_batch("orders")
    stack.write_run_manifest("orders", started.client_token)
    app = load_app("job_finished")
    undo = refuse(
        app.completions.sagemaker,
        "sagemaker.CreateTrainingJob",
        "ResourceLimitExceeded",
        "The account-level service limit 'ml.m5.large for training job usage' is 0 Instances",
    )
    event = emr_event("emr_job_success.json", stack.app_id, started.job_run_id)

    # WHEN the SUCCESS event is delivered twice
    first = _handle(app, event, lambda_context)
    second = _handle(app, event, lambda_context)

    # THEN both deliveries fail (to the DLQ in the end), the ledger and one notification name the quota
    message_id = event["Records"][0]["messageId"]
    assert first == second == {"batchItemFailures": [{"itemIdentifier": message_id}]}
    name = training_job_name("dz", "orders", started.job_run_id)
    training = stack.item("orders", f"TRAINING#{name}")
    assert training is not None
    assert training["status"] == "Blocked"
    assert "'ml.m5.large for training job usage'" in training["failure_reason"]
    (note,) = stack.notifications()
    assert note["kind"] == "training_blocked"
    assert "Service Quotas" in note["reason"]

    # WHEN the quota is raised and the message redriven
    undo()
    assert _handle(app, event, lambda_context) == {"batchItemFailures": []}

    # THEN the job exists and is in progress in the ledger
    training = stack.item("orders", f"TRAINING#{name}")
    assert training is not None
    assert training["status"] == "InProgress"
    assert "failure_reason" not in training
    assert stack.sagemaker.describe_training_job(TrainingJobName=name)["TrainingJobName"] == name
