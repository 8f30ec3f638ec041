"""IngestFunction: S3 notifications from the ingest queue → validate each new file, record it, maybe start a batch.

SQS event source with partial batch failures: a message fails (and SQS redelivers it) only when its work could
not finish; everything it did before is idempotent, so the redelivery completes it (dropzone/ingest.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from dropzone import aws
from dropzone.batching import maybe_start_batch
from dropzone.ingest import ContractStore, Ingestor, IngestOutcome, parse_notification
from dropzone.ledger import ACCEPTED, BATCHED, Ledger
from dropzone.notify import Notifier
from dropzone.observability import logger, metrics, tracer
from dropzone.settings import Settings

settings = Settings.from_env().require(
    "data_bucket", "ledger_table", "emr_application_id", "emr_job_role_arn", "spark_entry_point"
)
s3 = aws.client("s3")
emr = aws.client("emr-serverless")
ledger = Ledger(str(settings.ledger_table), aws.client("dynamodb"))
contracts = ContractStore(s3, str(settings.data_bucket), settings.contracts_prefix)
# A quarantined or skipped file is told to its producer on the topic (created on first use: most files pass).
notifier = Notifier(aws.client("sns", lazy=True), settings.notify_topic_arn)
ingestor = Ingestor(s3=s3, ledger=ledger, contracts=contracts, data_bucket=str(settings.data_bucket), notifier=notifier)
# Every record failed is still a partial-failure answer (no exception): SQS retries exactly those messages.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

_UNITS = {
    "FilesAccepted": MetricUnit.Count,
    "FilesQuarantined": MetricUnit.Count,
    "BytesValidated": MetricUnit.Bytes,
    "RowsRead": MetricUnit.Count,
    "BadRows": MetricUnit.Count,
    "ValidationSeconds": MetricUnit.Seconds,
}


def _emit(outcome: IngestOutcome) -> None:
    """One EMF document per file, so each carries its own dataset dimension."""
    if not outcome.metrics or outcome.dataset is None:
        return
    metrics.add_dimension(name="dataset", value=outcome.dataset)
    for name, value in outcome.metrics.items():
        metrics.add_metric(name=name, unit=_UNITS[name], value=value)
    metrics.flush_metrics()


@tracer.capture_method
def record_handler(record: SQSRecord) -> list[str]:
    """Ingest every object named by one message; raising fails just this message."""
    statuses = []
    for ref in parse_notification(record.body):
        outcome = ingestor.ingest(ref, now=datetime.now(UTC))
        logger.info(
            "ingested",
            extra={
                "key": ref.key,
                "status": outcome.status,
                "reason": outcome.reason,
                "file_status": outcome.file_status,
            },
        )
        _emit(outcome)
        statuses.append(outcome.status)
        if outcome.dataset is not None and outcome.file_status in (ACCEPTED, BATCHED):
            # Also on a duplicate: a redelivery after a throttled StartJobRun must finish the batch.
            contract = outcome.contract or contracts.get(outcome.dataset)
            if contract is not None:
                started = maybe_start_batch(
                    outcome.dataset,
                    contract,
                    ledger=ledger,
                    s3=s3,
                    emr=emr,
                    settings=settings,
                    now=datetime.now(UTC),
                    just_accepted=[outcome.sk] if outcome.sk else (),  # the waiting index may not show it yet
                )
                if started is not None:
                    logger.info("batch started", extra={"batch_id": started.batch_id, "job_run_id": started.job_run_id})
    return statuses


# No @metrics.log_metrics: each file's metrics are flushed as their own EMF document (dimension dataset) right
# after its ledger entry, so there is never anything left to publish at the end of the invocation.
@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event,
        record_handler=record_handler,
        processor=processor,
        context=context,
    )
