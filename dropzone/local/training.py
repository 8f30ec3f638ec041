"""SageMaker training jobs executed locally with the container's script-mode contract.

moto records CreateTrainingJob as ``Completed`` at once. The executor finds each new job with
ListTrainingJobs, marks it InProgress in moto's record, stages its input channels and its
``sagemaker_submit_directory`` tarball, runs ``sagemaker_program`` with the SM_* environment and the
hyperparameters as ``--name value`` arguments (as the SageMaker training toolkit does), uploads
``model.tar.gz`` and ``output.tar.gz`` to ``<S3OutputPath>/<job>/output/``, writes the real outcome into moto's
record (status, FailureReason, FinalMetricDataList parsed with the job's MetricDefinitions, times) and puts
the "SageMaker Training Job State Change" event on the default bus.

The runtime pre-starts the next job's interpreter (:meth:`TrainingExecutor.prestart`) when a Spark run starts: it
imports numpy, pandas, pyarrow, xgboost and scikit-learn while Spark runs, then runs the job's script as
``__main__`` with the job's arguments, environment and directory, one job per interpreter (``warm=False``: a new
``python <script>`` per job, as before).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dropzone.local.server import EmbeddedAws
from dropzone.local.staging import split_uri

# moto replaces a job's MetricDefinitions with its own placeholder; the runtime then uses dropzone's own.
_MOTO_PLACEHOLDER_METRIC = "test:dcg"
_PROGRESS = re.compile(r"\[dropzone\].*")
_HOST = "algo-1"
# What a pre-started trainer interpreter imports while it waits (training/train.py's own heavy imports).
WARM_IMPORTS = ("numpy", "pandas", "pyarrow.parquet", "xgboost", "sklearn.metrics")
# The pre-started interpreter: import, wait for one job on stdin, then be `python <script> <args>` for it.
_TRAINER = """
import importlib, json, os, runpy, sys
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
    except Exception:
        pass
line = sys.stdin.readline()
if not line.strip():
    sys.exit(0)
job = json.loads(line)
os.environ.clear()
os.environ.update(job["env"])
os.chdir(job["cwd"])
sys.argv = job["argv"]
sys.path.insert(0, os.path.dirname(os.path.abspath(sys.argv[0])))
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@dataclass
class TrainingOutcome:
    name: str
    status: str
    failure_reason: str
    seconds: float
    metrics: dict[str, float]
    model_uri: str
    output_uri: str
    log: Path


def _decode(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        return value


def _epoch_ms(value: Any) -> int | None:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return None


class TrainingExecutor:
    """Runs each SageMaker training job recorded in moto once."""

    def __init__(
        self,
        aws: EmbeddedAws,
        work_dir: Path,
        progress: Callable[[str], None] = lambda line: None,
        warm: bool = True,
    ) -> None:
        self._aws = aws
        self._sagemaker = aws.client("sagemaker")
        self._s3 = aws.client("s3")
        self._events = aws.client("events")
        self._work = work_dir
        self._progress = progress
        self._done: set[str] = set()
        self.outcomes: list[TrainingOutcome] = []
        self.warm = warm
        self._next: subprocess.Popen[str] | None = None

    def pending(self) -> list[str]:
        names = []
        paginator = self._sagemaker.get_paginator("list_training_jobs")
        for page in paginator.paginate():
            names += [j["TrainingJobName"] for j in page["TrainingJobSummaries"]]
        names = [n for n in names if n not in self._done]
        return sorted(names)

    def run_pending(self) -> int:
        pending = self.pending()
        for name in pending:
            self.execute(name)
        return len(pending)

    def execute(self, name: str) -> TrainingOutcome:
        self._done.add(name)
        record = self._aws.backend("sagemaker").training_jobs[name]
        definitions = record.algorithm_specification.get("MetricDefinitions") or []
        if [d.get("Name") for d in definitions] == [_MOTO_PLACEHOLDER_METRIC]:
            from dropzone.training_jobs import METRIC_DEFINITIONS

            definitions = [dict(d) for d in METRIC_DEFINITIONS]
            record.algorithm_specification["MetricDefinitions"] = definitions
        now = datetime.now(UTC)
        record.training_job_status, record.secondary_status = "InProgress", "Training"
        record.training_start_time, record.training_end_time, record.last_modified_time = now, None, now
        record.final_metric_data_list = []
        record.failure_reason = None
        self._announce(name)
        job_dir = self._work / "training" / name
        shutil.rmtree(job_dir, ignore_errors=True)
        log = self._work / "logs" / f"training-{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        output_path = str(record.output_data_config["S3OutputPath"]).rstrip("/")
        model_uri = f"{output_path}/{name}/output/model.tar.gz"
        output_uri = f"{output_path}/{name}/output/output.tar.gz"
        metrics: dict[str, float] = {}
        try:
            command, env = self._prepare(record, job_dir)
            code, text = self._run(command, env, job_dir / "code", log)
            metrics = _metrics(text, definitions)
            failure_file = job_dir / "output" / "failure"
            if code == 0:
                status, reason = "Completed", ""
                self._upload_tar(job_dir / "model", model_uri)
            else:
                status = "Failed"
                reason = failure_file.read_text().strip() if failure_file.is_file() else _last_error(text, code)
            self._upload_tar(job_dir / "output" / "data", output_uri)
        except (ValueError, OSError, tarfile.TarError) as e:
            status, reason = "Failed", f"ClientError: {e}"
        seconds = time.perf_counter() - start
        end = datetime.now(UTC)
        record.training_job_status = status
        record.secondary_status = "Completed" if status == "Completed" else "Failed"
        record.failure_reason = reason or None
        record.training_end_time = record.last_modified_time = end
        record.model_artifacts = {"S3ModelArtifacts": model_uri} if status == "Completed" else {}
        record.final_metric_data_list = [
            {"MetricName": k, "Value": v, "Timestamp": end} for k, v in sorted(metrics.items())
        ]
        record.training_time_in_seconds = record.billable_time_in_seconds = max(1, round(seconds))
        self._announce(name)
        outcome = TrainingOutcome(name, status, reason, seconds, metrics, model_uri, output_uri, log)
        self.outcomes.append(outcome)
        return outcome

    def _prepare(self, record: Any, job_dir: Path) -> tuple[list[str], dict[str, str]]:
        hps = {k: _decode(v) for k, v in (record.hyper_parameters or {}).items()}
        program = hps.get("sagemaker_program")
        source = hps.get("sagemaker_submit_directory")
        if not program or not source:
            raise ValueError("only script-mode jobs (sagemaker_program + sagemaker_submit_directory) run locally")
        code_dir = job_dir / "code"
        code_dir.mkdir(parents=True)
        archive = job_dir / "sourcedir.tar.gz"
        bucket, key = split_uri(str(source))
        self._s3.download_file(bucket, key, str(archive))
        with tarfile.open(archive) as tar:
            tar.extractall(code_dir, filter="data")
        if not (code_dir / str(program)).is_file():
            raise ValueError(f"sagemaker_program {program} is not in {source}")
        channels = []
        env = {
            "SM_MODEL_DIR": str(job_dir / "model"),
            "SM_OUTPUT_DIR": str(job_dir / "output"),
            "SM_OUTPUT_DATA_DIR": str(job_dir / "output" / "data"),
            "SM_INPUT_DIR": str(job_dir / "input"),
            "SM_INPUT_CONFIG_DIR": str(job_dir / "input" / "config"),
            "SM_CURRENT_HOST": _HOST,
            "SM_HOSTS": json.dumps([_HOST]),
            "SM_NUM_GPUS": "0",
            "SM_NUM_CPUS": str(os.cpu_count() or 1),
            "SM_MODULE_DIR": str(source),
            "SM_USER_ENTRY_POINT": str(program),
        }
        for channel in record.input_data_config:
            name = channel["ChannelName"]
            target = job_dir / "input" / "data" / name
            self._download_channel(channel["DataSource"]["S3DataSource"], target)
            env[f"SM_CHANNEL_{name.upper()}"] = str(target)
            channels.append(name)
        for sub in ("model", "output/data", "input/config"):
            (job_dir / sub).mkdir(parents=True, exist_ok=True)
        user = {k: v for k, v in hps.items() if not k.startswith("sagemaker_")}
        (job_dir / "input" / "config" / "hyperparameters.json").write_text(json.dumps(record.hyper_parameters))
        env["SM_CHANNELS"] = json.dumps(sorted(channels))
        env["SM_HPS"] = json.dumps(user)
        for k, v in user.items():
            env[f"SM_HP_{k.upper()}"] = v if isinstance(v, str) else json.dumps(v)
        arguments: list[str] = []
        for k, v in user.items():
            arguments += [f"--{k}", v if isinstance(v, str) else json.dumps(v)]
        env["SM_USER_ARGS"] = json.dumps(arguments)
        return [sys.executable, str(program), *arguments], env

    def _download_channel(self, source: Mapping[str, Any], target: Path) -> None:
        bucket, key = split_uri(str(source["S3Uri"]))
        target.mkdir(parents=True, exist_ok=True)
        if source.get("S3DataType", "S3Prefix") != "S3Prefix":
            raise ValueError(f"S3DataType {source.get('S3DataType')} is not supported locally (use S3Prefix)")
        found = 0
        for page in self._s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key):
            for item in page.get("Contents", []):
                relative = item["Key"][len(key) :].lstrip("/") or Path(item["Key"]).name
                path = target / relative
                path.parent.mkdir(parents=True, exist_ok=True)
                self._s3.download_file(bucket, item["Key"], str(path))
                found += 1
        if not found:
            raise ValueError(f"no objects under channel URI {source['S3Uri']}")

    def prestart(self) -> None:
        """Start the interpreter of the next training job now (it imports the usual libraries, then waits):
        the runtime calls this when a Spark run starts, so the import overlaps the run that leads to training."""
        if self.warm and self._next is None:
            self._next = subprocess.Popen(  # noqa: S603 - our own interpreter with our own code
                [sys.executable, "-P", "-c", _TRAINER, *WARM_IMPORTS],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=dict(os.environ),
            )
            weakref.finalize(self, _end, self._next)  # an executor dropped without close() ends it too

    def close(self) -> None:
        """End the pre-started interpreter if no job took it (end of stdin: it exits)."""
        process, self._next = self._next, None
        if process is not None:
            _end(process)

    def _process(self, command: list[str], env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
        """The pre-started interpreter given the job (its script run as __main__ with the job's argv, environment
        and directory), or a new ``python script`` process."""
        full_env = {**os.environ, **env}
        process, self._next = self._next, None
        if process is not None and process.poll() is None and process.stdin is not None:
            try:
                process.stdin.write(json.dumps({"argv": command[1:], "env": full_env, "cwd": str(cwd)}) + "\n")
                process.stdin.close()
                return process
            except OSError:
                process.kill()
                process.wait()
        return subprocess.Popen(  # noqa: S603 - the job's own script from its staged source directory
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=full_env, cwd=cwd
        )

    def _run(self, command: list[str], env: dict[str, str], cwd: Path, log: Path) -> tuple[int, str]:
        lines: list[str] = []
        with log.open("w", encoding="utf-8") as out:
            process = self._process(command, env, cwd)
            assert process.stdout is not None
            for line in process.stdout:
                out.write(line)
                lines.append(line)
                match = _PROGRESS.search(line)
                if match:
                    self._progress(match.group(0).strip())
            return process.wait(), "".join(lines)

    def _upload_tar(self, directory: Path, uri: str) -> None:
        archive = directory.parent / (Path(split_uri(uri)[1]).name)
        with tarfile.open(archive, "w:gz") as tar:
            for path in sorted(directory.rglob("*")):
                if path.is_file():
                    tar.add(path, path.relative_to(directory).as_posix())
        bucket, key = split_uri(uri)
        self._s3.upload_file(str(archive), bucket, key)

    def _announce(self, name: str) -> None:
        description = self._sagemaker.describe_training_job(TrainingJobName=name)
        description.pop("ResponseMetadata", None)
        detail = json.loads(json.dumps(description, default=lambda v: _epoch_ms(v) or str(v)))
        response = self._events.put_events(
            Entries=[
                {
                    "Source": "aws.sagemaker",
                    "DetailType": "SageMaker Training Job State Change",
                    "Detail": json.dumps(detail),
                    "Resources": [description["TrainingJobArn"]],
                }
            ]
        )
        if response.get("FailedEntryCount"):
            raise RuntimeError(f"EventBridge refused the state change of training job {name}: {response['Entries']}")


def _metrics(text: str, definitions: list[dict[str, str]]) -> dict[str, float]:
    """Final value of each metric, as SageMaker extracts it from the job's output with MetricDefinitions."""
    values: dict[str, float] = {}
    for definition in definitions:
        matches = re.findall(definition["Regex"], text)
        if matches:
            last = matches[-1]
            values[definition["Name"]] = float(last[0] if isinstance(last, tuple) else last)
    return values


def _last_error(text: str, code: int) -> str:
    lines = [ln.strip() for ln in text.splitlines() if re.search(r"(Error|Exception)\b", ln)]
    reason = lines[-1] if lines else f"the training script exited with code {code}"
    return f"AlgorithmError: {reason[:900]}"


def _end(process: subprocess.Popen[str]) -> None:
    """End a pre-started interpreter that no job took: end of its stdin makes it exit (kill after 30 s)."""
    if process.poll() is not None:
        return
    try:
        if process.stdin is not None and not process.stdin.closed:
            process.stdin.close()
        process.wait(timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        process.kill()
        process.wait()
