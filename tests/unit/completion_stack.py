"""A moto-backed stack for the completion-side tests (JobFinished, ModelTrained, Reconcile, status).

Real moto S3, DynamoDB, EMR Serverless, SageMaker, SNS and SQS; contracts published the way the deploy does;
the SNS topic delivers to a queue the test reads. AWS behaviour moto does not fake (FAILED runs, throttling,
failed training jobs) is injected with botocore event hooks on the function's own clients.
"""

from __future__ import annotations

import importlib
import io
import json
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from dropzone.batching import StartedBatch, maybe_start_batch
from dropzone.contract import parse_contract_text
from dropzone.ledger import Ledger, iso, table_definition
from dropzone.observability import metrics
from dropzone.settings import Settings

REPO = Path(__file__).resolve().parents[2]
REGION = "us-east-1"
ACCOUNT = "123456789012"
BUCKET = f"dropzone-data-{ACCOUNT}-{REGION}"
TABLE = "dropzone-ledger"


@dataclass
class Stack:
    app_id: str
    topic_arn: str
    notes_url: str
    ledger: Ledger
    settings: Settings
    s3: Any
    emr: Any
    sagemaker: Any
    sqs: Any

    def contract(self, dataset: str) -> Any:
        body = self.s3.get_object(Bucket=BUCKET, Key=f"assets/contracts/{dataset}.yaml")["Body"].read()
        return parse_contract_text(body, dataset)

    def accept_files(self, dataset: str, count: int, *, seen_at: datetime | None = None, start: int = 0) -> list[str]:
        """ACCEPTED file items as the ingest function records them."""
        sks = []
        for i in range(start, start + count):
            key = f"incoming/{dataset}/part-{i:04d}.csv"
            self.s3.put_object(Bucket=BUCKET, Key=key, Body=b"order_id\n")
            record = {
                "bucket": BUCKET,
                "key": key,
                "version": f"etag{i:04d}",
                "status": "ACCEPTED",
                "size": 1000 + i,
                "rows": 10,
                "seen_at": iso(seen_at or datetime.now(UTC)),
            }
            self.ledger.record_file(dataset, record)
            sks.append(f"FILE#{BUCKET}/{key}#etag{i:04d}")
        return sks

    def start_batch(self, dataset: str, *, force_due: bool = True) -> StartedBatch:
        started = maybe_start_batch(
            dataset,
            self.contract(dataset),
            ledger=self.ledger,
            s3=self.s3,
            emr=self.emr,
            settings=self.settings,
            now=datetime.now(UTC),
            force_due=force_due,
        )
        assert started is not None
        return started

    def write_run_manifest(
        self, dataset: str, run_id: str, *, train_rows: int = 800, validation_rows: int = 200, positive: float = 0.4
    ) -> None:
        """What the Spark job writes last under features/<dataset>/run=<run id>/ (the fields training reads)."""
        manifest = {
            "dataset": dataset,
            "run_id": run_id,
            "entity": "customer_id",
            "label": {"name": "active_next_30d", "kind": "active_in_horizon", "positive_fraction": positive},
            "features": [{"name": "amount_sum_30d", "type": "double"}, {"name": "segment", "type": "string"}],
            "outputs": {"train": "train/", "validation": "validation/", "score": "score/"},
            "cutoffs": {"train": ["2026-10-28"], "score": "2026-11-27"},
            "horizon_days": 30,
            "row_counts": {"train_rows": train_rows, "validation_rows": validation_rows, "score_rows": 1000},
        }
        key = f"features/{dataset}/run={run_id}/_manifest.json"
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(manifest).encode())

    def notifications(self) -> list[dict[str, Any]]:
        """Every SNS message published so far (decoded), drained from the subscribed queue."""
        found = []
        while True:
            answer = self.sqs.receive_message(QueueUrl=self.notes_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            messages = answer.get("Messages", [])
            if not messages:
                return found
            for m in messages:
                envelope = json.loads(m["Body"])
                found.append({"subject": envelope.get("Subject"), **json.loads(envelope["Message"])})
                self.sqs.delete_message(QueueUrl=self.notes_url, ReceiptHandle=m["ReceiptHandle"])

    def item(self, dataset: str, sk: str) -> dict[str, Any] | None:
        return self.ledger.get_item(f"DATASET#{dataset}", sk)

    def upload_training_output(self, model_data_url: str, metrics: dict[str, Any]) -> None:
        """What SageMaker uploads after train.py: model.tar.gz and output.tar.gz with metrics.json."""
        bucket, _, key = model_data_url.removeprefix("s3://").partition("/")
        self.s3.put_object(Bucket=bucket, Key=key, Body=_tar({"xgboost-model": b"{}"}))
        output_key = key[: -len("model.tar.gz")] + "output.tar.gz"
        self.s3.put_object(Bucket=bucket, Key=output_key, Body=_tar({"metrics.json": json.dumps(metrics).encode()}))


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def make_stack(monkeypatch: pytest.MonkeyPatch, *, min_files: int = 2, max_attempts: int = 3) -> Stack:
    """Create every resource in moto (the caller holds mock_aws) and set the functions' environment."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET)
    for path in sorted((REPO / "contracts").glob("*.yaml")):
        text = path.read_text()
        if path.stem == "orders":
            text = text.replace("min_files: 10", f"min_files: {min_files}")
            text = text.replace("max_attempts: 3", f"max_attempts: {max_attempts}")
        s3.put_object(Bucket=BUCKET, Key=f"assets/contracts/{path.name}", Body=text.encode())
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.create_table(
        TableName=TABLE,
        **table_definition(),
    )
    emr = boto3.client("emr-serverless", region_name=REGION)
    app_id = emr.create_application(name="dropzone-spark", releaseLabel="emr-7.0.0", type="SPARK")["applicationId"]
    sns = boto3.client("sns", region_name=REGION)
    sqs = boto3.client("sqs", region_name=REGION)
    topic_arn = sns.create_topic(Name="dropzone-notifications")["TopicArn"]
    notes_url = sqs.create_queue(QueueName="notifications")["QueueUrl"]
    notes_arn = sqs.get_queue_attributes(QueueUrl=notes_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=notes_arn)
    env = {
        "DATA_BUCKET": BUCKET,
        "LEDGER_TABLE": TABLE,
        "CONTRACTS_PREFIX": "assets/contracts/",
        "EMR_APPLICATION_ID": app_id,
        "EMR_JOB_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/dropzone-emr-job",
        "EMR_ARCHITECTURE": "ARM64",
        "EMR_MAX_VCPU": "16",
        "SPARK_ENTRY_POINT": f"s3://{BUCKET}/assets/spark/main.py",
        "SPARK_PY_FILES": f"s3://{BUCKET}/assets/spark/spark_app.zip",
        "SAGEMAKER_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/dropzone-sagemaker",
        "TRAINING_SOURCE_URI": f"s3://{BUCKET}/assets/training/sourcedir.tar.gz",
        "TRAINING_JOB_PREFIX": "dz",
        "MODEL_PACKAGE_GROUP_PREFIX": "dropzone",
        "NOTIFY_TOPIC_ARN": topic_arn,
        "POWERTOOLS_SERVICE_NAME": "dropzone",
        "POWERTOOLS_METRICS_NAMESPACE": "dropzone",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # The shared Metrics object may predate this environment (imported by an earlier test module).
    monkeypatch.setattr(metrics, "namespace", "dropzone")
    settings = Settings.from_env()
    return Stack(
        app_id=app_id,
        topic_arn=topic_arn,
        notes_url=notes_url,
        ledger=Ledger(TABLE, dynamodb),
        settings=settings,
        s3=s3,
        emr=emr,
        sagemaker=boto3.client("sagemaker", region_name=REGION),
        sqs=sqs,
    )


def load_app(name: str) -> ModuleType:
    """Import (or re-import) functions/<name>/app.py so its module-level clients bind to this test's moto."""
    module = importlib.import_module(f"functions.{name}.app")
    return importlib.reload(module)


def sqs_event(template: str, rewrite: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """events/<template> with its EventBridge body's detail rewritten (ids of the resources moto made)."""
    event = json.loads((REPO / "events" / template).read_text())
    for record in event["Records"]:
        body = json.loads(record["body"])
        rewrite(body["detail"])
        record["body"] = json.dumps(body)
    return event


def emr_event(template: str, app_id: str, job_run_id: str) -> dict[str, Any]:
    def rewrite(detail: dict[str, Any]) -> None:
        detail["applicationId"] = app_id
        detail["jobRunId"] = job_run_id

    return sqs_event(template, rewrite)


def training_event(template: str, name: str) -> dict[str, Any]:
    def rewrite(detail: dict[str, Any]) -> None:
        detail["TrainingJobName"] = name

    return sqs_event(template, rewrite)


def patch_job_run(client: Any, **fields: Any) -> Callable[[], None]:
    """Make GetJobRun answer with ``fields`` (e.g. state FAILED, stateDetails) as real EMR would; returns undo."""

    def hook(parsed: dict[str, Any], **_: Any) -> None:
        if "jobRun" in parsed:
            parsed["jobRun"].update(fields)

    client.meta.events.register("after-call.emr-serverless.GetJobRun", hook)
    return lambda: client.meta.events.unregister("after-call.emr-serverless.GetJobRun", hook)


def refuse(client: Any, operation: str, code: str, message: str = "Rate exceeded") -> Callable[[], None]:
    """Make ``operation`` (e.g. 'emr-serverless.StartJobRun') fail with ``code`` before it reaches moto."""

    def hook(**_: Any) -> tuple[AWSResponse, dict[str, Any]]:
        response = AWSResponse("https://example.invalid", 400, {}, None)  # type: ignore[arg-type]
        return response, {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}}

    client.meta.events.register(f"before-call.{operation}", hook)
    return lambda: client.meta.events.unregister(f"before-call.{operation}", hook)


def hours_ago(hours: float) -> datetime:
    return datetime.now(UTC) - timedelta(hours=hours)
