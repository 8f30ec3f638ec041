"""Completion handling shared by JobFinishedFunction, ModelTrainedFunction and ReconcileFunction.

An EMR Serverless run or a SageMaker training job reached a terminal state (its event came, or the reconciler
asked the service): record it, then do what follows. Every step is a conditional write or an idempotent call,
so the same completion processed twice, late, or after the next one leaves the ledger as processing it once:

- run SUCCESS: run item + cost, batch SUCCEEDED and its files DONE, the training job created under its
  deterministic name (``ResourceInUse`` = exists), the lease released, the next batch started;
- run FAILED/CANCELLED: attempt + 1 through :func:`dropzone.batching.start_batch_attempt`, or, after
  ``batching.max_attempts``, batch and files FAILED for good and an SNS notification naming files and reason;
- training Completed: metrics.json published next to the model, judged by :mod:`dropzone.gate`, registered once
  (the training item in the ledger is claimed before registering); Failed/Stopped: recorded and notified.

The service's answer (GetJobRun / DescribeTrainingJob) is the truth, never the event's state.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from dropzone import aws, gate
from dropzone.batching import StartedBatch, maybe_start_batch, start_batch_attempt
from dropzone.contract import Contract, Gate
from dropzone.costs import (
    RunCost,
    TrainingCost,
    prices_from_settings,
    run_cost,
    training_cost,
    training_prices_from_settings,
)
from dropzone.ingest import ContractStore
from dropzone.ledger import (
    BATCH_FAILED,
    BATCH_RETRYING,
    BATCH_RUNNING,
    BATCH_STARTING,
    BATCH_SUCCEEDED,
    BATCHED,
    DONE,
    FAILED,
    Ledger,
    dataset_pk,
    iso,
)
from dropzone.notify import Notifier
from dropzone.observability import logger
from dropzone.settings import Settings
from dropzone.training_jobs import (
    TrainingQuotaError,
    build_training_job_request,
    create_training_job,
    inputs_from_manifest,
    model_package_group_name,
    training_job_name,
    untrainable,
)

EMR_TERMINAL = frozenset({"SUCCESS", "FAILED", "CANCELLED"})
EMR_FAILED = frozenset({"FAILED", "CANCELLED"})
TRAINING_TERMINAL = frozenset({"Completed", "Failed", "Stopped"})
TRAINING_IN_PROGRESS = "InProgress"
TRAINING_BLOCKED = "Blocked"  # CreateTrainingJob refused for a quota; the JobFinished message is in the DLQ


class CompletionError(RuntimeError):
    """A completion cannot be processed now (e.g. its batch is unknown); the message is retried, then DLQ'd."""


def run_sk(job_run_id: str) -> str:
    return f"RUN#{job_run_id}"


def training_sk(name: str) -> str:
    return f"TRAINING#{name}"


# ---- events: EventBridge → SQS, the message body is the EventBridge event ----------------------------------

EMR_SOURCE = "aws.emr-serverless"
EMR_DETAIL_TYPE = "EMR Serverless Job Run State Change"
SAGEMAKER_SOURCE = "aws.sagemaker"
SAGEMAKER_DETAIL_TYPE = "SageMaker Training Job State Change"


class BadEvent(ValueError):
    """A queue message that is not an EventBridge event; says what is wrong with it."""


def event_detail(body: str, *, source: str, detail_type: str, required: tuple[str, ...]) -> dict[str, Any] | None:
    """The ``detail`` of an EventBridge event of ``source``/``detail_type``; None for any other event."""
    try:
        event = json.loads(body)
    except ValueError as e:
        raise BadEvent(f"message body is not JSON: {e}") from None
    if not isinstance(event, dict):
        raise BadEvent(f"message body is a JSON {type(event).__name__}, not an EventBridge event object")
    if event.get("source") != source or event.get("detail-type") != detail_type:
        return None
    detail = event.get("detail")
    if not isinstance(detail, dict):
        raise BadEvent(f"{detail_type} event {event.get('id', '?')} has no detail object")
    missing = [k for k in required if not detail.get(k)]
    if missing:
        raise BadEvent(f"{detail_type} event {event.get('id', '?')} lacks detail.{', detail.'.join(missing)}")
    return detail


# ---- contracts published by the deploy -------------------------------------------------------------------


def published_datasets(s3: Any, bucket: str, prefix: str) -> list[str]:
    """Datasets with a contract under s3://bucket/prefix (what the reconciler walks)."""
    names: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            rest = obj["Key"][len(prefix) :]
            if rest.endswith(".yaml") and "/" not in rest:
                names.append(rest[: -len(".yaml")])
    return sorted(names)


def _contract(contracts: ContractStore, dataset: str) -> Contract:
    contract = contracts.get(dataset)
    if contract is None:
        raise CompletionError(f"no contract published for dataset {dataset} at {contracts.uri(dataset)}")
    return contract


# ---- outcomes --------------------------------------------------------------------------------------------


@dataclass
class RunOutcome:
    """What processing one EMR run's completion did (for logs, metrics and tests)."""

    job_run_id: str
    state: str
    action: str  # ignored | succeeded | retried | gave_up | stale
    dataset: str | None = None
    batch_id: str | None = None
    attempt: int | None = None
    cost: RunCost | None = None
    first_time: bool = False  # the run's terminal state was recorded by this call (emit metrics once)
    duration_s: float | None = None
    training_job: str | None = None
    next_batch: StartedBatch | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class TrainingOutcome:
    name: str
    status: str
    action: str  # ignored | registered | duplicate | failed
    dataset: str | None = None
    decision: gate.Decision | None = None
    model_package_arn: str | None = None
    first_time: bool = False
    cost: TrainingCost | None = None


# ---- the handler-independent core ------------------------------------------------------------------------


class Completions:
    """Processes terminal EMR runs and SageMaker training jobs; one instance per Lambda container."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        s3: Any,
        emr: Any,
        sagemaker: Any,
        notifier: Notifier,
        settings: Settings,
        contracts: ContractStore,
        region: str,
    ) -> None:
        self.ledger = ledger
        self.s3 = s3
        self.emr = emr
        self.sagemaker = sagemaker
        self.notifier = notifier
        self.settings = settings
        self.contracts = contracts
        self.region = region

    @classmethod
    def from_settings(cls, settings: Settings) -> Completions:
        """The instance a Lambda container uses: clients from dropzone.aws (standard retries, endpoint variables),
        each created on its first use (a cold start pays only for those its first event needs)."""
        s3 = aws.client("s3", lazy=True)
        return cls(
            ledger=Ledger(str(settings.ledger_table), aws.client("dynamodb", lazy=True)),
            s3=s3,
            emr=aws.client("emr-serverless", lazy=True),
            sagemaker=aws.client("sagemaker", lazy=True),
            notifier=Notifier(aws.client("sns", lazy=True), settings.notify_topic_arn),
            settings=settings,
            contracts=ContractStore(s3, str(settings.data_bucket), settings.contracts_prefix),
            region=aws.region_name(),
        )

    # ---- EMR Serverless runs --------------------------------------------------------------------------

    def job_run_finished(self, application_id: str, job_run_id: str, *, now: datetime) -> RunOutcome:
        """Process a run whose state-change event (or the reconciler) says it may be over."""
        if application_id != self.settings.emr_application_id:
            return RunOutcome(job_run_id, "", "ignored", notes=[f"application {application_id} is not ours"])
        run = self.emr.get_job_run(applicationId=application_id, jobRunId=job_run_id)["jobRun"]
        state = str(run["state"])
        if state not in EMR_TERMINAL:
            return RunOutcome(job_run_id, state, "ignored", notes=["not terminal"])
        tags = run.get("tags") or {}
        dataset = tags.get("dataset")
        batch_id = tags.get("batch_id")
        if not dataset or not batch_id:
            return RunOutcome(job_run_id, state, "ignored", notes=["run has no dataset/batch_id tags: not dropzone's"])
        run_id = _argument(run, "--run-id") or f"{batch_id}-{tags.get('attempt', '1')}"
        attempt = int(tags.get("attempt") or run_id.rsplit("-", 1)[-1])
        contract = _contract(self.contracts, dataset)
        cost = run_cost(run.get("billedResourceUtilization"), prices_from_settings(self.settings))
        duration = _duration_s(run)
        features_uri = f"s3://{self.settings.data_bucket}/features/{dataset}/run={run_id}/"
        outcome = RunOutcome(job_run_id, state, "", dataset, batch_id, attempt, cost, duration_s=duration)
        outcome.first_time = self._record_run(
            dataset,
            job_run_id,
            {
                "batch_id": batch_id,
                "attempt": attempt,
                "run_id": run_id,
                "state": state,
                "state_details": str(run.get("stateDetails") or ""),
                "duration_s": duration,
                **cost.to_dict(),
                "features_uri": features_uri if state == "SUCCESS" else None,
                "finished_at": iso(now),
            },
        )
        batch = self.ledger.get_batch(dataset, batch_id)
        if batch is None:
            raise CompletionError(f"run {job_run_id} names batch {batch_id} of {dataset}, which the ledger lacks")
        if int(batch.get("attempt", 0)) != attempt:
            # An older attempt's late or repeated event: the batch has moved on.
            outcome.action = "stale"
            outcome.notes.append(f"batch is at attempt {batch.get('attempt')}, this run was attempt {attempt}")
            if int(batch.get("attempt", 0)) > attempt and batch.get("status") == BATCH_STARTING:
                outcome.next_batch = self._retry(dataset, batch_id, now)  # finish a retry a crash interrupted
            return outcome
        if state == "SUCCESS":
            self._succeeded(dataset, contract, batch, run, run_id, outcome, now)
        else:
            self._failed(dataset, contract, batch, run, outcome, now)
        return outcome

    def _record_run(self, dataset: str, job_run_id: str, record: Mapping[str, Any]) -> bool:
        """Put the run item; True when this call recorded the terminal state (first time)."""
        item = {"pk": dataset_pk(dataset), "sk": run_sk(job_run_id), "dataset": dataset, "job_run_id": job_run_id}
        if self.ledger.put_item_if_absent({**item, **record}):
            return True
        changed = self.ledger.update_with_condition(
            dataset_pk(dataset),
            run_sk(job_run_id),
            set_values={k: v for k, v in record.items() if v is not None},
            condition="attribute_not_exists(#state) OR #state <> :state",
            condition_names={"#state": "state"},
            condition_values={"state": record["state"]},
        )
        return changed is not None

    def _succeeded(
        self,
        dataset: str,
        contract: Contract,
        batch: Mapping[str, Any],
        run: Mapping[str, Any],
        run_id: str,
        outcome: RunOutcome,
        now: datetime,
    ) -> None:
        batch_id = str(batch["batch_id"])
        job_run_id = str(run["jobRunId"])
        updated = self.ledger.update_batch(
            dataset,
            batch_id,
            expect_status=(BATCH_STARTING, BATCH_RUNNING, BATCH_SUCCEEDED),
            expect_attempt=outcome.attempt,
            status=BATCH_SUCCEEDED,
            job_run_id=job_run_id,  # also when the run ended before StartJobRun's answer was recorded
            finished_at=iso(now),
        )
        if updated is None:
            outcome.action = "stale"
            outcome.notes.append(f"batch {batch_id} is {batch.get('status')}: success not applied")
            return
        for sk in batch.get("files", []):
            self._move_file(dataset, str(sk), batch_id, DONE)
        outcome.action = "succeeded"
        if contract.is_reference or contract.training is None:
            outcome.notes.append("reference dataset: nothing to train")
        else:
            manifest = self._run_manifest(dataset, run_id)
            skipped = untrainable(manifest)
            if skipped is None:
                outcome.training_job = self._start_training(dataset, contract, manifest, job_run_id, run_id, now)
            else:
                self.ledger.update_with_condition(
                    dataset_pk(dataset), run_sk(job_run_id), set_values={"training_skipped": skipped}
                )
                outcome.notes.append(f"training skipped: {skipped}")
        self.ledger.release_lease(dataset, batch_id)
        outcome.next_batch = maybe_start_batch(
            dataset,
            contract,
            ledger=self.ledger,
            s3=self.s3,
            emr=self.emr,
            settings=self.settings,
            now=now,
        )

    def _run_manifest(self, dataset: str, run_id: str) -> dict[str, Any]:
        """The ``_manifest.json`` the Spark job wrote last for the run."""
        bucket = str(self.settings.require("data_bucket").data_bucket)
        prefix = f"features/{dataset}/run={run_id}/"
        try:
            body = self.s3.get_object(Bucket=bucket, Key=f"{prefix}_manifest.json")["Body"].read()
        except ClientError as e:
            raise CompletionError(
                f"run {run_id} of {dataset} succeeded but s3://{bucket}/{prefix}_manifest.json cannot be read "
                f"({e.response.get('Error', {}).get('Code')}): the Spark job writes it last; retrying"
            ) from e
        try:
            manifest = json.loads(body)
        except ValueError as e:
            raise CompletionError(f"s3://{bucket}/{prefix}_manifest.json is not JSON: {e}") from e
        if not isinstance(manifest, dict):
            raise CompletionError(f"s3://{bucket}/{prefix}_manifest.json is not a JSON object")
        return manifest

    def _start_training(
        self,
        dataset: str,
        contract: Contract,
        manifest: Mapping[str, Any],
        job_run_id: str,
        run_id: str,
        now: datetime,
    ) -> str:
        settings = self.settings.require("data_bucket", "sagemaker_role_arn", "training_source_uri")
        bucket = str(settings.data_bucket)
        prefix = f"features/{dataset}/run={run_id}/"
        inputs = inputs_from_manifest(
            manifest, dataset=dataset, run_id=run_id, job_run_id=job_run_id, run_prefix=f"s3://{bucket}/{prefix}"
        )
        name = training_job_name(settings.training_job_prefix, dataset, job_run_id)
        request = build_training_job_request(
            inputs,
            contract,
            name=name,
            region=self.region,
            role_arn=str(settings.sagemaker_role_arn),
            source_uri=str(settings.training_source_uri),
            output_uri=f"s3://{bucket}/models/{dataset}/",
        )
        # Recorded first, so the reconciler can ask about a job whose event never comes.
        self.ledger.put_item_if_absent(
            {
                "pk": dataset_pk(dataset),
                "sk": training_sk(name),
                "dataset": dataset,
                "name": name,
                "run_id": run_id,
                "job_run_id": job_run_id,
                "status": TRAINING_IN_PROGRESS,
                "created_at": iso(now),
            }
        )
        try:
            description, created = create_training_job(self.sagemaker, request)
        except TrainingQuotaError as e:
            self._blocked(dataset, name, job_run_id, str(e), now)
            raise
        # A job blocked before (quota) that now exists is in progress again.
        self.ledger.update_with_condition(
            dataset_pk(dataset),
            training_sk(name),
            set_values={"status": TRAINING_IN_PROGRESS},
            remove=("failure_reason",),
            condition="#st = :blocked",
            condition_names={"#st": "status"},
            condition_values={"blocked": TRAINING_BLOCKED},
        )
        logger.info(
            "training job",
            extra={"training_job": name, "job_created": created, "status": description.get("TrainingJobStatus")},
        )
        self.ledger.update_with_condition(dataset_pk(dataset), run_sk(job_run_id), set_values={"training_job": name})
        return name

    def _blocked(self, dataset: str, name: str, job_run_id: str, reason: str, now: datetime) -> None:
        """SageMaker refused the job for a quota: recorded, people told once; the message fails loudly (DLQ)."""
        first = self.ledger.update_with_condition(
            dataset_pk(dataset),
            training_sk(name),
            set_values={"status": TRAINING_BLOCKED, "failure_reason": reason, "finished_at": iso(now)},
            condition="#st <> :blocked",
            condition_names={"#st": "status"},
            condition_values={"blocked": TRAINING_BLOCKED},
        )
        if first is not None:
            self.notifier.publish(
                "training_blocked",
                f"{dataset} training job {name} blocked by a SageMaker quota",
                {"dataset": dataset, "training_job": name, "job_run_id": job_run_id, "reason": reason},
            )

    def _failed(
        self,
        dataset: str,
        contract: Contract,
        batch: Mapping[str, Any],
        run: Mapping[str, Any],
        outcome: RunOutcome,
        now: datetime,
    ) -> None:
        batch_id = str(batch["batch_id"])
        attempt = int(outcome.attempt or 0)
        reason = str(run.get("stateDetails") or f"run ended {run['state']}")
        if batch.get("status") in (BATCH_FAILED, BATCH_SUCCEEDED):
            outcome.action = "stale"
            outcome.notes.append(f"batch {batch_id} is already {batch.get('status')}")
            return
        if attempt < contract.batching.max_attempts:
            marked = self.ledger.update_batch(
                dataset,
                batch_id,
                expect_status=(BATCH_STARTING, BATCH_RUNNING, BATCH_RETRYING),
                expect_attempt=attempt,
                status=BATCH_RETRYING,
                last_error=reason,
                job_run_id=str(run["jobRunId"]),
            )
            if marked is None:
                raise CompletionError(f"batch {batch_id} changed while retrying attempt {attempt}; retrying")
            outcome.action = "retried"
            outcome.next_batch = self._retry(dataset, batch_id, now)
            return
        # Out of attempts: files and batch FAILED for good, people told which files and why.
        files = [str(sk) for sk in batch.get("files", [])]
        for sk in files:
            self._move_file(dataset, sk, batch_id, FAILED, reason=reason)
        self.notifier.publish(
            "batch_failed",
            f"{dataset} batch {batch_id[:12]} failed {attempt} time(s), files need attention",
            {
                "dataset": dataset,
                "batch_id": batch_id,
                "attempts": attempt,
                "job_run_id": run["jobRunId"],
                "state": run["state"],
                "reason": reason,
                "files": [sk.removeprefix("FILE#") for sk in files],
            },
        )
        self.ledger.update_batch(
            dataset,
            batch_id,
            expect_status=(BATCH_STARTING, BATCH_RUNNING, BATCH_RETRYING),
            expect_attempt=attempt,
            status=BATCH_FAILED,
            last_error=reason,
            finished_at=iso(now),
        )
        outcome.action = "gave_up"
        self.ledger.release_lease(dataset, batch_id)
        outcome.next_batch = maybe_start_batch(
            dataset, contract, ledger=self.ledger, s3=self.s3, emr=self.emr, settings=self.settings, now=now
        )

    def _retry(self, dataset: str, batch_id: str, now: datetime) -> StartedBatch | None:
        return start_batch_attempt(
            dataset, batch_id, ledger=self.ledger, s3=self.s3, emr=self.emr, settings=self.settings, now=now
        )

    def _move_file(self, dataset: str, sk: str, batch_id: str, status: str, **attributes: Any) -> None:
        self.ledger.update_with_condition(
            dataset_pk(dataset),
            sk,
            set_values={"status": status, **attributes},
            condition="#st = :batched AND batch_id = :batch",
            condition_names={"#st": "status"},
            condition_values={"batched": BATCHED, "batch": batch_id},
        )

    # ---- SageMaker training jobs ----------------------------------------------------------------------

    def training_job_finished(self, name: str, *, now: datetime) -> TrainingOutcome:
        """Process a training job whose state-change event (or the reconciler) says it may be over."""
        if not name.startswith(f"{self.settings.training_job_prefix}-"):
            return TrainingOutcome(name, "", "ignored")
        job = self.sagemaker.describe_training_job(TrainingJobName=name)
        status = str(job["TrainingJobStatus"])
        hps = {k: _json_or_text(v) for k, v in (job.get("HyperParameters") or {}).items()}
        dataset = hps.get("dataset")
        if status not in TRAINING_TERMINAL or not dataset:
            return TrainingOutcome(name, status, "ignored", dataset)
        dataset = str(dataset)
        pk, sk = dataset_pk(dataset), training_sk(name)
        self.ledger.put_item_if_absent(
            {"pk": pk, "sk": sk, "dataset": dataset, "name": name, "run_id": hps.get("run_id"), "created_at": iso(now)}
        )
        item = self.ledger.get_item(pk, sk) or {}
        if item.get("model_package_arn") or item.get("status") in ("Failed", "Stopped"):
            return TrainingOutcome(name, status, "duplicate", dataset, model_package_arn=item.get("model_package_arn"))
        cost = training_cost(job, training_prices_from_settings(self.settings))
        if status != "Completed":
            return self._training_failed(dataset, name, job, now, cost)
        return self._register(dataset, name, job, item, now, cost)

    def _training_failed(
        self, dataset: str, name: str, job: Mapping[str, Any], now: datetime, cost: TrainingCost | None
    ) -> TrainingOutcome:
        status = str(job["TrainingJobStatus"])
        reason = str(job.get("FailureReason") or f"training job {status.lower()}")
        recorded = self.ledger.update_with_condition(
            dataset_pk(dataset),
            training_sk(name),
            set_values={"status": status, "failure_reason": reason, "finished_at": iso(now), **_cost_fields(cost)},
            condition="attribute_not_exists(#st) OR NOT #st IN (:failed, :stopped)",
            condition_names={"#st": "status"},
            condition_values={"failed": "Failed", "stopped": "Stopped"},
        )
        if recorded is None:
            return TrainingOutcome(name, status, "duplicate", dataset)
        self.notifier.publish(
            "training_failed",
            f"{dataset} training job {name} {status}",
            {"dataset": dataset, "training_job": name, "status": status, "reason": reason},
        )
        return TrainingOutcome(name, status, "failed", dataset, first_time=True, cost=cost)

    def _register(
        self,
        dataset: str,
        name: str,
        job: Mapping[str, Any],
        item: Mapping[str, Any],
        now: datetime,
        cost: TrainingCost | None,
    ) -> TrainingOutcome:
        contract = _contract(self.contracts, dataset)
        gate_settings = contract.training.gate if contract.training else Gate(metric="auc")
        model_data_url = str(job["ModelArtifacts"]["S3ModelArtifacts"])
        metrics = self._read_metrics(model_data_url, name)
        bucket = str(self.settings.data_bucket)
        metrics_key = f"models/{dataset}/{name}/metrics.json"
        self.s3.put_object(
            Bucket=bucket, Key=metrics_key, Body=json.dumps(metrics).encode(), ContentType="application/json"
        )
        group = model_package_group_name(self.settings.model_package_group_prefix, dataset)
        champion = gate.current_champion(self.sagemaker, group)
        decision = gate.decide(metrics, gate_settings, champion)
        # The claim: the job's name is in the ledger as "registering" before the package exists.
        claimed = self.ledger.update_with_condition(
            dataset_pk(dataset),
            training_sk(name),
            set_values={
                "status": "Completed",
                "metrics": {k: metrics.get(k) for k in ("validation", "baseline", "rows", "best_iteration")},
                "decision": decision.status,
                "decision_reason": decision.reason,
                "registering_at": iso(now),
                **_cost_fields(cost),
            },
            condition="attribute_not_exists(registering_at)",
        )
        arn = None if claimed is not None else gate.find_registered(self.sagemaker, group, name)
        if arn is None:
            arn = gate.register(
                self.sagemaker,
                group=group,
                dataset=dataset,
                image_uri=str(job["AlgorithmSpecification"]["TrainingImage"]),
                model_data_url=model_data_url,
                metrics_uri=f"s3://{bucket}/{metrics_key}",
                metrics=metrics,
                decision=decision,
                training_job_name=name,
            )
        self.ledger.update_with_condition(
            dataset_pk(dataset),
            training_sk(name),
            set_values={"model_package_arn": arn, "finished_at": iso(now)},
        )
        self.notifier.publish(
            "model_registered",
            f"{dataset} model {decision.status}: {decision.reason}",
            {"dataset": dataset, "training_job": name, "model_package_arn": arn, **decision.to_dict()},
        )
        return TrainingOutcome(
            name, "Completed", "registered", dataset, decision, arn, first_time=claimed is not None, cost=cost
        )

    def _read_metrics(self, model_data_url: str, name: str) -> dict[str, Any]:
        """metrics.json from the job's output.tar.gz (the sibling of model.tar.gz)."""
        if not model_data_url.endswith("/model.tar.gz"):
            raise CompletionError(f"training job {name}: unexpected model artifact location {model_data_url}")
        output_url = model_data_url[: -len("model.tar.gz")] + "output.tar.gz"
        bucket, _, key = output_url.removeprefix("s3://").partition("/")
        try:
            data = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as e:
            raise CompletionError(f"training job {name}: cannot read {output_url} for metrics.json") from e
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for member in archive.getmembers():
                if member.isfile() and member.name.rsplit("/", 1)[-1] == "metrics.json":
                    extracted = archive.extractfile(member)
                    if extracted is not None:
                        return dict(json.loads(extracted.read()))
        raise CompletionError(f"training job {name}: {output_url} holds no metrics.json")


# ---- the reconciler -----------------------------------------------------------------------------------------

# A run or training job whose terminal event has not been processed this long after it started is asked about.
RECONCILE_AFTER = timedelta(minutes=15)


@dataclass
class ReconcileReport:
    """What one reconciler pass did for one dataset."""

    dataset: str
    runs: list[RunOutcome] = field(default_factory=list)
    trainings: list[TrainingOutcome] = field(default_factory=list)
    leases_released: int = 0
    started: StartedBatch | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset,
            "runs": [{"job_run_id": r.job_run_id, "state": r.state, "action": r.action} for r in self.runs],
            "trainings": [{"name": t.name, "status": t.status, "action": t.action} for t in self.trainings],
            "leases_released": self.leases_released,
            "started_job_run_id": self.started.job_run_id if self.started else None,
            "error": self.error,
        }


def _older_than(moment: Any, now: datetime, age: timedelta) -> bool:
    if not moment:
        return True  # no time recorded: old enough to ask about
    when = datetime.fromisoformat(str(moment))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when + age <= now


def reconcile_dataset(
    completions: Completions,
    dataset: str,
    *,
    now: datetime,
    after: timedelta = RECONCILE_AFTER,
    flush: bool = False,
) -> ReconcileReport:
    """One dataset: runs and training jobs whose events never came, leases left behind, batches past max_wait
    (``flush``: every waiting file is due now, whatever its age)."""
    report = ReconcileReport(dataset)
    ledger = completions.ledger
    contract = _contract(completions.contracts, dataset)
    for batch in ledger.query_dataset(dataset, "BATCH#"):
        job_run_id = batch.get("job_run_id")
        started = batch.get("started_at") or batch.get("created_at")
        if batch.get("status") == BATCH_RUNNING and job_run_id and _older_than(started, now, after):
            application = str(completions.settings.emr_application_id)
            outcome = completions.job_run_finished(application, str(job_run_id), now=now)
            if outcome.action != "ignored":
                report.runs.append(outcome)
    for item in ledger.query_dataset(dataset, "TRAINING#", filter_status=TRAINING_IN_PROGRESS):
        if _older_than(item.get("created_at"), now, after):
            training = completions.training_job_finished(str(item["name"]), now=now)
            if training.action != "ignored":
                report.trainings.append(training)
    lease = ledger.get_lease(dataset)
    if lease is not None:
        owner = ledger.get_batch(dataset, str(lease["owner"]))
        if owner is not None and owner.get("status") in (BATCH_SUCCEEDED, BATCH_FAILED):
            # Its completion was processed but the lease was not given back (a crash in between).
            report.leases_released += int(ledger.release_lease(dataset, str(lease["owner"])))
    # The batching policy itself flushes files past max_wait and finishes or takes over expired leases.
    report.started = maybe_start_batch(
        dataset,
        contract,
        ledger=ledger,
        s3=completions.s3,
        emr=completions.emr,
        settings=completions.settings,
        now=now,
        force_due=flush,
    )
    return report


def reconcile(
    completions: Completions, *, now: datetime, after: timedelta = RECONCILE_AFTER, flush: bool = False
) -> list[ReconcileReport]:
    """Every dataset with a published contract; one dataset's failure does not stop the others."""
    settings = completions.settings
    reports = []
    for dataset in published_datasets(completions.s3, str(settings.data_bucket), settings.contracts_prefix):
        try:
            reports.append(reconcile_dataset(completions, dataset, now=now, after=after, flush=flush))
        except Exception as e:
            logger.exception("reconcile failed", extra={"dataset": dataset})
            reports.append(ReconcileReport(dataset, error=f"{type(e).__name__}: {e}"))
    return reports


def _argument(run: Mapping[str, Any], flag: str) -> str | None:
    arguments = list(((run.get("jobDriver") or {}).get("sparkSubmit") or {}).get("entryPointArguments") or [])
    for i, value in enumerate(arguments[:-1]):
        if value == flag:
            return str(arguments[i + 1])
    return None


def _cost_fields(cost: TrainingCost | None) -> dict[str, Any]:
    """A training job's billed time and cost for its ledger item (the cost left out when its price is unknown)."""
    if cost is None:
        return {}
    fields = {k: v for k, v in cost.to_dict().items() if v is not None}
    if cost.unpriced:
        fields["cost_note"] = f"no price for {', '.join(cost.unpriced)}: set PRICE_TRAINING"
    return fields


def _duration_s(run: Mapping[str, Any]) -> float:
    total = run.get("totalExecutionDurationSeconds")
    if total:
        return float(total)
    created, updated = run.get("createdAt"), run.get("updatedAt")
    if isinstance(created, datetime) and isinstance(updated, datetime):
        return max(0.0, (updated - created).total_seconds())
    return 0.0


def _json_or_text(value: Any) -> Any:
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)
