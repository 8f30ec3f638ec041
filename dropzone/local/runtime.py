"""The local pipeline: deploy, publish, drop files, then deliver, execute and announce until nothing moves.

:class:`LocalStack` is the embedded API with template.yaml deployed and its assets published (what
``dropzone local up`` keeps running). :class:`Pipeline` drives it: one poller per event source mapping, the
EMR and SageMaker executors, the reconciler's schedule at the end, and a clock per stage.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dropzone.contract import Contract, load_contracts
from dropzone.local.emr import EmrExecutor, SparkHost
from dropzone.local.functions import LocalFunction, PollResult, QueuePoller, load_functions, scheduled_event
from dropzone.local.producer import publish_assets
from dropzone.local.server import EmbeddedAws
from dropzone.local.stack import Stack, deploy
from dropzone.local.training import TrainingExecutor

Progress = Callable[[str], None]
MAX_ROUNDS = 500  # a pipeline that still moves after this many rounds is looping: stop and say so


class PipelineStuck(RuntimeError):
    """The pipeline did not become idle."""


@dataclass
class Clock:
    """Wall time per stage, in the order stages first ran."""

    seconds: dict[str, float] = field(default_factory=dict)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


@dataclass
class LocalStack:
    aws: EmbeddedAws
    stack: Stack
    root: Path
    work_dir: Path
    contracts: dict[str, Contract]

    @property
    def data_bucket(self) -> str:
        return self.stack.setting("DATA_BUCKET")

    @property
    def ledger_table(self) -> str:
        return self.stack.setting("LEDGER_TABLE")

    @classmethod
    def start(
        cls,
        aws: EmbeddedAws,
        root: Path,
        work_dir: Path,
        template: Path | None = None,
        stack_name: str = "dropzone-local",
        parameters: dict[str, str] | None = None,
        contracts_dir: Path | None = None,
    ) -> LocalStack:
        """Deploy the template and publish its assets (the custom resource), as `sam deploy` would; the contracts
        from ``contracts_dir`` when given, else ``<root>/contracts``."""
        contracts = load_contracts(contracts_dir or root / "contracts")  # a broken contract stops before the deploy
        work_dir.mkdir(parents=True, exist_ok=True)
        chatter = io.StringIO()
        with contextlib.redirect_stdout(chatter):  # moto prints Docker probes while creating functions
            stack = deploy(aws, template or root / "template.yaml", stack_name, parameters)
        publish_assets(aws, stack, root, work_dir, contracts_dir)
        return cls(aws, stack, root, work_dir, contracts)


class Pipeline:
    """Everything Lambda, EMR Serverless, SageMaker and EventBridge Scheduler would do, in this process."""

    def __init__(
        self,
        local: LocalStack,
        progress: Progress = print,
        cores: int = 2,
        warm_spark: bool = True,
        spark_host: SparkHost | None = None,
    ) -> None:
        """``warm_spark``: job runs go to one warm local Spark driver (``spark_host``, or one started at the
        first run) and training jobs to an interpreter pre-started during the Spark runs; else each gets its own
        spark-submit and python, as before. :meth:`close` stops what is still waiting."""
        self.local = local
        self.clock = Clock()
        self._progress = progress
        aws = local.aws
        log = local.work_dir / "logs" / "functions.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        self._log = log
        self.functions: dict[str, LocalFunction] = load_functions(local.stack.functions, aws, log)
        self.pollers = [QueuePoller(m, self.functions[m.function], aws) for m in local.stack.mappings if m.enabled]
        self.emr = EmrExecutor(
            aws,
            list(local.stack.emr_applications.values()),
            local.work_dir,
            progress=lambda line: progress(f"  spark  | {line}"),
            cores=cores,
            warm=warm_spark,
            host=spark_host if warm_spark else None,
        )
        self.training = TrainingExecutor(
            aws, local.work_dir, progress=lambda line: progress(f"  train  | {line}"), warm=warm_spark
        )
        self.deliveries: dict[str, PollResult] = {}
        self._last_ledger: list[str] = []

    def close(self) -> None:
        self.emr.close()
        self.training.close()

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _stage_of(self, function: str) -> str:
        return {"IngestFunction": "ingest"}.get(function, function.removesuffix("Function").lower())

    def _deliver(self) -> int:
        moved = 0
        for poller in self.pollers:
            name = poller.mapping.function
            with self.clock.stage(self._stage_of(name)):
                while True:
                    result = poller.poll_once()
                    if not result.received:
                        break
                    moved += result.received
                    total = self.deliveries.setdefault(name, PollResult())
                    total.received += result.received
                    total.succeeded += result.succeeded
                    total.failed += result.failed
                    total.errors += result.errors
                    note = f", {result.failed} failed: {result.errors[0]}" if result.failed and result.errors else ""
                    retry = f", {result.failed} to retry (reasons in {self._log})"
                    failed = retry if result.failed and not note else note
                    self._progress(f"  {self._stage_of(name):6} | {name}: {result.received} message(s){failed}")
        return moved

    def _ledger_progress(self) -> None:
        """One line per dataset whose files or batches changed in the ledger since the last look."""
        lines = []
        for dataset, items in ledger_items(self.local).items():
            files = Counter(str(i.get("status")).lower() for i in items if str(i["sk"]).startswith("FILE#"))
            batches = [i for i in items if str(i["sk"]).startswith("BATCH#")]
            if not files and not batches:
                continue
            text = ", ".join(f"{n} {status}" for status, n in sorted(files.items()))
            for batch in batches:
                status = str(batch.get("status")).lower()
                text += f"; batch {str(batch['sk'])[6:14]} {status} (attempt {batch.get('attempt')})"
            lines.append(f"  ledger | {dataset}: {text}")
        for line in lines:
            if line not in self._last_ledger:
                self._progress(line)
        self._last_ledger = lines

    def _driver_name(self) -> str:
        host = self.emr.host
        return "local spark-submit" if host is None or host.broken else "warm local Spark driver"

    def _execute(self) -> int:
        ran = 0
        for application_id, job_run_id in self.emr.pending():
            self.training.prestart()  # a Spark run often leads to training: its interpreter imports meanwhile
            with self.clock.stage("spark"):
                self._progress(f"  spark  | job run {job_run_id} started ({self._driver_name()})")
                outcome = self.emr.execute(application_id, job_run_id)
                detail = f": {outcome.details}" if outcome.details else ""
                self._progress(f"  spark  | job run {job_run_id} {outcome.state} in {outcome.seconds:.1f}s{detail}")
            ran += 1
        for name in self.training.pending():
            with self.clock.stage("training"):
                self._progress(f"  train  | training job {name} started (local script mode)")
                result = self.training.execute(name)
                reason = f": {result.failure_reason}" if result.failure_reason else ""
                self._progress(f"  train  | training job {name} {result.status} in {result.seconds:.1f}s{reason}")
            ran += 1
        return ran

    def reconcile(self) -> int:
        """Invoke every scheduled function once, as its schedule would."""
        aws = self.local.aws
        for schedule in self.local.stack.schedules:
            with self.clock.stage(self._stage_of(schedule.function)):
                invocation = self.functions[schedule.function].invoke(
                    scheduled_event(schedule, aws.region, aws.account_id)
                )
                state = f"error {invocation.error}" if invocation.error else "ok"
                self._progress(
                    f"  {self._stage_of(schedule.function):6} | {schedule.function} ({schedule.expression}): {state}"
                )
        return len(self.local.stack.schedules)

    def flush_waiting(self) -> int:
        """Invoke the scheduled functions with ``{"flush": true}`` when accepted files still wait for a batch
        (fewer than ``min_files``): a local run has all its files, so it does not sit out ``max_wait``.
        Returns the number of files that were waiting."""
        waiting = {
            dataset: n
            for dataset, items in ledger_items(self.local).items()
            if (n := sum(1 for i in items if str(i["sk"]).startswith("FILE#") and i.get("status") == "ACCEPTED"))
        }
        if not waiting:
            return 0
        listing = ", ".join(f"{dataset} {n}" for dataset, n in sorted(waiting.items()))
        for schedule in self.local.stack.schedules:
            with self.clock.stage(self._stage_of(schedule.function)):
                invocation = self.functions[schedule.function].invoke({"flush": True})
            state = f"error {invocation.error}" if invocation.error else "ok"
            self._progress(
                f"  {self._stage_of(schedule.function):6} | files waiting below min_files ({listing}): "
                f"{schedule.function} invoked with flush: {state}"
            )
        return sum(waiting.values())

    def run_until_idle(self, reconcile: bool = True, flush: bool = False) -> int:
        """Deliver and execute until no queue holds a message and no run or job waits; then (``reconcile``)
        invoke the schedules once and continue if that started anything; then (``flush``) batch the files
        still waiting, as long as that makes progress. Returns the number of rounds."""
        rounds = 0
        reconciled = False
        last_waiting: int | None = None
        while True:
            rounds += 1
            if rounds > MAX_ROUNDS:
                raise PipelineStuck(
                    f"the pipeline still moved after {MAX_ROUNDS} rounds; see {self.local.work_dir}/logs"
                )
            moved = self._deliver()
            if moved:
                self._ledger_progress()
            moved += self._execute()
            if moved:
                reconciled = False
                continue
            if any(p.depth() for p in self.pollers):
                continue
            if reconciled or not reconcile:
                if not flush:
                    return rounds
                waiting = self.flush_waiting()
                if not waiting or waiting == last_waiting:
                    return rounds
                last_waiting = waiting
                continue
            self.reconcile()
            reconciled = True


def ledger_items(local: LocalStack) -> dict[str, list[dict[str, Any]]]:
    """Every ledger item per dataset (one Query per dataset, like `dropzone status`)."""
    from dropzone.ledger import Ledger

    ledger = Ledger(local.ledger_table, local.aws.client("dynamodb"))
    return {dataset: list(ledger.query_dataset(dataset)) for dataset in local.contracts}
