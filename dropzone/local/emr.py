"""EMR Serverless job runs executed with local Spark, then announced on the EventBridge bus like EMR does.

moto records StartJobRun and answers ``SUCCESS`` at once without running anything. The executor finds each
new run with ListJobRuns, marks it RUNNING in moto's state, runs ``spark-submit`` of the run's own entry
point, arguments and ``--py-files`` (``s3://`` staged to local files and outputs uploaded back, see
``staging``), then writes what really happened into moto's record of the run — state, stateDetails,
duration and ``billedResourceUtilization`` derived from the measured wall time and the run's configured
worker sizing — so GetJobRun answers the functions truthfully, and puts the "EMR Serverless Job Run State
Change" event on the default bus, where the template's rule routes it.

By default the runs go to one warm local driver (:class:`SparkHost`, ``spark_host.py``): a Python process and
its JVM started once, as early as the caller likes, with the driver options a per-run ``spark-submit`` gets,
that runs each run's entry point with the same arguments and ``--py-files`` in a fresh SparkSession. A run that
needs a driver setting the warm driver lacks, or any run when the warm driver cannot start, gets its own
``spark-submit`` as before (``warm=False``: always).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import re
import shlex
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dropzone.local.jvm import with_archive
from dropzone.local.localfs import CLASS_PATH, file_system_conf
from dropzone.local.server import EmbeddedAws
from dropzone.local.staging import Mirror

# EMR Serverless defaults for Spark workers when the run does not size them (vCPU, memory GB, disk GB).
DEFAULT_WORKER = (4, 16, 20)
DEFAULT_INITIAL_EXECUTORS = 3
FREE_DISK_GB = 20
MINIMUM_BILLED_SECONDS = 60
# Sizing and EMR-only settings that mean nothing (or too much memory) for local[N] on a laptop.
_DROPPED_CONF = re.compile(
    r"^spark\.(driver|executor)\.(memory|cores|memoryOverhead|instances)$|^spark\.dynamicAllocation\.|"
    r"^spark\.emr-serverless\.|^spark\.hadoop\.hive\.metastore\.client\.factory\.class$|"
    r"^spark\.(kubernetes|yarn)\.|^spark\.archives$|^spark\.submit\.pyFiles$"
)
# A local feature run is a short JVM on 2 shared cores: the C2 JIT and a parallel GC cost more CPU than they
# save (docs/local.md: about 45 % less CPU for a feature run). EMR's own JVMs keep their defaults.
LOCAL_JAVA_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
LOCAL_SPARK_CONF = {"spark.sql.shuffle.partitions": "8", "spark.default.parallelism": "4"}
# What spark_app.job.build_session sets on EMR that is fixed when the driver starts (a static SQL setting): the warm
# driver's session is created before any job, so its driver options carry it, and a per-run spark-submit the same.
DRIVER_STATIC_CONF = {"spark.python.sql.dataFrameDebugging.enabled": "false"}
_PROGRESS = re.compile(r"\[dropzone\].*")
_STAGE = re.compile(r"\[Stage (\d+):[=>\s]*\((\d+) \+ (\d+)\) / (\d+)\]")  # Spark's console progress bar
STAGE_REPORT_SECONDS = 5.0


@dataclass
class Sizing:
    driver_vcpu: float
    driver_gb: float
    executor_vcpu: float
    executor_gb: float
    executors: int
    disk_gb: float

    def billed(self, seconds: float) -> dict[str, float]:
        """billedResourceUtilization for ``seconds`` of wall time (1-minute minimum per worker)."""
        hours = max(seconds, MINIMUM_BILLED_SECONDS) / 3600
        workers = 1 + self.executors
        vcpu = (self.driver_vcpu + self.executors * self.executor_vcpu) * hours
        memory = (self.driver_gb + self.executors * self.executor_gb) * hours
        storage = workers * max(0.0, self.disk_gb - FREE_DISK_GB) * hours
        return {"vCPUHour": round(vcpu, 6), "memoryGBHour": round(memory, 6), "storageGBHour": round(storage, 6)}


def _gigabytes(value: str) -> float:
    match = re.fullmatch(r"\s*([0-9.]+)\s*([kKmMgGtT]?)[bB]?\s*", value)
    if not match:
        raise ValueError(f"{value!r} is not a Spark memory size")
    scale = {"": 1 / 2**30, "k": 1 / 2**20, "m": 1 / 2**10, "g": 1, "t": 2**10}[match.group(2).lower()]
    return float(match.group(1)) * scale


def _worker_gb(memory: str | None) -> float:
    """A worker's memory: the JVM heap plus Spark's 10 % overhead (at least 384 MiB), rounded up to a GB."""
    if memory is None:
        return float(DEFAULT_WORKER[1])
    heap = _gigabytes(memory)
    return float(math.ceil(heap + max(0.375, 0.1 * heap)))


def sizing(conf: dict[str, str]) -> Sizing:
    """The workers a run asks EMR Serverless for, from its Spark properties."""
    dynamic = conf.get("spark.dynamicAllocation.enabled", "true").lower() == "true"
    if dynamic:
        executors = int(conf.get("spark.dynamicAllocation.initialExecutors", DEFAULT_INITIAL_EXECUTORS))
    else:
        executors = int(conf.get("spark.executor.instances", DEFAULT_INITIAL_EXECUTORS))
    disk = conf.get("spark.emr-serverless.executor.disk") or conf.get("spark.emr-serverless.driver.disk")
    return Sizing(
        driver_vcpu=float(conf.get("spark.driver.cores", DEFAULT_WORKER[0])),
        driver_gb=_worker_gb(conf.get("spark.driver.memory")),
        executor_vcpu=float(conf.get("spark.executor.cores", DEFAULT_WORKER[0])),
        executor_gb=_worker_gb(conf.get("spark.executor.memory")),
        executors=executors,
        disk_gb=_gigabytes(disk) if disk else float(DEFAULT_WORKER[2]),
    )


@dataclass
class SparkSubmit:
    """A run's sparkSubmit driver, parsed: entry point, arguments, --py-files and --conf properties."""

    entry_point: str
    arguments: list[str]
    py_files: list[str] = field(default_factory=list)
    conf: dict[str, str] = field(default_factory=dict)


def parse_job_driver(job_driver: dict[str, Any], overrides: dict[str, Any] | None) -> SparkSubmit:
    spark = (job_driver or {}).get("sparkSubmit")
    if not spark or not spark.get("entryPoint"):
        raise ValueError("the job run has no sparkSubmit entryPoint (only Spark job runs are executed locally)")
    parsed = SparkSubmit(spark["entryPoint"], [str(a) for a in spark.get("entryPointArguments", [])])
    for classification in (overrides or {}).get("applicationConfiguration", []) or []:
        if classification.get("classification") == "spark-defaults":
            parsed.conf.update({str(k): str(v) for k, v in classification.get("properties", {}).items()})
    words = shlex.split(spark.get("sparkSubmitParameters", "") or "")
    i = 0
    while i < len(words):
        word, value = words[i], words[i + 1] if i + 1 < len(words) else ""
        if word == "--conf":
            key, _, val = value.partition("=")
            parsed.conf[key] = val
            i += 2
        elif word == "--py-files":
            parsed.py_files.extend(v for v in value.split(",") if v)
            i += 2
        elif word.startswith("--") and "=" in word:
            i += 1
        elif word.startswith("--"):
            i += 2  # --class, --jars, --archives, ...: not used by a PySpark job run locally
        else:
            i += 1
    if parsed.conf.get("spark.submit.pyFiles"):
        parsed.py_files.extend(v for v in parsed.conf["spark.submit.pyFiles"].split(",") if v)
    return parsed


@dataclass
class RunOutcome:
    application_id: str
    job_run_id: str
    name: str
    state: str
    details: str
    seconds: float
    billed: dict[str, float]
    arguments: list[str]
    uploaded: list[str]
    log: Path


def _spark_submit() -> str:
    from pyspark.find_spark_home import _find_spark_home

    return str(Path(_find_spark_home()) / "bin" / "spark-submit")


def driver_options(
    cores: int, driver_memory: str, java_options: str, conf: dict[str, str], archive: bool = True
) -> list[str]:
    """The local driver's spark-submit options for a run's Spark properties ``conf`` (none: the warm driver's);
    ``archive``: the JVM maps Spark's classes from the class data sharing archive when one is built (jvm.py)."""
    options = ["--master", f"local[{cores}]", "--driver-memory", driver_memory]
    if java_options and "spark.driver.extraJavaOptions" not in conf:
        options += ["--driver-java-options", with_archive(java_options) if archive else java_options]
    for key, value in conf.items():
        if not _DROPPED_CONF.search(key):
            options += ["--conf", f"{key}={value}"]
    options += ["--conf", "spark.ui.enabled=false", "--conf", "spark.ui.showConsoleProgress=true"]
    options += ["--conf", "spark.log.level=WARN"]  # the INFO chatter of a local driver is thousands of lines
    # EMR sizes shuffles for many executors; a local[N] driver pays per task: few partitions, AQE coalesces.
    for key, value in {**LOCAL_SPARK_CONF, **DRIVER_STATIC_CONF}.items():
        if key not in conf:
            options += ["--conf", f"{key}={value}"]
    # Local files through a file system without a process per file (dropzone/local/localfs.py); its class path is
    # added to the run's own, if any, so the class is found whatever the run sets.
    for key, value in file_system_conf().items():
        if key == CLASS_PATH and conf.get(key):
            value = f"{conf[key]}{os.pathsep}{value}"
        if key == CLASS_PATH or key not in conf:
            options += ["--conf", f"{key}={value}"]
    return options


@dataclass
class Staged:
    """A run ready for a local driver: staged entry point, arguments and py-files, the properties it keeps."""

    entry: str
    arguments: list[str]
    py_files: list[str]
    conf: dict[str, str]
    options: list[str]

    @property
    def command(self) -> list[str]:
        """The run's own spark-submit command line (the per-run path)."""
        py_files = ["--py-files", ",".join(self.py_files)] if self.py_files else []
        return [_spark_submit(), *self.options, *py_files, self.entry, *self.arguments]


@dataclass
class HostAnswer:
    code: int | None = None  # the run's exit code; None: not run by the warm driver
    refused: str = ""  # why the warm driver did not run it (the run then gets its own spark-submit)
    died: str = ""  # the driver process ended during the run (its stateDetails)


def host_launch(options: list[str]) -> tuple[list[str], dict[str, str]]:
    """The command and environment that start a warm driver (``spark_host.py``) with spark-submit ``options``."""
    from dropzone.local import spark_host

    env = {
        **os.environ,
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "PYSPARK_SUBMIT_ARGS": shlex.join([*options, "pyspark-shell"]),
    }
    # -P: the script's directory (dropzone/local) is not put on sys.path; -u: output as it is printed
    return [sys.executable, "-P", "-u", str(Path(spark_host.__file__))], env


class SparkHost:
    """One warm local Spark driver (``spark_host.py``) for a runtime's life: started once, runs runs in turn.

    :meth:`start` returns at once (the JVM starts while the caller deploys and ingests); the first :meth:`run`
    waits until the driver is ready. Output between runs goes to ``logs/spark-driver.log``; a run's output to
    the run's log. If the driver cannot start, :attr:`broken` says why and every run is refused; if it dies
    during a run, that run fails and the next run starts a new driver.
    """

    def __init__(self, work_dir: Path, options: list[str]) -> None:
        self._work = work_dir
        self.options = options
        self._process: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._ready = False
        self.broken = ""
        self.pid: int | None = None
        self.starts = 0
        self.on_ready: Callable[[str], None] = lambda note: None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._pump: threading.Thread | None = None

    @classmethod
    def local(
        cls, work_dir: Path, cores: int = 2, driver_memory: str = "2g", java_options: str = LOCAL_JAVA_OPTIONS
    ) -> SparkHost:
        """The warm driver an :class:`EmrExecutor` of the same settings would start."""
        return cls(work_dir, driver_options(cores, driver_memory, java_options, {}))

    @property
    def driver_log(self) -> Path:
        return self._work / "logs" / "spark-driver.log"

    def start(self) -> None:
        if self._process is not None or self.broken:
            return
        self._work.mkdir(parents=True, exist_ok=True)
        self.driver_log.parent.mkdir(parents=True, exist_ok=True)
        command, env = host_launch(self.options)
        with self.driver_log.open("a", encoding="utf-8") as log:
            log.write(f"{shlex.join(command)}\nPYSPARK_SUBMIT_ARGS={env['PYSPARK_SUBMIT_ARGS']}\n")
        self._process = subprocess.Popen(  # noqa: S603 - our own driver script
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            cwd=self._work,
            bufsize=1,
        )
        self._ready = False
        self.starts += 1
        self._lines = queue.Queue()
        self._pump = threading.Thread(target=_pump, args=(self._process.stdout, self._lines), daemon=True)
        self._pump.start()
        self._finalizer = weakref.finalize(self, _stop, self._process)

    def _wait_ready(self) -> bool:
        if self._ready:
            return True
        self.start()
        if self.broken:
            return False
        waiting = time.monotonic()
        with self.driver_log.open("a", encoding="utf-8") as log:
            while True:
                line = self._lines.get()
                if line is None:
                    code = self._process.wait() if self._process else None
                    self.broken = f"the warm Spark driver exited before it was ready (code {code}), see {log.name}"
                    return False
                answer = _marked(line)
                if answer is None:
                    log.write(line)
                    continue
                if not answer.get("ready"):
                    self.broken = f"the warm Spark driver could not start a SparkSession, see {log.name}"
                    self.close()
                    return False
                self._ready, self.pid = True, answer.get("pid")
                waited = time.monotonic() - waiting
                note = (
                    f"warm local Spark driver ready: Spark {answer.get('spark')}, pid {self.pid}, started and warmed "
                    f"up in {answer.get('seconds')}s, the first run waited {waited:.1f}s for it"
                )
                log.write(note + "\n")
                self.on_ready(note)
                return True

    def run(self, request: dict[str, Any], lines: Callable[[str], None]) -> HostAnswer:
        """Run one job run; every line it prints goes to ``lines``."""
        if not self._wait_ready():
            return HostAnswer(refused=self.broken)
        assert self._process is not None
        assert self._process.stdin is not None
        with self.driver_log.open("a", encoding="utf-8") as log:  # what the driver printed while idle
            while not self._lines.empty():
                idle = self._lines.get_nowait()
                if idle is not None:
                    log.write(idle)
                else:
                    self._lines.put(None)
                    break
        try:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
        except OSError:
            pass  # the driver is gone: its end of output below says so
        while True:
            line = self._lines.get()
            if line is None:
                code = self._process.wait()
                self._process, self._ready = None, False  # the next run starts a new driver
                died = f"Job failed: the warm local Spark driver exited during the run with code {code}"
                lines(died + "\n")
                return HostAnswer(code=code if code else 1, died=died)
            mark = line.find(_spark_host_mark())
            if mark < 0:
                lines(line)
                continue
            if line[:mark].strip():
                lines(line[:mark] + "\n")
            answer = json.loads(line[mark + len(_spark_host_mark()) :])
            if answer.get("refused"):
                return HostAnswer(refused=str(answer["refused"]))
            return HostAnswer(code=int(answer["code"]))

    def close(self) -> None:
        if self._finalizer is not None:
            self._finalizer()
        self._process, self._ready = None, False
        if self._pump is not None:
            self._pump.join(timeout=5)  # the driver has exited: its last lines are being read
        with contextlib.suppress(OSError), self.driver_log.open("a", encoding="utf-8") as log:
            while not self._lines.empty():  # what it printed since the last run (all of it if none ran)
                line = self._lines.get_nowait()
                if line is not None:
                    log.write(line)


def _spark_host_mark() -> str:
    from dropzone.local.spark_host import MARK

    return MARK


def _marked(line: str) -> dict[str, Any] | None:
    mark = line.find(_spark_host_mark())
    if mark < 0:
        return None
    answer: dict[str, Any] = json.loads(line[mark + len(_spark_host_mark()) :])
    return answer


def _pump(stream: Iterable[str] | None, lines: queue.Queue[str | None]) -> None:
    try:
        for line in stream or ():
            lines.put(line)
    except (OSError, ValueError):
        pass  # the stream was closed under us: the driver is being stopped
    finally:
        lines.put(None)


def _stop(process: subprocess.Popen[str]) -> None:
    """End of stdin ends the driver (and its JVM with it); kill it if it does not go within 30 s."""
    if process.poll() is not None:
        return
    try:
        if process.stdin:
            process.stdin.close()
        process.wait(timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        process.kill()
        process.wait()


class EmrExecutor:
    """Runs each EMR Serverless job run recorded in moto once, in order of creation."""

    def __init__(
        self,
        aws: EmbeddedAws,
        application_ids: list[str],
        work_dir: Path,
        progress: Callable[[str], None] = lambda line: None,
        cores: int = 2,
        driver_memory: str = "2g",
        java_options: str = LOCAL_JAVA_OPTIONS,
        warm: bool = True,
        host: SparkHost | None = None,
    ) -> None:
        self._aws = aws
        self._emr = aws.client("emr-serverless")
        self._events = aws.client("events")
        self._applications = application_ids
        self._work = work_dir
        self._mirror = Mirror(aws.client("s3"), work_dir / "s3", put=aws.put_object)
        self._progress = progress
        self._cores = cores
        self._driver_memory = driver_memory
        self._java_options = java_options
        self._done: set[str] = set()
        self.outcomes: list[RunOutcome] = []
        if host is None and warm:
            host = SparkHost(work_dir, self.driver_options({}))
        self.host = host
        if host is not None:
            host.on_ready = progress

    def driver_options(self, conf: dict[str, str]) -> list[str]:
        return driver_options(self._cores, self._driver_memory, self._java_options, conf)

    def start_driver(self) -> None:
        """Start the warm driver now (it is started at the first run otherwise)."""
        if self.host is not None:
            self.host.start()

    def close(self) -> None:
        if self.host is not None:
            self.host.close()

    def pending(self) -> list[tuple[str, str]]:
        runs = []
        for application_id in self._applications:
            try:
                listed = self._emr.list_job_runs(applicationId=application_id)["jobRuns"]
            except self._emr.exceptions.ResourceNotFoundException:
                listed = []  # moto answers so for an application that has no run yet
            runs += [(application_id, run["id"]) for run in listed if run["id"] not in self._done]
        return runs  # moto lists runs in the order they were started

    def run_pending(self) -> int:
        """Execute every run not executed yet; returns how many ran."""
        pending = self.pending()
        for application_id, job_run_id in pending:
            self.execute(application_id, job_run_id)
        return len(pending)

    def _record(self, application_id: str, job_run_id: str) -> Any:
        return self._aws.backend("emr-serverless").get_job_run(application_id, job_run_id)

    def execute(self, application_id: str, job_run_id: str) -> RunOutcome:
        self._done.add(job_run_id)
        record = self._record(application_id, job_run_id)
        self._set_state(record, "RUNNING", "")
        self._announce(record, "RUNNING", "SCHEDULED")
        log = self._work / "logs" / f"spark-{job_run_id}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        uploaded: list[str] = []
        arguments: list[str] = []
        try:
            submit = parse_job_driver(record.job_driver, record.configuration_overrides)
            plan = sizing(submit.conf)
            staged = self._stage(submit)
            arguments = staged.arguments
            before = self._mirror.snapshot()
            code, why = self._drive(job_run_id, staged, log)
            uploaded = self._mirror.publish(before)
            state, details = ("SUCCESS", "") if code == 0 else ("FAILED", why or _failure(log, code))
        except (ValueError, OSError) as e:
            plan = sizing({})
            state, details = "FAILED", f"Job failed to start: {e}"
        seconds = time.perf_counter() - start
        billed = plan.billed(seconds)
        record.total_execution_duration_seconds = math.ceil(seconds)
        record.billed_resource_utilization = billed
        record.total_resource_utilization = dict(billed)
        self._set_state(record, state, details)
        self._announce(record, state, "RUNNING")
        outcome = RunOutcome(
            application_id, job_run_id, record.name or "", state, details, seconds, billed, arguments, uploaded, log
        )
        self.outcomes.append(outcome)
        return outcome

    def _stage(self, submit: SparkSubmit) -> Staged:
        entry = self._mirror.stage(submit.entry_point)
        py_files = [self._mirror.stage(uri) for uri in submit.py_files]
        arguments = [self._mirror.stage(a) if a.startswith("s3://") else a for a in submit.arguments]
        kept = {k: v for k, v in submit.conf.items() if not _DROPPED_CONF.search(k)}
        return Staged(entry, arguments, py_files, kept, self.driver_options(submit.conf))

    def _drive(self, job_run_id: str, staged: Staged, log: Path) -> tuple[int, str]:
        """Run in the warm driver when it takes the run, else with the run's own spark-submit; returns the exit
        code and, when the driver itself failed, why."""
        if self.host is None:
            return self._run(staged.command, log), ""
        request = {
            "id": job_run_id,
            "entry": staged.entry,
            "arguments": staged.arguments,
            "py_files": staged.py_files,
            "conf": staged.conf,
        }
        with log.open("w", encoding="utf-8") as out:
            out.write(
                f"# warm local Spark driver ({self.host.driver_log.name}): "
                f"{shlex.join([staged.entry, *staged.arguments])}\n"
                f"# py-files {','.join(staged.py_files) or '-'}; run properties {json.dumps(staged.conf)}\n"
            )
            follow = _Follower(out, self._progress)
            answer = self.host.run(request, follow.line)
        if answer.code is not None:
            return answer.code, answer.died
        self._progress(f"not in the warm driver ({answer.refused}): own spark-submit")
        return self._run(staged.command, log, note=f"# not in the warm driver: {answer.refused}\n"), ""

    def _run(self, command: list[str], log: Path, note: str = "") -> int:
        env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
        with log.open("a" if note else "w", encoding="utf-8") as out:
            out.write(note + shlex.join(command) + "\n")
            process = subprocess.Popen(  # noqa: S603 - our own spark-submit with staged local paths
                command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=self._work
            )
            assert process.stdout is not None
            follow = _Follower(out, self._progress)
            for line in process.stdout:  # text mode turns the progress bar's carriage returns into lines
                follow.line(line)
            return process.wait()

    def _set_state(self, record: Any, state: str, details: str) -> None:
        record.state = state
        record.state_details = details
        record.updated_at = datetime.now(UTC)

    def _announce(self, record: Any, state: str, previous: str) -> None:
        detail = {
            "jobRunId": record.id,
            "jobRunName": record.name,
            "arn": record.arn,
            "applicationId": record.application_id,
            "releaseLabel": record.release_label,
            "state": state,
            "previousState": previous,
            "createdBy": record.created_by or f"arn:aws:sts::{self._aws.account_id}:assumed-role/local",
            "updatedAt": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "createdAt": record.created_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        }
        if record.state_details:
            detail["stateDetails"] = record.state_details
        response = self._events.put_events(
            Entries=[
                {
                    "Source": "aws.emr-serverless",
                    "DetailType": "EMR Serverless Job Run State Change",
                    "Detail": json.dumps(detail),
                    "Resources": [record.arn],
                }
            ]
        )
        if response.get("FailedEntryCount"):
            raise RuntimeError(f"EventBridge refused the state change of job run {record.id}: {response['Entries']}")


def _failure(log: Path, code: int) -> str:
    """The run's stateDetails: the last error line Spark printed, like EMR's 'Job failed, please check ...'."""
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    errors = [ln.strip() for ln in lines if re.search(r"(Error|Exception)\b.*:", ln) and not ln.startswith("\tat ")]
    reason = errors[-1] if errors else f"the driver exited with code {code}"
    return f"Job failed: {reason[:900]}"


class _Follower:
    """A run's output, line by line: Spark's progress bar becomes a progress line every few seconds, the job's
    ``[dropzone]`` lines are passed on, everything but the progress bar goes to the run's log."""

    def __init__(self, out: Any, progress: Callable[[str], None]) -> None:
        self._out = out
        self._progress = progress
        self._started = self._last = time.monotonic()
        self._stages: set[str] = set()

    def line(self, line: str) -> None:
        for part in line.replace("\r", "\n").splitlines():
            self._one(part)

    def _one(self, line: str) -> None:
        stage = _STAGE.search(line)
        if stage:
            self._stages.add(stage.group(1))
            if time.monotonic() - self._last >= STAGE_REPORT_SECONDS:
                self._last = time.monotonic()
                done, total = stage.group(2), stage.group(4)
                self._progress(
                    f"stage {stage.group(1)} ({done}/{total} tasks), {len(self._stages)} stage(s) so far, "
                    f"{self._last - self._started:.0f}s"
                )
            return
        if not line.strip():
            return
        self._out.write(line + "\n")
        match = _PROGRESS.search(line)
        if match:
            self._progress(match.group(0).strip())
