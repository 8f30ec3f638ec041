"""The whole pipeline through its real handlers against moto, with the queues and the AWS services modelled.

What is real: the four functions (functions/*/app.py, imported fresh like a new Lambda container), the ledger,
S3, DynamoDB, EMR Serverless, SageMaker and SNS in moto. What is modelled here, because moto does not do it:

- the SQS queues in front of the functions: every message can be delivered several times and in any order
  (seeded), batches of 10, a failed message (``batchItemFailures``) is received again, after 5 receives it goes
  to the DLQ (template.yaml's ``maxReceiveCount``); a crashed invocation fails its whole batch and the next one
  runs in a new container;
- EMR Serverless and SageMaker semantics moto lacks: the same ``clientToken`` returns the same job run, an
  existing training job name answers ``ResourceInUse``; runs and training jobs "execute" (feature manifest,
  model output) and their state-change events are put on the completion queues; runs and jobs can be made to
  fail, calls to be throttled, events to be lost and functions to crash at a chosen call.
"""

from __future__ import annotations

import io
import json
import random
import tarfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from types import ModuleType
from typing import Any
from urllib.parse import quote_plus

import pytest
from botocore.awsrequest import AWSResponse

from dropzone.runs import utcnow
from dropzone.training_jobs import model_package_group_name
from tests.unit.completion_stack import BUCKET, REPO, Stack, emr_event, load_app, make_stack, training_event

MAX_RECEIVE = 5  # template.yaml: RedrivePolicy maxReceiveCount of every queue
SQS_BATCH = 10  # template.yaml: BatchSize of every event source mapping
TERMINAL_FILE = frozenset({"DONE", "QUARANTINED", "FAILED", "SKIPPED"})
SCHEDULE = json.loads((REPO / "events" / "schedule_reconcile.json").read_text())
SQS_RECORD = json.loads((REPO / "events" / "ingest_accepted.json").read_text())["Records"][0]
FUNCTIONS = ("ingest", "job_finished", "model_trained")
HEADER = "order_id,customer_id,order_ts,product_id,amount,quantity,returned,review_text\n"


class Crash(BaseException):
    """The function's process dies mid-invocation: not an Exception, so no batch processor catches it."""


def good_csv(n: int, rows: int = 3) -> bytes:
    """A small valid orders file; ids are unique across files."""
    lines = [
        f"O{n * 10 + i:08d},C{(n + i) % 500:06d},2025-0{1 + n % 9}-{1 + i % 28:02d}T10:00:00Z,P{n % 90:05d},"
        f"{10 + (n + i) % 40}.5,{1 + i % 3},false,ok\n"
        for i in range(rows)
    ]
    return (HEADER + "".join(lines)).encode()


def bad_csv(n: int) -> bytes:
    """An orders file without its amount column: quarantined as a schema error."""
    return (
        b"order_id,customer_id,order_ts,product_id,quantity,returned,review_text\n"
        + f"O{n * 10:08d},C000001,2025-03-01T10:00:00Z,P00001,1,false,ok\n".encode()
    )


def training_output(metrics: dict[str, Any]) -> tuple[bytes, bytes]:
    """model.tar.gz and output.tar.gz as SageMaker uploads them after training/train.py."""

    def tar(name: str, data: bytes) -> bytes:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    return tar("xgboost-model", b"{}"), tar("metrics.json", json.dumps(metrics).encode())


@dataclass
class Message:
    id: str
    body: str
    receives: int = 0


@dataclass
class Queue:
    """An SQS queue with its redrive policy, delivering in an order the seeded rng chooses."""

    name: str
    rng: random.Random
    pending: list[Message] = field(default_factory=list)
    dlq: list[Message] = field(default_factory=list)
    sent: int = 0  # distinct messages (events)
    delivered: int = 0  # receives, duplicates and redeliveries included
    redelivered: int = 0  # receives after a failure

    def send(self, body: str, copies: int = 1) -> None:
        self.sent += 1
        for c in range(copies):
            message = Message(f"{self.name}-{self.sent:05d}-{c}", body)
            self.pending.insert(self.rng.randint(0, len(self.pending)), message)

    def receive(self) -> list[Message]:
        batch, self.pending = self.pending[:SQS_BATCH], self.pending[SQS_BATCH:]
        for m in batch:
            m.receives += 1
            self.delivered += 1
        return batch

    def failed(self, message: Message) -> None:
        if message.receives >= MAX_RECEIVE:
            self.dlq.append(message)
            return
        self.redelivered += 1
        self.pending.insert(self.rng.randint(0, len(self.pending)), message)


@dataclass
class Faults:
    """What goes wrong, chosen by the test. Counters are 1-based call numbers across all functions."""

    crash_start_job_run_at: set[int] = field(default_factory=set)  # crash right before these StartJobRun calls
    throttle_start_job_run_at: set[int] = field(default_factory=set)
    throttle_create_training_at: set[int] = field(default_factory=set)
    fail_runs: set[int] = field(default_factory=set)  # the n-th job run created ends FAILED
    fail_batches_always: int = 0  # the first run's batch fails on every attempt
    fail_trainings: set[int] = field(default_factory=set)  # the n-th training job created ends Failed
    lose_run_events: set[int] = field(default_factory=set)  # the n-th run's state-change event never comes
    lose_training_events: set[int] = field(default_factory=set)


def _error(code: str, status: int = 400) -> tuple[AWSResponse, dict[str, Any]]:
    response = AWSResponse("https://example.invalid/", status, {}, None)
    error = {"Code": code, "Message": f"injected {code}"}
    return response, {"Error": error, "ResponseMetadata": {"HTTPStatusCode": status}}


def _ok(parsed: dict[str, Any]) -> tuple[AWSResponse, dict[str, Any]]:
    response = AWSResponse("https://example.invalid/", 200, {}, None)
    return response, {**parsed, "ResponseMetadata": {"HTTPStatusCode": 200}}


class Pipeline:
    """The stack, the functions, the queues and the fake services; drive it with :meth:`run_until_idle`."""

    def __init__(
        self,
        monkeypatch: pytest.MonkeyPatch,
        context: Any,
        *,
        seed: int,
        copies: tuple[int, int] = (1, 1),
        min_files: int = 10,
        max_attempts: int = 3,
        faults: Faults | None = None,
    ) -> None:
        self.stack: Stack = make_stack(monkeypatch, min_files=min_files, max_attempts=max_attempts)
        self.monkeypatch = monkeypatch
        self.context = context
        self.rng = random.Random(seed)
        self.copies = copies
        self.faults = faults or Faults()
        self.queues = {name: Queue(name, self.rng) for name in FUNCTIONS}
        self.apps: dict[str, ModuleType] = {}
        self.crashes = 0
        self.reconciler_passes = 0
        self.reconciler_errors = 0
        self.files: dict[str, str] = {}  # key → expected decision (ACCEPTED or QUARANTINED)
        self.runs: dict[str, dict[str, Any]] = {}  # clientToken → {job_run_id, dataset, batch_id, attempt, failed}
        self.failing_runs: dict[str, str] = {}  # job run id → failure details
        self.doomed_batch: str | None = None
        self.trainings: Counter[str] = Counter()  # training job name → creations that reached SageMaker
        self.failing_trainings: set[str] = set()
        self.calls: Counter[str] = Counter()
        self.max_running_per_dataset = 0
        self.in_flight: dict[str, set[str]] = {}  # dataset → batch ids whose run may still be in flight
        self.start_clock_skew = timedelta(0)
        for name in (*FUNCTIONS, "reconcile"):
            self._load(name)

    def add_dataset(self, name: str, like: str = "orders") -> None:
        """Publish a copy of ``like``'s contract under another dataset name (its own partition, lease, group)."""
        s3 = self.stack.s3
        text = s3.get_object(Bucket=BUCKET, Key=f"assets/contracts/{like}.yaml")["Body"].read().decode()
        text = text.replace(f"\ndataset: {like}\n", f"\ndataset: {name}\n", 1)
        s3.put_object(Bucket=BUCKET, Key=f"assets/contracts/{name}.yaml", Body=text.encode())

    # ---- functions ------------------------------------------------------------------------------------------

    def _load(self, name: str) -> None:
        """A new Lambda container: the module imported afresh, its clients instrumented."""
        app = load_app(name)
        self.apps[name] = app
        completions = getattr(app, "completions", None)
        emr = app.emr if name == "ingest" else completions.emr  # type: ignore[union-attr]
        self._instrument_emr(emr)
        if completions is not None:
            self._instrument_sagemaker(completions.sagemaker)

    def _instrument_emr(self, emr: Any) -> None:
        events = emr.meta.events
        events.register("provide-client-params.emr-serverless.StartJobRun", self._stash_params)
        events.register("before-call.emr-serverless.StartJobRun", self._before_start_job_run)
        events.register("after-call.emr-serverless.StartJobRun", self._after_start_job_run)
        events.register("after-call.emr-serverless.GetJobRun", self._after_get_job_run)

    def _instrument_sagemaker(self, sagemaker: Any) -> None:
        events = sagemaker.meta.events
        events.register("provide-client-params.sagemaker.CreateTrainingJob", self._stash_params)
        events.register("before-call.sagemaker.CreateTrainingJob", self._before_create_training)
        events.register("after-call.sagemaker.CreateTrainingJob", self._after_create_training)
        events.register("after-call.sagemaker.DescribeTrainingJob", self._after_describe_training)

    @staticmethod
    def _stash_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["dz_params"] = dict(params)

    # ---- EMR Serverless -------------------------------------------------------------------------------------

    def _before_start_job_run(self, context: dict[str, Any], **_: Any) -> Any:
        params = context["dz_params"]
        self.calls["StartJobRun"] += 1
        n = self.calls["StartJobRun"]
        if n in self.faults.crash_start_job_run_at:
            self.crashes += 1
            raise Crash(f"process died before StartJobRun call {n}")
        if n in self.faults.throttle_start_job_run_at:
            self.calls["StartJobRun throttled"] += 1
            return _error("ThrottlingException")
        token = params["clientToken"]
        known = self.runs.get(token)
        if known is not None:  # EMR Serverless: the same clientToken is the same run
            self.calls["StartJobRun same token"] += 1
            return _ok({"applicationId": params["applicationId"], "jobRunId": known["job_run_id"], "arn": "arn"})
        dataset = params["tags"]["dataset"]
        # Runs this harness started for the dataset whose batch is still RUNNING/STARTING in the ledger.
        flying = self.in_flight.setdefault(dataset, set())
        for batch_id in list(flying):
            batch = self.stack.ledger.get_batch(dataset, batch_id) or {}
            if batch.get("status") not in ("RUNNING", "STARTING"):
                flying.discard(batch_id)
        running = flying - {params["tags"]["batch_id"]}
        self.max_running_per_dataset = max(self.max_running_per_dataset, len(running) + 1)
        return None

    def _after_start_job_run(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if "Error" in parsed or "dz_params" not in context:
            return
        params = context["dz_params"]
        token = params["clientToken"]
        if token in self.runs:
            return
        tags = params["tags"]
        job_run_id = str(parsed["jobRunId"])
        n = len(self.runs) + 1
        if self.faults.fail_batches_always and n == 1:
            self.doomed_batch = tags["batch_id"]
        failed = n in self.faults.fail_runs or tags["batch_id"] == self.doomed_batch
        self.runs[token] = {"job_run_id": job_run_id, **tags, "failed": failed}
        self.in_flight.setdefault(tags["dataset"], set()).add(tags["batch_id"])
        if failed:
            self.failing_runs[job_run_id] = f"Job failed, injected failure of run {n}"
        else:
            self.stack.write_run_manifest(tags["dataset"], token)
        if n in self.faults.lose_run_events:
            return
        template = "emr_job_failed.json" if failed else "emr_job_success.json"
        event = emr_event(template, self.stack.app_id, job_run_id)
        self.queues["job_finished"].send(event["Records"][0]["body"], self._copies())

    def _after_get_job_run(self, parsed: dict[str, Any], **_: Any) -> None:
        run = parsed.get("jobRun")
        if run and run.get("jobRunId") in self.failing_runs:
            run.update(state="FAILED", stateDetails=self.failing_runs[run["jobRunId"]])

    # ---- SageMaker --------------------------------------------------------------------------------------------

    def _before_create_training(self, context: dict[str, Any], **_: Any) -> Any:
        name = context["dz_params"]["TrainingJobName"]
        self.calls["CreateTrainingJob"] += 1
        if self.calls["CreateTrainingJob"] in self.faults.throttle_create_training_at:
            self.calls["CreateTrainingJob throttled"] += 1
            return _error("ThrottlingException")
        if name in self.trainings:  # SageMaker: names are unique (moto would overwrite)
            self.calls["CreateTrainingJob ResourceInUse"] += 1
            return _error("ResourceInUse")
        return None

    def _after_create_training(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if "Error" in parsed or "dz_params" not in context:
            return
        params = context["dz_params"]
        name = params["TrainingJobName"]
        self.trainings[name] += 1
        n = len(self.trainings)
        failed = n in self.faults.fail_trainings
        if failed:
            self.failing_trainings.add(name)
        else:
            auc = 0.7 + 0.2 * self.rng.random()
            metrics = {
                "task": "classification",
                "dataset": "orders",
                "label": "active_next_30d",
                "rows": {"train": 800, "validation": 200},
                "best_iteration": 10,
                "validation": {"auc": auc, "pr_auc": 0.5, "logloss": 0.5},
                "baseline": {"auc": 0.5, "pr_auc": 0.3, "logloss": 0.6, "prior": 0.3},
            }
            output = params["OutputDataConfig"]["S3OutputPath"].rstrip("/")
            bucket, _, prefix = output.removeprefix("s3://").partition("/")
            model, out = training_output(metrics)
            self.stack.s3.put_object(Bucket=bucket, Key=f"{prefix}/{name}/output/model.tar.gz", Body=model)
            self.stack.s3.put_object(Bucket=bucket, Key=f"{prefix}/{name}/output/output.tar.gz", Body=out)
        if n in self.faults.lose_training_events:
            return
        template = "sagemaker_training_failed.json" if failed else "sagemaker_training_completed.json"
        event = training_event(template, name)
        self.queues["model_trained"].send(event["Records"][0]["body"], self._copies())

    def _after_describe_training(self, parsed: dict[str, Any], **_: Any) -> None:
        name = parsed.get("TrainingJobName")
        if name in self.failing_trainings:
            parsed.update(TrainingJobStatus="Failed", FailureReason="AlgorithmError: injected failure")

    # ---- producers and delivery ---------------------------------------------------------------------------

    def _copies(self) -> int:
        return self.rng.randint(*self.copies)

    def drop(self, key: str, body: bytes, expect: str) -> None:
        """A producer puts a file; S3 notifies the ingest queue (1..n copies)."""
        answer = self.stack.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        self.files[key] = expect
        record = {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "us-east-1",
            "eventName": "ObjectCreated:Put",
            "s3": {
                "bucket": {"name": BUCKET, "arn": f"arn:aws:s3:::{BUCKET}"},
                "object": {"key": quote_plus(key, safe="/"), "size": len(body), "eTag": answer["ETag"].strip('"')},
            },
        }
        self.queues["ingest"].send(json.dumps({"Records": [record]}), self._copies())

    def _invoke(self, name: str) -> None:
        queue = self.queues[name]
        batch = queue.receive()
        records = [
            {
                **SQS_RECORD,
                "messageId": m.id,
                "body": m.body,
                "attributes": {**SQS_RECORD["attributes"], "ApproximateReceiveCount": str(m.receives)},
            }
            for m in batch
        ]
        try:
            answer = self.apps[name].handler({"Records": records}, self.context)
            failed = {f["itemIdentifier"] for f in answer["batchItemFailures"]}
        except Crash:
            failed = {m.id for m in batch}
            self._load(name)
        for m in batch:
            if m.id in failed:
                queue.failed(m)

    def reconcile(self, ahead: timedelta = timedelta(hours=1)) -> None:
        """One scheduled ReconcileFunction pass, its clock ``ahead`` of now (lost events are old, waits are over)."""
        app = self.apps["reconcile"]
        self.monkeypatch.setattr(app, "utcnow", lambda: utcnow() + ahead)
        self.reconciler_passes += 1
        try:
            app.handler(SCHEDULE, self.context)
        except Crash:
            self._load("reconcile")
            self.reconciler_errors += 1
        except Exception:  # the schedule invokes it again; the test checks the end state
            self.reconciler_errors += 1

    def drain(self, max_invocations: int = 100_000) -> None:
        """Deliver until every queue is empty, picking the next queue at random."""
        for _ in range(max_invocations):
            busy = [name for name in FUNCTIONS if self.queues[name].pending]
            if not busy:
                return
            self._invoke(self.rng.choice(busy))
        raise AssertionError("queues did not drain")

    def run_until_idle(self, max_passes: int = 20) -> None:
        """Drain the queues, then let the reconciler run until a pass changes nothing."""
        for _ in range(max_passes):
            self.drain()
            before = (len(self.runs), sum(self.trainings.values()), self._ledger_fingerprint())
            self.reconcile()
            self.drain()
            if (len(self.runs), sum(self.trainings.values()), self._ledger_fingerprint()) == before:
                return
        raise AssertionError("the pipeline did not settle")

    def _ledger_fingerprint(self) -> tuple[Any, ...]:
        datasets = sorted({key.split("/")[1] for key in self.files})
        items = [i for d in datasets for i in self.stack.ledger.query_dataset(d)]
        return tuple(sorted((i["sk"], str(i.get("status")), str(i.get("model_package_arn"))) for i in items))

    # ---- the audit ------------------------------------------------------------------------------------------

    def audit(self, dataset: str = "orders") -> dict[str, Any]:
        """Check the end state for every property the suites promise; returns the figures."""
        ledger = self.stack.ledger
        items = list(ledger.query_dataset(dataset))
        file_items = [i for i in items if i["sk"].startswith("FILE#")]
        batches = [i for i in items if i["sk"].startswith("BATCH#")]
        trainings = {i["name"]: i for i in items if i["sk"].startswith("TRAINING#")}

        # exactly one ledger entry per file, in a terminal state that matches what the producer dropped
        by_key = Counter(str(i["key"]) for i in file_items)
        dropped = [k for k in self.files if k.startswith(f"incoming/{dataset}/")]
        lost = [k for k in dropped if by_key[k] != 1]
        not_terminal = [i["key"] for i in file_items if i["status"] not in TERMINAL_FILE]
        quarantined_without_reason = [
            i["key"] for i in file_items if i["status"] == "QUARANTINED" and not i.get("reasons")
        ]
        wrong = [
            i["key"]
            for i in file_items
            if (self.files.get(i["key"]) == "QUARANTINED") != (i["status"] == "QUARANTINED")
        ]
        failed_without_reason = [i["key"] for i in file_items if i["status"] == "FAILED" and not i.get("reason")]

        # one batch membership per accepted file, and the file points back at that batch
        membership: Counter[str] = Counter(sk for b in batches for sk in b["files"])
        batched_files = [i for i in file_items if i["status"] in ("DONE", "FAILED")]
        bad_membership = [i["key"] for i in batched_files if membership[i["sk"]] != 1]
        orphans = [sk for sk, n in membership.items() if n != 1]

        # one run per batch attempt; successful batches have one successful run
        runs_per_attempt = Counter((r["batch_id"], r["attempt"]) for r in self.runs.values() if r["dataset"] == dataset)
        # (moto answers ResourceNotFound for an application that never ran a job)
        moto_runs = self.job_runs() if self.runs else []
        succeeded = [b for b in batches if b["status"] == "SUCCEEDED"]
        success_runs = Counter(r["batch_id"] for r in self.runs.values() if not r["failed"] and r["dataset"] == dataset)
        unfinished_batches = [b["batch_id"] for b in batches if b["status"] not in ("SUCCEEDED", "FAILED")]

        # one training job per successful run, one model package per completed training job
        ours = [r for r in self.runs.values() if r["dataset"] == dataset]
        successful_run_ids = {r["job_run_id"] for r in ours if not r["failed"]}
        runs_with_training = {str(t["job_run_id"]) for t in trainings.values()}
        group = model_package_group_name("dropzone", dataset)
        packages = self.packages(group)
        per_job = Counter(p.get("training_job") for p in packages)
        completed = [n for n in trainings if n not in self.failing_trainings]

        problems = {
            "files lost or recorded twice": lost,
            "files not in a terminal state": not_terminal,
            "files with the wrong decision": wrong,
            "quarantined without a reason": quarantined_without_reason,
            "failed without a reason": failed_without_reason,
            "files not in exactly one batch": bad_membership + orphans,
            "batch attempts with more than one run": [k for k, n in runs_per_attempt.items() if n != 1],
            "runs in moto vs runs started": [(len(moto_runs), len(self.runs))][: len(moto_runs) != len(self.runs)],
            "succeeded batches without exactly one successful run": [
                b["batch_id"] for b in succeeded if success_runs[b["batch_id"]] != 1
            ],
            "batches not finished": unfinished_batches,
            "training jobs created more than once": [n for n, c in self.trainings.items() if c != 1],
            "successful runs without a training job": sorted(successful_run_ids - runs_with_training),
            "training jobs without exactly one model package": [n for n in completed if per_job[n] != 1],
            "model packages for failed training jobs": [n for n in self.failing_trainings if per_job[n]],
            "training jobs not finished": [n for n, t in trainings.items() if t.get("status") == "InProgress"],
            "messages in a DLQ": [m.id for q in self.queues.values() for m in q.dlq],
            "lease left held": [] if ledger.get_lease(dataset) is None else ["LEASE"],
        }
        problems = {k: v for k, v in problems.items() if v}
        assert not problems, problems
        assert self.max_running_per_dataset <= 1, self.max_running_per_dataset
        return {
            "files": len(dropped),
            "accepted": sum(1 for i in file_items if i["status"] == "DONE"),
            "quarantined": sum(1 for i in file_items if i["status"] == "QUARANTINED"),
            "failed (with reason)": sum(1 for i in file_items if i["status"] == "FAILED"),
            **self.delivery_figures(),
            "batches": len(batches),
            "runs started": len(self.runs),
            "runs failed": sum(1 for r in self.runs.values() if r["failed"]),
            "max runs in flight per dataset": self.max_running_per_dataset,
            "training jobs": len(self.trainings),
            "model packages": len(packages),
            "crashes": self.crashes,
            "reconciler passes": self.reconciler_passes,
            "files lost": len(lost),
        }

    def delivery_figures(self) -> dict[str, int]:
        """What the queues did, all queues together: events sent, deliveries, duplicates, redeliveries, DLQ."""
        queues = self.queues.values()
        sent = sum(q.sent for q in queues)
        delivered = sum(q.delivered for q in queues)
        redelivered = sum(q.redelivered for q in queues)
        return {
            "events sent": sent,
            "events delivered": delivered,
            "duplicates": delivered - redelivered - sent,  # delivered again, not after a failure
            "redeliveries after failure": redelivered,
            "DLQ": sum(len(q.dlq) for q in queues),
        }

    def job_runs(self) -> list[dict[str, Any]]:
        """Every job run moto holds for the application (all pages)."""
        pages = self.stack.emr.get_paginator("list_job_runs").paginate(applicationId=self.stack.app_id)
        return [run for page in pages for run in page["jobRuns"]]

    def packages(self, group: str) -> list[dict[str, str]]:
        sagemaker = self.stack.sagemaker
        found: list[dict[str, str]] = []
        kwargs: dict[str, Any] = {"ModelPackageGroupName": group, "MaxResults": 100}
        while True:
            try:
                answer = sagemaker.list_model_packages(**kwargs)
            except sagemaker.exceptions.ClientError:
                return found
            for s in answer.get("ModelPackageSummaryList", []):
                description = sagemaker.describe_model_package(ModelPackageName=s["ModelPackageArn"])
                found.append(dict(description.get("CustomerMetadataProperties", {})))
            if not answer.get("NextToken"):
                return found
            kwargs["NextToken"] = answer["NextToken"]


def files_of(pipeline: Pipeline, dataset: str = "orders") -> list[dict[str, Any]]:
    return list(pipeline.stack.ledger.query_dataset(dataset, "FILE#"))


Figures = Callable[[str, dict[str, Any]], None]
