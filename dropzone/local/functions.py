"""Lambda in-process: a function's handler called with the event Lambda would send, in its deployed environment.

Each function's module is loaded fresh from its CodeUri + Handler (module-level Settings and clients are read
at import, with that function's environment). A :class:`QueuePoller` plays one SQS event source mapping:
receive up to the batch size, call the handler with a real SQS event, delete what succeeded. Failed messages
become visible again at once (Lambda waits for the visibility timeout; here nobody would be waiting for it),
and moto moves a message to the DLQ after the queue's maxReceiveCount, per its redrive policy.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

from dropzone.local.server import EmbeddedAws, patched_environ
from dropzone.local.stack import FunctionSpec, QueueMapping, ScheduleSpec


@dataclass
class LambdaContext:
    """The attributes handlers and Powertools read from Lambda's context object."""

    function_name: str
    memory_limit_in_mb: int
    invoked_function_arn: str
    timeout_s: int
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _deadline: float = field(default=0.0, repr=False)

    def __post_init__(self) -> None:
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self._deadline = time.monotonic() + self.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass
class Invocation:
    function: str
    seconds: float
    error: str | None
    response: Any


class LocalFunction:
    """One deployed function, runnable in this process."""

    def __init__(self, spec: FunctionSpec, aws: EmbeddedAws, log: io.TextIOBase | None = None) -> None:
        self.spec = spec
        self._aws = aws
        self._log = log
        module_name, _, self._attribute = spec.handler.rpartition(".")
        self._file = spec.code_dir / (module_name.replace(".", "/") + ".py")
        if not self._file.is_file():
            raise FileNotFoundError(f"{spec.logical_id}: handler {spec.handler} needs {self._file}, which is missing")
        self._handler: Callable[[Any, Any], Any] | None = None
        self.invocations: list[Invocation] = []

    @property
    def environment(self) -> dict[str, str]:
        # The deployed configuration, pointed at the embedded API like a real function is at real AWS.
        return {**self.spec.environment, **self._aws.environment}

    def _load(self) -> Callable[[Any, Any], Any]:
        digest = hashlib.sha1(str(self._file).encode(), usedforsecurity=False).hexdigest()[:8]
        name = f"dropzone_local_{self.spec.logical_id}_{digest}"
        spec = importlib.util.spec_from_file_location(name, self._file)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {self._file}")
        module: ModuleType = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        handler = getattr(module, self._attribute, None)
        if not callable(handler):
            raise AttributeError(f"{self._file} has no callable {self._attribute!r} (Handler {self.spec.handler})")
        return handler

    @contextlib.contextmanager
    def _output(self) -> Iterator[None]:
        if self._log is None:
            yield
            return
        with contextlib.redirect_stdout(self._log), contextlib.redirect_stderr(self._log):
            yield

    def invoke(self, event: Any) -> Invocation:
        """Call the handler; an exception is the invocation's error (as Lambda reports it), never raised here."""
        context = LambdaContext(self.spec.name, self.spec.memory_mb, self.spec.arn, self.spec.timeout)
        start = time.perf_counter()
        error = None
        response = None
        with patched_environ(self.environment), self._output():
            try:
                if self._handler is None:
                    self._handler = self._load()
                response = self._handler(event, context)
            except Exception as e:
                error = f"{type(e).__name__}: {e}"
                if self._log is not None:
                    traceback.print_exc(file=self._log)
        invocation = Invocation(self.spec.logical_id, time.perf_counter() - start, error, response)
        self.invocations.append(invocation)
        return invocation


def sqs_record(message: dict[str, Any], queue_arn: str, region: str) -> dict[str, Any]:
    """An SQS message as Lambda's event source mapping hands it to the function."""
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": value.get("BinaryValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value["DataType"],
            }
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }


@dataclass
class PollResult:
    received: int = 0
    succeeded: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class QueuePoller:
    """One SQS event source mapping: batch size, partial batch failures, retries until the queue's DLQ."""

    def __init__(self, mapping: QueueMapping, function: LocalFunction, aws: EmbeddedAws) -> None:
        self.mapping = mapping
        self.function = function
        self._aws = aws
        self._sqs = aws.client("sqs")

    def _receive(self) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while len(messages) < self.mapping.batch_size:
            got = self._sqs.receive_message(
                QueueUrl=self.mapping.queue_url,
                MaxNumberOfMessages=min(10, self.mapping.batch_size - len(messages)),
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
                WaitTimeSeconds=0,
            ).get("Messages", [])
            if not got:
                break
            messages.extend(got)
        return messages

    def poll_once(self) -> PollResult:
        """Deliver one batch (if any); returns what happened to it."""
        result = PollResult()
        messages = self._receive()
        if not messages:
            return result
        result.received = len(messages)
        event = {"Records": [sqs_record(m, self.mapping.queue_arn, self._aws.region) for m in messages]}
        invocation = self.function.invoke(event)
        failed_ids = self._failed_ids(invocation, messages, result)
        for message in messages:
            if message["MessageId"] in failed_ids:
                self._sqs.change_message_visibility(
                    QueueUrl=self.mapping.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
            else:
                self._sqs.delete_message(QueueUrl=self.mapping.queue_url, ReceiptHandle=message["ReceiptHandle"])
        result.failed = len(failed_ids)
        result.succeeded = result.received - result.failed
        return result

    def _failed_ids(self, invocation: Invocation, messages: list[dict[str, Any]], result: PollResult) -> set[str]:
        every = {m["MessageId"] for m in messages}
        if invocation.error is not None:
            result.errors.append(invocation.error)
            return every
        if not self.mapping.report_batch_item_failures:
            return set()
        response = invocation.response
        if response is None:
            return set()
        failures = response.get("batchItemFailures", []) if isinstance(response, dict) else None
        if not isinstance(failures, list):
            result.errors.append(f"{self.function.spec.logical_id}: response is not a batchItemFailures report")
            return every
        ids = {f.get("itemIdentifier") for f in failures if isinstance(f, dict)}
        if len(ids) != len(failures) or not ids <= every:
            # Lambda treats an unknown, empty or malformed identifier as a failure of the whole batch.
            result.errors.append(f"{self.function.spec.logical_id}: invalid itemIdentifier in batchItemFailures")
            return every
        return {i for i in ids if isinstance(i, str)}

    def depth(self) -> int:
        """Messages waiting or in flight on the queue."""
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self.mapping.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def scheduled_event(schedule: ScheduleSpec, region: str, account_id: str) -> Any:
    """What EventBridge sends a function on its schedule (or the target's constant Input)."""
    if schedule.input:
        return json.loads(schedule.input)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [f"arn:aws:events:{region}:{account_id}:rule/{schedule.name}"],
        "detail": {},
    }


def load_functions(specs: dict[str, FunctionSpec], aws: EmbeddedAws, log_path: Path | None) -> dict[str, LocalFunction]:
    log = log_path.open("a", encoding="utf-8") if log_path is not None else None
    return {name: LocalFunction(spec, aws, log) for name, spec in specs.items()}
