"""ModelTrainedFunction: SageMaker "Training Job State Change" events (EventBridge → SQS) → gate and register.

Thin adapter over dropzone.runs.Completions.training_job_finished: DescribeTrainingJob is the truth; the job's
name is claimed in the ledger before registering, so a duplicate event registers nothing twice.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from dropzone.observability import logger, metrics, tracer
from dropzone.runs import (
    SAGEMAKER_DETAIL_TYPE,
    SAGEMAKER_SOURCE,
    TRAINING_TERMINAL,
    Completions,
    TrainingOutcome,
    event_detail,
    utcnow,
)
from dropzone.settings import Settings

settings = Settings.from_env().require("data_bucket", "ledger_table")
completions = Completions.from_settings(settings)
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def emit(outcome: TrainingOutcome) -> None:
    """ModelsApproved / ModelsPending / ModelsRejected / TrainingJobsFailed, and TrainingCostUSD when the instance
    type has a price, once per job."""
    if not outcome.first_time or outcome.dataset is None:
        return
    if outcome.decision is not None:
        name = {"Approved": "ModelsApproved", "PendingManualApproval": "ModelsPending"}.get(
            outcome.decision.status, "ModelsRejected"
        )
    else:
        name = "TrainingJobsFailed"
    metrics.add_dimension(name="dataset", value=outcome.dataset)
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=1)
    if outcome.cost is not None and outcome.cost.cost_usd is not None:
        metrics.add_metric(name="TrainingCostUSD", unit=MetricUnit.NoUnit, value=outcome.cost.cost_usd)
    metrics.flush_metrics()


@tracer.capture_method
def record_handler(record: SQSRecord) -> str:
    detail = event_detail(
        record.body, source=SAGEMAKER_SOURCE, detail_type=SAGEMAKER_DETAIL_TYPE, required=("TrainingJobName",)
    )
    if detail is None:
        logger.warning("not a SageMaker training job state change: ignored", extra={"message_id": record.message_id})
        return "ignored"
    if detail.get("TrainingJobStatus") not in TRAINING_TERMINAL:
        logger.info("training job not terminal: ignored", extra={"training_job": detail["TrainingJobName"]})
        return "ignored"
    outcome = completions.training_job_finished(str(detail["TrainingJobName"]), now=utcnow())
    logger.info(
        "training job",
        extra={
            "training_job": outcome.name,
            "event_status": detail.get("TrainingJobStatus"),
            "status": outcome.status,
            "action": outcome.action,
            "dataset": outcome.dataset,
            "decision": outcome.decision.to_dict() if outcome.decision else None,
            "model_package_arn": outcome.model_package_arn,
        },
    )
    emit(outcome)
    return outcome.action


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
