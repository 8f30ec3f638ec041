"""`dropzone status` against a ledger filled by the real completion code (moto), and against a moto server."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError
from moto import mock_aws

from dropzone.cli import main
from dropzone.ingest import ObjectRef
from dropzone.ledger import Ledger, iso
from dropzone.local.server import embedded_aws
from tests.unit.closed_pipe import to_a_closed_pipe
from tests.unit.completion_stack import BUCKET, TABLE, Stack, emr_event, hours_ago, load_app, make_stack, training_event


@pytest.fixture
def stack(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    with mock_aws():
        yield make_stack(monkeypatch)


def _pipeline(stack: Stack, lambda_context: Any) -> tuple[str, str]:
    """Two files batched and run, the run's cost recorded, its model trained and approved; one more file waiting."""
    stack.accept_files("orders", 2, seen_at=hours_ago(2))
    started = stack.start_batch("orders")
    stack.write_run_manifest("orders", started.client_token)
    job_finished = load_app("job_finished")

    def billed(parsed: dict[str, Any], **_: Any) -> None:
        parsed["jobRun"]["billedResourceUtilization"] = {"vCPUHour": 1.0, "memoryGBHour": 4.0, "storageGBHour": 0.0}
        parsed["jobRun"]["totalExecutionDurationSeconds"] = 420

    job_finished.completions.emr.meta.events.register("after-call.emr-serverless.GetJobRun", billed)
    job_finished.handler(emr_event("emr_job_success.json", stack.app_id, started.job_run_id), lambda_context)
    name = str(stack.item("orders", f"RUN#{started.job_run_id}")["training_job"])  # type: ignore[index]
    job = stack.sagemaker.describe_training_job(TrainingJobName=name)
    stack.upload_training_output(
        job["ModelArtifacts"]["S3ModelArtifacts"], {"validation": {"auc": 0.77}, "baseline": {"auc": 0.5}}
    )
    model_trained = load_app("model_trained")

    def trained_for(parsed: dict[str, Any], **_: Any) -> None:  # moto reports no billable time
        parsed["BillableTimeInSeconds"] = 600

    model_trained.completions.sagemaker.meta.events.register("after-call.sagemaker.DescribeTrainingJob", trained_for)
    model_trained.handler(training_event("sagemaker_training_completed.json", name), lambda_context)
    stack.accept_files("orders", 1, start=50, seen_at=hours_ago(0.1))
    return started.job_run_id, name


def test_json_lists_runs_with_cost_models_with_decisions_and_files_newest_first(
    stack: Stack, lambda_context: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    job_run_id, training_job = _pipeline(stack, lambda_context)
    capsys.readouterr()

    code = main(["status", "--table", TABLE, "--json"])

    assert code == 0
    report = json.loads(capsys.readouterr().out)
    (run,) = report["runs"]
    assert run["job_run_id"] == job_run_id
    assert run["state"] == "SUCCESS"
    assert run["duration_s"] == 420
    assert run["cost_usd"] == pytest.approx(0.042094 + 4 * 0.004628)
    assert run["training_job"] == training_job
    (model,) = report["trainings"]
    assert (model["name"], model["status"], model["decision"], model["metric"]) == (
        training_job,
        "Completed",
        "Approved",
        0.77,
    )
    assert model["model_package_arn"].startswith("arn:aws:sagemaker:")
    # 600 s on the contract's one ml.m5.large at $0.115 an hour
    assert (model["instances"], model["billable_seconds"]) == ("1 x ml.m5.large", 600)
    assert model["cost_usd"] == pytest.approx(0.115 / 6, abs=1e-6)  # stored to the micro-dollar
    assert report["files"][0]["key"] == "incoming/orders/part-0050.csv"  # the newest
    assert report["summary"] == {"orders": {"ACCEPTED": 1, "DONE": 2}}
    assert [b["status"] for b in report["batches"]] == ["SUCCEEDED"]


def test_readable_tables(stack: Stack, lambda_context: Any, capsys: pytest.CaptureFixture[str]) -> None:
    _pipeline(stack, lambda_context)
    capsys.readouterr()

    assert main(["status", "--table", TABLE, "--dataset", "orders"]) == 0

    out = capsys.readouterr().out
    assert "orders: 1 ACCEPTED, 2 DONE" in out
    assert "Runs (1, newest first)" in out
    runs = out.split("Runs (1, newest first)")[1].splitlines()
    assert runs[1].split()[:3] == ["DATASET", "JOB", "RUN"]
    assert "SUCCESS" in runs[2]
    assert "0.0606" in runs[2]  # 1 vCPU-h + 4 GB-h at ARM64 prices
    models = out.split("Models (1, newest first)")[1].splitlines()
    assert models[1].split()[5:10] == ["DECISION", "BILLED", "S", "COST", "USD"]
    assert models[2].split()[4:7] == ["Approved", "600", "0.0192"]  # 600 s of ml.m5.large at $0.115 an hour


def test_a_run_that_trained_nothing_says_why(
    stack: Stack, lambda_context: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.accept_files("orders", 2)
    started = stack.start_batch("orders")
    stack.write_run_manifest("orders", started.client_token, train_rows=0, validation_rows=0)
    load_app("job_finished").handler(
        emr_event("emr_job_success.json", stack.app_id, started.job_run_id), lambda_context
    )
    capsys.readouterr()

    assert main(["status", "--table", TABLE, "--json"]) == 0
    (run,) = json.loads(capsys.readouterr().out)["runs"]
    assert run["training_job"] is None
    assert run["training_skipped"].startswith("no training rows: no entity has an event before the training cutoff")

    assert main(["status", "--table", TABLE]) == 0
    runs = capsys.readouterr().out.split("Runs (1, newest first)")[1].splitlines()
    assert "TRAINING SKIPPED" in runs[1]
    assert "no training rows" in runs[2]


def test_limit_cuts_each_table(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    stack.accept_files("orders", 5)
    assert main(["status", "--table", TABLE, "--limit", "2"]) == 0
    assert "Files (2 of 5, newest first)" in capsys.readouterr().out


@pytest.fixture
def local_runtime(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A running local runtime (moto server) whose ledger holds one quarantined file: its endpoint and state file."""
    with embedded_aws() as aws:
        dynamodb = aws.client("dynamodb")
        dynamodb.create_table(
            TableName="local-ledger",
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        )
        record = {"bucket": "b", "key": "incoming/orders/bad.csv", "version": "e1", "status": "QUARANTINED"}
        Ledger("local-ledger", dynamodb).record_file(
            "orders", {**record, "reasons": ["amount: 3 values above max 100000"], "seen_at": iso(hours_ago(0))}
        )
        state = tmp_path / "local.json"
        state.write_text(
            json.dumps({"endpoint_url": aws.endpoint_url, "region": aws.region, "ledger_table": "local-ledger"})
        )
        yield aws.endpoint_url, state


def test_reads_the_local_runtime_from_its_state_file(
    local_runtime: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    endpoint, state = local_runtime

    # WHEN status runs with no table named
    code = main(["status", "--state-file", str(state)])

    # THEN it found the table through the state file
    out = capsys.readouterr().out
    assert code == 0
    assert f"the local runtime at {endpoint}" in out
    assert "amount: 3 values above max 100000" in out


@pytest.mark.parametrize("flags", [[], ["--json"]])
def test_to_a_reader_that_stops_early_it_ends_quietly(local_runtime: tuple[str, Path], flags: list[str]) -> None:
    """`dropzone status | head -1`: no BrokenPipeError traceback."""
    _, state = local_runtime
    result = to_a_closed_pipe(["status", "--state-file", str(state), *flags])
    assert (result.returncode, result.stderr) == (0, "")


def test_no_table_and_no_state_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["status", "--state-file", str(tmp_path / "missing.json")])
    assert code == 2
    assert "pass --table NAME" in capsys.readouterr().err


def _closed_port() -> int:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_stopped_local_runtime_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = _closed_port()
    state = tmp_path / "local.json"
    state.write_text(
        json.dumps({"endpoint_url": f"http://127.0.0.1:{port}", "region": "us-east-1", "ledger_table": "t"})
    )

    code = main(["status", "--state-file", str(state)])

    assert code == 2
    err = capsys.readouterr().err
    assert f"cannot reach the local runtime at http://127.0.0.1:{port}: is `dropzone local up` still running?" in err


def test_unreachable_aws_names_the_region_not_the_local_runtime(
    aws_env: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN no network: every request of a DynamoDB client fails to connect, as botocore reports it
    make_client = boto3.client

    def offline(*args: Any, **kwargs: Any) -> Any:
        client = make_client(*args, **kwargs)

        def refuse(request: Any, **_: Any) -> None:
            raise EndpointConnectionError(endpoint_url=request.url)

        client.meta.events.register("before-send.dynamodb", refuse)
        return client

    monkeypatch.setattr(boto3, "client", offline)
    # WHEN status reads a table in AWS
    code = main(["status", "--table", "foo", "--region", "eu-west-1"])
    # THEN it names AWS, the region and its endpoint, and does not send the user to `dropzone local up`
    assert code == 2
    err = capsys.readouterr().err
    assert "cannot reach AWS region eu-west-1: no answer from https://dynamodb.eu-west-1.amazonaws.com" in err
    assert "check the network connection and --region" in err
    assert "local up" not in err


def test_unreachable_endpoint_names_it_not_the_local_runtime(aws_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    code = main(["status", "--table", "foo", "--endpoint-url", endpoint])
    assert code == 2
    err = capsys.readouterr().err
    assert f"cannot reach {endpoint}: check --endpoint-url (or AWS_ENDPOINT_URL) and the network" in err
    assert "local up" not in err


def test_missing_table_is_named(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    boto3.client("dynamodb", region_name="us-east-1")  # moto is active; the table simply does not exist
    code = main(["status", "--table", "nope"])
    assert code == 2
    assert "ledger table 'nope' does not exist" in capsys.readouterr().err


def test_json_names_each_versions_report(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN two versions of one key, recorded by the ingest step (versioned bucket)
    s3 = stack.s3
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    key = "incoming/orders/daily.csv"
    app = load_app("ingest")
    for body in (b"order_id\n", b"customer_id\n"):
        version = s3.put_object(Bucket=BUCKET, Key=key, Body=body)["VersionId"]
        app.ingestor.ingest(ObjectRef(BUCKET, key, version_id=version))
    # WHEN status is asked for JSON
    assert main(["status", "--table", TABLE, "--json"]) == 0
    files = json.loads(capsys.readouterr().out)["files"]
    # THEN each file names its version and its own report, which exists
    assert len(files) == 2
    assert len({f["version"] for f in files}) == 2
    for f in files:
        assert f["report_key"] == f"reports/orders/daily.csv/{f['version']}.json"
        s3.head_object(Bucket=BUCKET, Key=f["report_key"])
