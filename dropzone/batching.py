"""Batching policy and EMR Serverless run launch: waiting files → batch manifest → StartJobRun, one run per dataset.

Used by the ingest function after each accepted file, and by the completion handler and the reconciler. Every
step is a conditional write in the ledger, so a crash or a throttled StartJobRun anywhere leaves a state that the
next call finishes: the lease names the batch, the batch item lists its files, and StartJobRun is retried with
the same ``clientToken`` (``<batch id>-<attempt>``) until it answers.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from dropzone.contract import Contract, format_of
from dropzone.ledger import (
    ACCEPTED,
    BATCH_FAILED,
    BATCH_RETRYING,
    BATCH_RUNNING,
    BATCH_STARTING,
    BATCHED,
    Ledger,
    LedgerError,
    dataset_pk,
    iso,
)
from dropzone.settings import Settings

EXECUTION_TIMEOUT_MINUTES = 180  # a feature run that takes longer is stuck; EMR cancels it
LEASE_SECONDS = (EXECUTION_TIMEOUT_MINUTES + 30) * 60  # beyond the run's own timeout, then the reconciler takes over
BATCH_ID_CHARS = 40  # hex chars of sha256: clientToken "<40>-<attempt>" stays far below 64
BYTES_PER_EXECUTOR_CORE = 256 * 2**20  # input bytes one Spark core handles comfortably in a feature run
DRIVER_CORES = 2
DRIVER_MEMORY_GB = 4
EXECUTOR_CORES = 4
EXECUTOR_MEMORY_GB = 14  # + EMR Serverless' 10% overhead fits the 4 vCPU / 16 GB worker
DEFAULT_MAX_VCPU = 16  # EMR Serverless default quota of a new account


class RetryableStartError(RuntimeError):
    """StartJobRun was throttled or over quota: the batch is ready, a later call retries with the same clientToken."""


@dataclass(frozen=True)
class StartedBatch:
    """A batch whose run was started (or resumed) by this call."""

    dataset: str
    batch_id: str
    attempt: int
    job_run_id: str
    client_token: str
    manifest_uri: str
    files: tuple[str, ...]  # file sks
    bytes: int
    resumed: bool = False


def batch_id_for(file_sks: Sequence[str]) -> str:
    """Deterministic batch id: sha256 of the sorted file identities (same files → same id)."""
    digest = hashlib.sha256("\n".join(sorted(file_sks)).encode()).hexdigest()
    return digest[:BATCH_ID_CHARS]


def client_token(batch_id: str, attempt: int) -> str:
    return f"{batch_id}-{attempt}"


def file_format(key: str) -> str:
    """The contract format name of a key from its name (dropzone.contract.FILE_SUFFIXES), or '' for none."""
    return format_of(key) or ""


def is_due(files: Sequence[Mapping[str, Any]], contract: Contract, now: datetime, *, force_due: bool = False) -> bool:
    """The policy: enough files, enough bytes, the oldest waited max_wait, or forced (with at least one file)."""
    if not files:
        return False
    policy = contract.batching
    if force_due or len(files) >= policy.min_files:
        return True
    if sum(int(f.get("size", 0)) for f in files) >= policy.max_batch_bytes:
        return True
    oldest = min(str(f.get("seen_at", "")) for f in files)
    return bool(oldest) and datetime.fromisoformat(oldest) + policy.max_wait <= now


def select_files(files: Sequence[Mapping[str, Any]], contract: Contract) -> list[Mapping[str, Any]]:
    """Oldest first, at most min_files files and max_batch_bytes bytes (always at least one file)."""
    policy = contract.batching
    chosen: list[Mapping[str, Any]] = []
    total = 0
    for f in files:
        size = int(f.get("size", 0))
        if chosen and (len(chosen) >= policy.min_files or total + size > policy.max_batch_bytes):
            break
        chosen.append(f)
        total += size
    return chosen


def spark_submit_parameters(batch_bytes: int, max_vcpu: int, py_files: str | None) -> str:
    """Spark sizing for a batch: one executor core per 256 MiB of input, within the application's vCPU cap."""
    cores_wanted = max(1, math.ceil(batch_bytes / BYTES_PER_EXECUTOR_CORE))
    executors_wanted = math.ceil(cores_wanted / EXECUTOR_CORES)
    executors_max = max(1, (max_vcpu - DRIVER_CORES) // EXECUTOR_CORES)
    executors = min(executors_wanted, executors_max)
    partitions = max(8, 2 * executors * EXECUTOR_CORES)
    conf = {
        "spark.driver.cores": DRIVER_CORES,
        "spark.driver.memory": f"{DRIVER_MEMORY_GB}g",
        "spark.executor.cores": EXECUTOR_CORES,
        "spark.executor.memory": f"{EXECUTOR_MEMORY_GB}g",
        "spark.executor.instances": executors,
        "spark.dynamicAllocation.maxExecutors": executors,
        "spark.sql.shuffle.partitions": partitions,
    }
    parts = [f"--conf {k}={v}" for k, v in conf.items()]
    if py_files:
        parts.insert(0, f"--py-files {py_files}")
    return " ".join(parts)


def manifest_key(dataset: str, batch_id: str) -> str:
    return f"batches/{dataset}/{batch_id}/manifest.json"


def build_manifest(dataset: str, batch_id: str, attempt: int, files: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The batch manifest the Spark job reads: exactly these files, in sk order."""
    entries = [
        {
            "uri": f"s3://{f['bucket']}/{f['key']}",
            "key": f["key"],
            "version": f["version"],
            "size": int(f.get("size", 0)),
            "format": f.get("format") or file_format(str(f["key"])),
        }
        for f in sorted(files, key=lambda f: str(f["sk"]))
    ]
    return {"dataset": dataset, "batch_id": batch_id, "attempt": attempt, "files": entries}


def start_job_run_request(
    dataset: str, batch_id: str, attempt: int, batch_bytes: int, settings: Settings
) -> dict[str, Any]:
    """The StartJobRun arguments for one attempt of a batch (pure: tests and the local runtime read it)."""
    settings.require("data_bucket", "emr_application_id", "emr_job_role_arn", "spark_entry_point")
    bucket = settings.data_bucket
    token = client_token(batch_id, attempt)
    max_vcpu = int(settings.emr_max_vcpu) if settings.emr_max_vcpu else DEFAULT_MAX_VCPU
    return {
        "applicationId": settings.emr_application_id,
        "clientToken": token,
        "executionRoleArn": settings.emr_job_role_arn,
        "name": f"dz-{dataset}-{batch_id[:12]}-{attempt}",
        "tags": {"dataset": dataset, "batch_id": batch_id, "attempt": str(attempt)},
        "executionTimeoutMinutes": EXECUTION_TIMEOUT_MINUTES,
        "jobDriver": {
            "sparkSubmit": {
                "entryPoint": settings.spark_entry_point,
                "entryPointArguments": [
                    "--manifest",
                    f"s3://{bucket}/{manifest_key(dataset, batch_id)}",
                    "--contracts",
                    f"s3://{bucket}/{settings.contracts_prefix}",
                    "--dataset",
                    dataset,
                    "--curated",
                    f"s3://{bucket}/curated/",
                    "--features",
                    f"s3://{bucket}/features/",
                    "--run-id",
                    token,
                ],
                "sparkSubmitParameters": spark_submit_parameters(batch_bytes, max_vcpu, settings.spark_py_files),
            }
        },
        "configurationOverrides": {
            "monitoringConfiguration": {"s3MonitoringConfiguration": {"logUri": f"s3://{bucket}/logs/emr/"}}
        },
    }


_RETRYABLE = frozenset({"ThrottlingException", "ServiceQuotaExceededException", "TooManyRequestsException"})


def _start_run(emr: Any, request: Mapping[str, Any]) -> str:
    try:
        answer = emr.start_job_run(**request)
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in _RETRYABLE:
            raise RetryableStartError(f"StartJobRun {request['clientToken']} refused for now: {code}") from e
        raise
    return str(answer["jobRunId"])


def _launch(
    dataset: str,
    batch: Mapping[str, Any],
    *,
    ledger: Ledger,
    s3: Any,
    emr: Any,
    settings: Settings,
    now: datetime,
    resumed: bool,
) -> StartedBatch:
    """Finish a STARTING batch: files → BATCHED, manifest, StartJobRun (same clientToken every time), RUNNING."""
    batch_id = str(batch["batch_id"])
    attempt = int(batch["attempt"])
    file_sks = [str(s) for s in batch["files"]]
    files: list[dict[str, Any]] = []
    for sk in file_sks:
        moved = ledger.transition_file(dataset, sk, ACCEPTED, BATCHED, batch_id=batch_id, attempt=attempt)
        if moved is None:
            current = ledger.get_item(f"DATASET#{dataset}", sk)
            if current is None or current.get("batch_id") != batch_id or current.get("status") != BATCHED:
                raise LedgerError(f"file {sk} of batch {batch_id} is {current and current.get('status')} elsewhere")
            moved = current
        files.append(moved)
    manifest = build_manifest(dataset, batch_id, attempt, files)
    key = manifest_key(dataset, batch_id)
    s3.put_object(
        Bucket=settings.data_bucket,
        Key=key,
        Body=json.dumps(manifest, indent=1).encode(),
        ContentType="application/json",
    )
    request = start_job_run_request(dataset, batch_id, attempt, int(batch.get("bytes", 0)), settings)
    job_run_id = _start_run(emr, request)
    ledger.update_batch(
        dataset,
        batch_id,
        expect_status=(BATCH_STARTING, BATCH_RUNNING),
        expect_attempt=attempt,
        status=BATCH_RUNNING,
        job_run_id=job_run_id,
        started_at=iso(now),
    )
    return StartedBatch(
        dataset=dataset,
        batch_id=batch_id,
        attempt=attempt,
        job_run_id=job_run_id,
        client_token=request["clientToken"],
        manifest_uri=f"s3://{settings.data_bucket}/{key}",
        files=tuple(file_sks),
        bytes=int(batch.get("bytes", 0)),
        resumed=resumed,
    )


def _resume_if_starting(
    dataset: str, owner: str, *, ledger: Ledger, s3: Any, emr: Any, settings: Settings, now: datetime
) -> tuple[bool, StartedBatch | None]:
    """When the lease's batch never got its run, finish it. Returns (lease is busy, started batch)."""
    batch = ledger.get_batch(dataset, owner)
    if batch is None:
        # Crash between taking the lease and creating the batch: nothing was claimed, give the lease back.
        ledger.release_lease(dataset, owner)
        return False, None
    if batch.get("status") == BATCH_STARTING:
        ledger.acquire_lease(dataset, owner, now=now, ttl_seconds=LEASE_SECONDS)
        return True, _launch(dataset, batch, ledger=ledger, s3=s3, emr=emr, settings=settings, now=now, resumed=True)
    return True, None


def maybe_start_batch(
    dataset: str,
    contract: Contract,
    *,
    ledger: Ledger,
    s3: Any,
    emr: Any,
    settings: Settings,
    now: datetime,
    force_due: bool = False,
    just_accepted: Sequence[str] = (),
) -> StartedBatch | None:
    """Start the dataset's next run when the policy says so and no run is in flight; finish a half-started one.

    Waiting files come from the ledger's sparse waiting index, which is eventually consistent: ``just_accepted``
    (sks the caller has just accepted) are read consistently in case the index does not show them yet, and the
    files picked for a batch are re-read before anything is written, so a file the index still shows a moment
    after it was batched is left out instead of failing the batch.

    Raises :class:`RetryableStartError` when StartJobRun is throttled: the caller fails its message, and the next
    call (any redelivery, the reconciler) resumes the same batch with the same clientToken.
    """
    lease = ledger.get_lease(dataset)
    if lease is not None and not Ledger.lease_expired(lease, now):
        busy, started = _resume_if_starting(
            dataset, str(lease["owner"]), ledger=ledger, s3=s3, emr=emr, settings=settings, now=now
        )
        if busy:
            return started
    elif lease is not None:
        # Expired: a batch that never got its run is finished first; a started one is the reconciler's to judge.
        owner = str(lease["owner"])
        batch = ledger.get_batch(dataset, owner)
        if batch is not None and batch.get("status") == BATCH_STARTING:
            if not ledger.acquire_lease(dataset, owner, now=now, ttl_seconds=LEASE_SECONDS):
                return None
            return _launch(dataset, batch, ledger=ledger, s3=s3, emr=emr, settings=settings, now=now, resumed=True)

    waiting = ledger.files_waiting(dataset, also=just_accepted, now=now)
    while True:
        if not is_due(waiting, contract, now, force_due=force_due):
            return None
        picked = select_files(waiting, contract)
        current = [ledger.get_item(dataset_pk(dataset), str(f["sk"])) for f in picked]
        stale = {str(f["sk"]) for f, c in zip(picked, current, strict=True) if c is None or c.get("status") != ACCEPTED}
        if not stale:
            chosen = [c for c in current if c is not None]
            break
        waiting = [f for f in waiting if str(f["sk"]) not in stale]
    file_sks = [str(f["sk"]) for f in chosen]
    batch_id = batch_id_for(file_sks)
    attempt = max(int(f.get("attempt", 0)) for f in chosen) + 1
    if not ledger.acquire_lease(dataset, batch_id, now=now, ttl_seconds=LEASE_SECONDS):
        return None  # another worker took it a moment ago
    record = {
        "status": BATCH_STARTING,
        "files": sorted(file_sks),
        "manifest_key": manifest_key(dataset, batch_id),
        "bytes": sum(int(f.get("size", 0)) for f in chosen),
        "attempt": attempt,
        "created_at": iso(now),
    }
    if not ledger.create_batch(dataset, batch_id, record):
        # The same files were batched before (a failed attempt put them back): this is the next attempt.
        existing = ledger.get_batch(dataset, batch_id) or {}
        updated = ledger.update_batch(
            dataset,
            batch_id,
            expect_status=(BATCH_FAILED, BATCH_RETRYING),
            expect_attempt=int(existing.get("attempt", 0)),
            remove=("job_run_id",),
            status=BATCH_STARTING,
            attempt=max(attempt, int(existing.get("attempt", 0)) + 1),
        )
        if updated is None and existing.get("status") != BATCH_STARTING:
            ledger.release_lease(dataset, batch_id)
            raise LedgerError(f"batch {batch_id} of {dataset} exists with status {existing.get('status')}")
    batch = ledger.get_batch(dataset, batch_id)
    assert batch is not None
    return _launch(dataset, batch, ledger=ledger, s3=s3, emr=emr, settings=settings, now=now, resumed=False)


def start_batch_attempt(
    dataset: str,
    batch_id: str,
    *,
    ledger: Ledger,
    s3: Any,
    emr: Any,
    settings: Settings,
    now: datetime,
) -> StartedBatch | None:
    """Run a FAILED/RETRYING batch again as attempt + 1, same files, new clientToken; None if the lease is busy.

    The batch's files must still be BATCHED with this batch id (or back to ACCEPTED): they are re-claimed.
    """
    batch = ledger.get_batch(dataset, batch_id)
    if batch is None:
        raise LedgerError(f"no batch {batch_id} in dataset {dataset}")
    if batch.get("status") == BATCH_STARTING:
        if not ledger.acquire_lease(dataset, batch_id, now=now, ttl_seconds=LEASE_SECONDS):
            return None
        return _launch(dataset, batch, ledger=ledger, s3=s3, emr=emr, settings=settings, now=now, resumed=True)
    if not ledger.acquire_lease(dataset, batch_id, now=now, ttl_seconds=LEASE_SECONDS):
        return None
    attempt = int(batch["attempt"])
    updated = ledger.update_batch(
        dataset,
        batch_id,
        expect_status=(BATCH_FAILED, BATCH_RETRYING),
        expect_attempt=attempt,
        remove=("job_run_id",),
        status=BATCH_STARTING,
        attempt=attempt + 1,
    )
    if updated is None:
        ledger.release_lease(dataset, batch_id)
        raise LedgerError(f"batch {batch_id} of {dataset} is {batch.get('status')}, not FAILED or RETRYING")
    for sk in updated["files"]:
        # Files still BATCHED under this batch keep it; files put back to ACCEPTED are re-claimed by _launch.
        ledger.update_with_condition(
            f"DATASET#{dataset}",
            str(sk),
            set_values={"attempt": attempt + 1},
            condition="#st = :batched AND batch_id = :batch",
            condition_names={"#st": "status"},
            condition_values={"batched": BATCHED, "batch": batch_id},
        )
    return _launch(dataset, updated, ledger=ledger, s3=s3, emr=emr, settings=settings, now=now, resumed=False)
