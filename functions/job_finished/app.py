"""JobFinishedFunction: EMR Serverless "Job Run State Change" events (EventBridge → SQS) → record, train, retry.

Thin adapter: the EventBridge envelope is unpacked here, the work is dropzone.runs.Completions.job_run_finished,
which asks GetJobRun for the truth and is safe to repeat. A message fails (SQS redelivers it) only when the work
could not finish, e.g. a throttled StartJobRun for the next batch.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from dropzone.observability import logger, metrics, tracer
from dropzone.runs import EMR_DETAIL_TYPE, EMR_SOURCE, EMR_TERMINAL, Completions, RunOutcome, event_detail, utcnow
from dropzone.settings import Settings

settings = Settings.from_env().require(
    "data_bucket",
    "ledger_table",
    "emr_application_id",
    "emr_job_role_arn",
    "spark_entry_point",
    "sagemaker_role_arn",
    "training_source_uri",
)
completions = Completions.from_settings(settings)
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def emit(outcome: RunOutcome) -> None:
    """RunCostUSD, RunSeconds and the outcome count, once per run (the first time its end is recorded)."""
    if not outcome.first_time or outcome.dataset is None or outcome.cost is None:
        return
    metrics.add_dimension(name="dataset", value=outcome.dataset)
    metrics.add_metric(name="RunCostUSD", unit=MetricUnit.NoUnit, value=outcome.cost.cost_usd)
    metrics.add_metric(name="RunSeconds", unit=MetricUnit.Seconds, value=outcome.duration_s or 0.0)
    metrics.add_metric(
        name="RunsSucceeded" if outcome.state == "SUCCESS" else "RunsFailed", unit=MetricUnit.Count, value=1
    )
    metrics.flush_metrics()


@tracer.capture_method
def record_handler(record: SQSRecord) -> str:
    detail = event_detail(
        record.body, source=EMR_SOURCE, detail_type=EMR_DETAIL_TYPE, required=("jobRunId", "applicationId")
    )
    if detail is None:
        logger.warning("not an EMR Serverless job run state change: ignored", extra={"message_id": record.message_id})
        return "ignored"
    if detail.get("state") not in EMR_TERMINAL:  # also when it comes late, after the terminal one
        logger.info(
            "job run not terminal: ignored", extra={"job_run_id": detail["jobRunId"], "state": detail.get("state")}
        )
        return "ignored"
    outcome = completions.job_run_finished(str(detail["applicationId"]), str(detail["jobRunId"]), now=utcnow())
    logger.info(
        "job run",
        extra={
            "job_run_id": outcome.job_run_id,
            "event_state": detail.get("state"),
            "state": outcome.state,
            "action": outcome.action,
            "dataset": outcome.dataset,
            "batch_id": outcome.batch_id,
            "cost_usd": outcome.cost.cost_usd if outcome.cost else None,
            "training_job": outcome.training_job,
            "next_job_run_id": outcome.next_batch.job_run_id if outcome.next_batch else None,
            "notes": outcome.notes,
        },
    )
    emit(outcome)
    return outcome.action


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
