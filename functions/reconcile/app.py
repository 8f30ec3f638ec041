"""ReconcileFunction (schedule): recovers what events did not deliver.

For every dataset: runs and training jobs whose terminal event never came are asked about and processed as if
the event had come; a lease left behind by a processed run is released; files past max_wait are batched; a
half-started batch under an expired lease is finished (dropzone.runs.reconcile); files SKIPPED before their
dataset's contract was published are sent to the ingest queue again (dropzone.ingest.redrive_skipped). Invoked
directly with ``{"flush": true}`` it batches every waiting file at once. The invocation fails (and the
errors alarm fires) when any dataset could not be reconciled; the others are still done.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from dropzone import aws
from dropzone.ingest import redrive_skipped
from dropzone.observability import logger, metrics, tracer
from dropzone.runs import Completions, reconcile, utcnow
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
# Files SKIPPED before their dataset's contract was published go back to the ingest queue (unset: not redriven).
sqs = aws.client("sqs", lazy=True)


class ReconcileFailed(RuntimeError):
    """At least one dataset could not be reconciled (its error is in the log and in this message)."""


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The schedule sends an EventBridge event; an operator may invoke with {"flush": true} to batch every
    # waiting file now instead of after max_wait (e.g. fewer files than min_files and no wish to wait).
    flush = event.get("flush") is True
    now = utcnow()
    reports = reconcile(completions, now=now, flush=flush)
    redriven = 0
    if settings.ingest_queue_url:
        for r in reports:
            if r.error:
                continue
            try:
                redriven += len(redrive_skipped(completions.ledger, sqs, settings.ingest_queue_url, r.dataset, now=now))
            except Exception as e:
                logger.exception("redrive failed", extra={"dataset": r.dataset})
                r.error = f"redrive of skipped files: {type(e).__name__}: {e}"
    metrics.add_metric(name="SkippedFilesRedriven", unit=MetricUnit.Count, value=redriven)
    metrics.add_metric(name="RunsRecovered", unit=MetricUnit.Count, value=sum(len(r.runs) for r in reports))
    metrics.add_metric(name="TrainingsRecovered", unit=MetricUnit.Count, value=sum(len(r.trainings) for r in reports))
    metrics.add_metric(name="BatchesFlushed", unit=MetricUnit.Count, value=sum(r.started is not None for r in reports))
    summary = {"datasets": [r.to_dict() for r in reports]}
    logger.info("reconciled", extra=summary)
    failed = [r for r in reports if r.error]
    if failed:
        raise ReconcileFailed("; ".join(f"{r.dataset}: {r.error}" for r in failed))
    return summary
