"""Shared test fixtures: a Lambda context, events from events/, moto-backed AWS (S3, SQS, DynamoDB, EMR Serverless).

Nothing here is autouse: a test asks for what it needs. Subfolders add their own fixtures in their own conftest.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto import mock_aws

from dropzone.ledger import table_definition

# template.yaml's Globals give every function these before its code is imported; the shared Powertools objects
# (dropzone.observability) read them once, at first import, so the whole test session gets them up front.
os.environ.setdefault("POWERTOOLS_SERVICE_NAME", "dropzone")
os.environ.setdefault("POWERTOOLS_METRICS_NAMESPACE", "dropzone")
os.environ.setdefault("POWERTOOLS_TRACE_DISABLED", "true")

REPO = Path(__file__).resolve().parent.parent
EVENTS = REPO / "events"
CONTRACTS = REPO / "contracts"
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account


@dataclass
class FakeLambdaContext:
    """The attributes Powertools reads from Lambda's context object."""

    function_name: str = "test-function"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:test-function"
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/test-function"
    log_stream_name: str = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 300_000


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture
def load_event() -> Callable[[str], dict[str, Any]]:
    """Load ``events/<name>`` (with or without .json) as a dict."""

    def load(name: str) -> dict[str, Any]:
        path = EVENTS / (name if name.endswith(".json") else f"{name}.json")
        return dict(json.loads(path.read_text()))

    return load


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region, and no endpoint override: nothing can reach a real account."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name in ("S3", "DYNAMODB", "SQS", "EMR_SERVERLESS"):
        monkeypatch.delenv(f"AWS_ENDPOINT_URL_{name}", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)


@pytest.fixture
def moto_aws(aws_env: None) -> Iterator[None]:
    """Every boto3 client created inside the test talks to moto's in-memory AWS."""
    with mock_aws():
        yield


def create_ledger_table(name: str = "dropzone-ledger") -> str:
    """The ledger table as docs/ledger.md and template.yaml define it (pk/sk strings, the waiting index, on demand)."""
    boto3.client("dynamodb", region_name=REGION).create_table(
        TableName=name,
        **table_definition(),
    )
    return name


@pytest.fixture
def ledger_table(moto_aws: None) -> str:
    return create_ledger_table()


@pytest.fixture
def data_bucket(moto_aws: None) -> str:
    name = f"dropzone-data-{ACCOUNT}-{REGION}"
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=name)
    return name


@pytest.fixture
def emr_application(moto_aws: None) -> str:
    """An EMR Serverless Spark application in moto (it records StartJobRun calls; runs are SUCCESS at once)."""
    # moto 5.2 only knows labels shaped emr-X.Y.0 and refuses emr-spark-8.1.0 (what template.yaml deploys).
    answer = boto3.client("emr-serverless", region_name=REGION).create_application(
        name="dropzone-spark", releaseLabel="emr-7.12.0", type="SPARK"
    )
    return str(answer["applicationId"])


class CallRecorder:
    """A client event hook: records the parameters of every call to one operation and can make the next calls fail
    with an AWS error (as the service would answer, before botocore's retries: what the caller sees once they
    are exhausted). moto cannot throttle; this can."""

    def __init__(self, client: Any, operation: str) -> None:
        service = client.meta.service_model.service_id.hyphenize()
        self.calls: list[dict[str, Any]] = []
        self._failures: list[str] = []
        self._where: Callable[[dict[str, Any]], bool] | None = None
        client.meta.events.register(f"provide-client-params.{service}.{operation}", self._record)
        client.meta.events.register(f"before-call.{service}.{operation}", self._maybe_fail)

    def fail_next(self, *error_codes: str, where: Callable[[dict[str, Any]], bool] | None = None) -> None:
        """The next len(error_codes) calls (whose parameters satisfy ``where``) answer these errors, in order."""
        self._failures.extend(error_codes)
        self._where = where

    def _record(self, params: dict[str, Any], **_: Any) -> None:
        self.calls.append(json.loads(json.dumps(params, default=str)))

    def _maybe_fail(self, **_: Any) -> Any:
        if not self._failures or (self._where is not None and not self._where(self.calls[-1])):
            return None
        code = self._failures.pop(0)
        status = 400 if code != "ServiceUnavailable" else 503
        response = AWSResponse("https://example.invalid/", status, {}, None)
        error = {"Code": code, "Message": f"injected {code}"}
        parsed = {"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}}
        return response, parsed


@pytest.fixture
def record_calls() -> Callable[[Any, str], CallRecorder]:
    """``record_calls(client, "StartJobRun")`` → a CallRecorder hooked on that client."""
    return CallRecorder
