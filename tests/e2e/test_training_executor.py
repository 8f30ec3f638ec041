"""SageMaker training jobs recorded in moto, executed locally with the script-mode contract of the container."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dropzone.contract import load_contract
from dropzone.local.server import EmbeddedAws
from dropzone.local.stack import Stack
from dropzone.local.training import TrainingExecutor
from dropzone.training_jobs import TrainingInputs, build_training_job_request, create_training_job

ROOT = Path(__file__).resolve().parents[2]


def _frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    signal = rng.normal(size=n)
    noise = rng.normal(size=n)
    label = (signal + 0.3 * rng.normal(size=n) > 0).astype(int)
    ids = [f"C{i:06d}" for i in range(n)]
    return pd.DataFrame({"customer_id": ids, "signal": signal, "noise": noise, "active_next_30d": label})


def _source_tarball() -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        tar.add(ROOT / "training" / "train.py", "train.py")
    return buffer.getvalue()


def _request(aws: EmbeddedAws, bucket: str, name: str, with_validation: bool = True) -> dict:
    s3 = aws.client("s3")
    rng = np.random.default_rng(3)
    for channel, n in (("train", 400), ("validation", 200)):
        body = io.BytesIO()
        frame = _frame(rng, n) if with_validation or channel == "train" else _frame(rng, 0)
        frame.to_parquet(body)
        s3.put_object(Bucket=bucket, Key=f"features/run=1/{channel}/part-0.parquet", Body=body.getvalue())
    s3.put_object(Bucket=bucket, Key="assets/training/sourcedir.tar.gz", Body=_source_tarball())
    inputs = TrainingInputs(
        dataset="orders",
        run_id="r1",
        job_run_id="j1",
        train_uri=f"s3://{bucket}/features/run=1/train/",
        validation_uri=f"s3://{bucket}/features/run=1/validation/",
        label="active_next_30d",
        task="classification",
        entity="customer_id",
        features=("signal", "noise"),
    )
    return build_training_job_request(
        inputs,
        load_contract(ROOT / "contracts" / "orders.yaml"),
        name=name,
        region=aws.region,
        role_arn=f"arn:aws:iam::{aws.account_id}:role/sm",
        source_uri=f"s3://{bucket}/assets/training/sourcedir.tar.gz",
        output_uri=f"s3://{bucket}/models/",
    )


def _training_events(aws: EmbeddedAws) -> list[dict]:
    sqs = aws.client("sqs")
    url = next(u for u in sqs.list_queues()["QueueUrls"] if "TrainingEventsQueue" in u)
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"])["detail"] for m in messages]


def _prestarted(executor: TrainingExecutor, prestart: bool) -> subprocess.Popen[str] | None:
    """Pre-start the next job's interpreter as the runtime does during a Spark run (or not)."""
    if not prestart:
        return None
    executor.prestart()
    return executor._next


@pytest.mark.slow
@pytest.mark.parametrize("prestart", [True, False], ids=["prestarted", "new-interpreter"])
def test_a_training_job_runs_the_script_and_publishes_model_metrics_and_events(
    aws: EmbeddedAws, toy_stack: Stack, tmp_path: Path, prestart: bool
) -> None:
    bucket = toy_stack.outputs["DataBucketName"]
    sagemaker = aws.client("sagemaker")
    create_training_job(sagemaker, _request(aws, bucket, "dz-orders-abc"))
    lines: list[str] = []
    executor = TrainingExecutor(aws, tmp_path, progress=lines.append)
    waiting = _prestarted(executor, prestart)
    assert executor.run_pending() == 1
    assert executor.run_pending() == 0
    if waiting is not None:  # the pre-started interpreter ran the job and ended with it
        assert (waiting.poll(), executor._next) == (0, None)
    outcome = executor.outcomes[0]
    assert outcome.status == "Completed", outcome.log.read_text()[-2000:]
    # the label follows 'signal': the model must beat the constant baseline by far
    assert outcome.metrics["validation:auc"] > 0.9
    assert outcome.metrics["baseline:auc"] == pytest.approx(0.5)
    assert any(line.startswith("[dropzone] validation:auc=") for line in lines)
    described = sagemaker.describe_training_job(TrainingJobName="dz-orders-abc")
    assert described["TrainingJobStatus"] == "Completed"
    assert described["ModelArtifacts"]["S3ModelArtifacts"] == f"s3://{bucket}/models/dz-orders-abc/output/model.tar.gz"
    final = {m["MetricName"]: m["Value"] for m in described["FinalMetricDataList"]}
    assert final["validation:auc"] == pytest.approx(outcome.metrics["validation:auc"])
    model = aws.client("s3").get_object(Bucket=bucket, Key="models/dz-orders-abc/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(model)) as tar:
        assert "xgboost-model" in tar.getnames()
    output = aws.client("s3").get_object(Bucket=bucket, Key="models/dz-orders-abc/output/output.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(output)) as tar:
        assert "metrics.json" in tar.getnames()
    events = _training_events(aws)
    assert [e["TrainingJobStatus"] for e in events] == ["InProgress", "Completed"]
    assert isinstance(events[-1]["TrainingEndTime"], int)  # epoch milliseconds, as SageMaker sends


@pytest.mark.slow
@pytest.mark.parametrize("prestart", [True, False], ids=["prestarted", "new-interpreter"])
def test_a_failing_script_fails_the_job_with_its_reason(
    aws: EmbeddedAws, toy_stack: Stack, tmp_path: Path, prestart: bool
) -> None:
    bucket = toy_stack.outputs["DataBucketName"]
    create_training_job(aws.client("sagemaker"), _request(aws, bucket, "dz-orders-empty", with_validation=False))
    executor = TrainingExecutor(aws, tmp_path)
    waiting = _prestarted(executor, prestart)
    outcome = executor.execute("dz-orders-empty")
    assert outcome.status == "Failed"
    if waiting is not None:
        assert waiting.poll() not in (None, 0)  # the job's script failed in the pre-started interpreter
    described = aws.client("sagemaker").describe_training_job(TrainingJobName="dz-orders-empty")
    assert described["TrainingJobStatus"] == "Failed"
    assert "validation has 0" in described["FailureReason"]
    assert [e["TrainingJobStatus"] for e in _training_events(aws)] == ["InProgress", "Failed"]
