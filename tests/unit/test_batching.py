"""Batching policy and run launch against moto (S3, DynamoDB, EMR Serverless); throttling through a client hook."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from dropzone.batching import (
    LEASE_SECONDS,
    RetryableStartError,
    StartedBatch,
    batch_id_for,
    client_token,
    file_format,
    maybe_start_batch,
    spark_submit_parameters,
    start_batch_attempt,
)
from dropzone.contract import Batching, Contract, load_contract
from dropzone.ledger import ACCEPTED, BATCHED, Ledger, dataset_pk, file_sk
from dropzone.settings import Settings
from dropzone.validation import detect_format

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
REGION = "us-east-1"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
ROLE = "arn:aws:iam::123456789012:role/dropzone-emr-job"
MIB = 2**20


@pytest.fixture
def orders() -> Contract:
    return load_contract(CONTRACTS / "orders.yaml")  # batching: min_files 10, 2 GiB, 15m


@pytest.fixture
def env(ledger_table: str, data_bucket: str, emr_application: str) -> dict[str, Any]:
    settings = Settings(
        data_bucket=data_bucket,
        ledger_table=ledger_table,
        emr_application_id=emr_application,
        emr_job_role_arn=ROLE,
        emr_max_vcpu="16",
        spark_entry_point=f"s3://{data_bucket}/assets/spark/main.py",
        spark_py_files=f"s3://{data_bucket}/assets/spark/spark_app.zip",
    )
    return {
        "ledger": Ledger(ledger_table, boto3.client("dynamodb", region_name=REGION)),
        "s3": boto3.client("s3", region_name=REGION),
        "emr": boto3.client("emr-serverless", region_name=REGION),
        "settings": settings,
    }


def _accept(ledger: Ledger, n: int, *, start: int = 0, size: int = MIB, seen_at: datetime = T0) -> list[str]:
    """Record n ACCEPTED files of orders as the ingest function would; returns their sks."""
    sks = []
    for i in range(start, start + n):
        key = f"incoming/orders/2026/11/20/part-{i:04d}.csv"
        ledger.record_file(
            "orders",
            {
                "bucket": "dropzone-data",
                "key": key,
                "version": f"etag{i:04d}",
                "status": ACCEPTED,
                "size": size,
                "format": "csv",
                "seen_at": (seen_at + timedelta(seconds=i)).isoformat(timespec="seconds"),
                "attempt": 0,
            },
        )
        sks.append(file_sk("dropzone-data", key, f"etag{i:04d}"))
    return sks


def _runs(env: dict[str, Any]) -> list[dict[str, Any]]:
    app = env["settings"].emr_application_id
    try:
        return list(env["emr"].list_job_runs(applicationId=app)["jobRuns"])
    except env["emr"].exceptions.ResourceNotFoundException:
        return []  # moto 5.2 answers this for an application that has no job runs yet


def _start(env: dict[str, Any], contract: Contract, now: datetime, **kw: Any) -> StartedBatch | None:
    return maybe_start_batch("orders", contract, now=now, **env, **kw)


def test_min_files_reached_starts_exactly_one_run_with_manifest_and_request(
    env: dict[str, Any], orders: Contract
) -> None:
    # GIVEN 9 accepted files (min_files is 10)
    sks = _accept(env["ledger"], 9)
    calls = []
    env["emr"].meta.events.register(
        "provide-client-params.emr-serverless.StartJobRun", lambda params, **_: calls.append(dict(params))
    )
    # WHEN the policy runs THEN nothing starts
    assert _start(env, orders, T0 + timedelta(minutes=1)) is None
    assert _runs(env) == []
    # WHEN the 10th file arrives
    sks += _accept(env["ledger"], 1, start=9)
    started = _start(env, orders, T0 + timedelta(minutes=1))
    # THEN one run is started for exactly these 10 files
    assert started is not None
    assert len(_runs(env)) == 1
    assert sorted(started.files) == sorted(sks)
    assert started.attempt == 1
    assert started.client_token == f"{started.batch_id}-1"
    assert re.fullmatch(r"[A-Za-z0-9._-]{1,64}", started.client_token)
    # the manifest was written with the exact files
    bucket = env["settings"].data_bucket
    manifest = json.loads(
        env["s3"].get_object(Bucket=bucket, Key=f"batches/orders/{started.batch_id}/manifest.json")["Body"].read()
    )
    assert manifest["dataset"] == "orders"
    assert manifest["batch_id"] == started.batch_id
    assert manifest["attempt"] == 1
    assert len(manifest["files"]) == 10
    assert manifest["files"][0] == {
        "uri": "s3://dropzone-data/incoming/orders/2026/11/20/part-0000.csv",
        "key": "incoming/orders/2026/11/20/part-0000.csv",
        "version": "etag0000",
        "size": MIB,
        "format": "csv",
    }
    # the files moved to BATCHED, the batch records the run
    ledger = env["ledger"]
    assert {f["status"] for f in ledger.query_dataset("orders", "FILE#")} == {BATCHED}
    batch = ledger.get_batch("orders", started.batch_id)
    assert batch is not None
    assert batch["status"] == "RUNNING"
    assert batch["job_run_id"] == started.job_run_id
    # the StartJobRun request carries everything the run needs
    assert len(calls) == 1
    request = calls[0]
    assert request["clientToken"] == started.client_token
    assert request["executionRoleArn"] == ROLE
    assert request["tags"]["dataset"] == "orders"
    assert request["tags"]["batch_id"] == started.batch_id
    assert request["executionTimeoutMinutes"] >= 5
    driver = request["jobDriver"]["sparkSubmit"]
    assert driver["entryPoint"] == f"s3://{bucket}/assets/spark/main.py"
    args = driver["entryPointArguments"]
    assert args == [
        "--manifest",
        started.manifest_uri,
        "--contracts",
        f"s3://{bucket}/assets/contracts/",
        "--dataset",
        "orders",
        "--curated",
        f"s3://{bucket}/curated/",
        "--features",
        f"s3://{bucket}/features/",
        "--run-id",
        started.client_token,
    ]
    assert f"--py-files s3://{bucket}/assets/spark/spark_app.zip" in driver["sparkSubmitParameters"]
    assert "spark.executor.instances=1" in driver["sparkSubmitParameters"]
    log_uri = request["configurationOverrides"]["monitoringConfiguration"]["s3MonitoringConfiguration"]["logUri"]
    assert log_uri == f"s3://{bucket}/logs/emr/"
    run = env["emr"].get_job_run(applicationId=env["settings"].emr_application_id, jobRunId=started.job_run_id)
    assert run["jobRun"]["tags"] == {"dataset": "orders", "batch_id": started.batch_id, "attempt": "1"}


def test_second_call_while_the_lease_is_held_starts_nothing(env: dict[str, Any], orders: Contract) -> None:
    # GIVEN 20 waiting files and a first run started
    _accept(env["ledger"], 20)
    first = _start(env, orders, T0)
    assert first is not None
    # WHEN the policy runs again (10 files still waiting) while the run is in flight
    second = _start(env, orders, T0 + timedelta(minutes=5))
    # THEN no second run, and the waiting files stay waiting
    assert second is None
    assert len(_runs(env)) == 1
    assert len(env["ledger"].files_waiting("orders")) == 10
    lease = env["ledger"].get_lease("orders")
    assert lease is not None
    assert lease["owner"] == first.batch_id


def test_an_expired_lease_is_taken_over(env: dict[str, Any], orders: Contract) -> None:
    # GIVEN a run whose lease was never released (its completion event was lost)
    _accept(env["ledger"], 20)
    first = _start(env, orders, T0)
    assert first is not None
    # WHEN the policy runs just before and just after the lease expires
    before = _start(env, orders, T0 + timedelta(seconds=LEASE_SECONDS - 1))
    after = _start(env, orders, T0 + timedelta(seconds=LEASE_SECONDS))
    # THEN only the second call takes the lease over and starts the next batch
    assert before is None
    assert after is not None
    assert after.batch_id != first.batch_id
    assert not set(after.files) & set(first.files)
    lease = env["ledger"].get_lease("orders")
    assert lease is not None
    assert lease["owner"] == after.batch_id
    assert len(_runs(env)) == 2


def test_max_wait_flushes_a_small_batch(env: dict[str, Any], orders: Contract) -> None:
    # GIVEN 3 files that arrived at T0 (max_wait 15 minutes)
    _accept(env["ledger"], 3)
    # WHEN the policy runs before max_wait of the oldest has passed THEN nothing starts
    assert _start(env, orders, T0 + timedelta(minutes=14)) is None
    # WHEN the oldest has waited 15 minutes THEN the 3 files start a run
    started = _start(env, orders, T0 + timedelta(minutes=15))
    assert started is not None
    assert len(started.files) == 3


def test_force_due_flushes_at_once_but_never_an_empty_batch(env: dict[str, Any], orders: Contract) -> None:
    assert _start(env, orders, T0, force_due=True) is None  # nothing waiting
    _accept(env["ledger"], 2)
    started = _start(env, orders, T0 + timedelta(minutes=1), force_due=True)
    assert started is not None
    assert len(started.files) == 2


def test_max_batch_bytes_starts_a_run_and_caps_its_size(env: dict[str, Any], orders: Contract) -> None:
    # GIVEN a policy of at most 100 MiB per batch and three 40 MiB files
    contract = replace(orders, batching=Batching(min_files=10, max_batch_bytes=100 * MIB, max_wait=timedelta(hours=1)))
    _accept(env["ledger"], 2, size=40 * MIB)
    assert _start(env, contract, T0) is None  # 80 MiB: not due yet
    _accept(env["ledger"], 1, start=2, size=40 * MIB)
    # WHEN 120 MiB are waiting
    started = _start(env, contract, T0)
    # THEN a run starts with the files that fit (2 x 40 MiB), the third waits
    assert started is not None
    assert len(started.files) == 2
    assert started.bytes == 80 * MIB
    assert len(env["ledger"].files_waiting("orders")) == 1


def test_200_files_at_once_make_ceil_200_over_min_files_runs_one_at_a_time(
    env: dict[str, Any], orders: Contract
) -> None:
    # GIVEN 200 files accepted at once (min_files 10)
    ledger = env["ledger"]
    all_sks = set(_accept(ledger, 200))
    batches: list[StartedBatch] = []
    now = T0
    # WHEN runs are started and each completes (lease released) before the next policy call
    while (started := _start(env, orders, now)) is not None:
        batches.append(started)
        assert _start(env, orders, now) is None  # never two in flight
        ledger.update_batch("orders", started.batch_id, status="SUCCEEDED")
        assert ledger.release_lease("orders", started.batch_id)
        now += timedelta(seconds=30)
    # THEN ceil(200/10) runs, each file in exactly one batch
    assert len(batches) == math.ceil(200 / orders.batching.min_files)
    assert len(_runs(env)) == len(batches)
    seen = [sk for b in batches for sk in b.files]
    assert len(seen) == len(set(seen)) == 200
    assert set(seen) == all_sks
    files = list(ledger.query_dataset("orders", "FILE#"))
    assert {f["status"] for f in files} == {BATCHED}
    assert {f["batch_id"] for f in files} == {b.batch_id for b in batches}


@pytest.mark.parametrize("code", ["ThrottlingException", "ServiceQuotaExceededException"])
def test_throttled_start_job_run_is_retried_with_the_same_client_token(
    env: dict[str, Any], orders: Contract, record_calls: Any, code: str
) -> None:
    # GIVEN 10 waiting files and StartJobRun refusing the first call
    _accept(env["ledger"], 10)
    calls = record_calls(env["emr"], "StartJobRun")
    calls.fail_next(code)
    # WHEN the policy runs
    with pytest.raises(RetryableStartError, match=code):
        _start(env, orders, T0)
    # THEN nothing is lost: the batch exists with its manifest, files are claimed, no run yet
    assert _runs(env) == []
    lease = env["ledger"].get_lease("orders")
    assert lease is not None
    batch = env["ledger"].get_batch("orders", lease["owner"])
    assert batch is not None
    assert batch["status"] == "STARTING"
    assert len(batch["files"]) == 10
    key = f"batches/orders/{batch['batch_id']}/manifest.json"
    assert env["s3"].head_object(Bucket=env["settings"].data_bucket, Key=key)["ContentLength"] > 0
    # WHEN it runs again (redelivery) THEN the same batch starts once, with the same clientToken
    started = _start(env, orders, T0 + timedelta(minutes=1))
    assert started is not None
    assert started.resumed
    assert started.batch_id == batch["batch_id"]
    assert len(_runs(env)) == 1
    assert [c["clientToken"] for c in calls.calls] == [client_token(batch["batch_id"], 1)] * 2
    # and a further call starts nothing
    assert _start(env, orders, T0 + timedelta(minutes=2)) is None
    assert len(_runs(env)) == 1


def test_other_start_errors_are_not_disguised_as_retryable(
    env: dict[str, Any], orders: Contract, record_calls: Any
) -> None:
    _accept(env["ledger"], 10)
    record_calls(env["emr"], "StartJobRun").fail_next("ValidationException")
    with pytest.raises(env["emr"].exceptions.ValidationException):
        _start(env, orders, T0)


def test_a_crash_between_lease_and_batch_does_not_block_the_dataset(env: dict[str, Any], orders: Contract) -> None:
    # GIVEN a lease whose batch was never written (crash right after taking the lease)
    _accept(env["ledger"], 10)
    assert env["ledger"].acquire_lease("orders", "ghost", now=T0, ttl_seconds=LEASE_SECONDS)
    # WHEN the policy runs THEN it frees the lease and starts the batch
    started = _start(env, orders, T0 + timedelta(minutes=1))
    assert started is not None
    assert len(started.files) == 10


def test_failed_batch_runs_again_as_the_next_attempt(env: dict[str, Any], orders: Contract) -> None:
    # GIVEN a batch whose run failed (the completion side marked it FAILED and released the lease)
    _accept(env["ledger"], 10)
    first = _start(env, orders, T0)
    assert first is not None
    env["ledger"].update_batch("orders", first.batch_id, status="FAILED")
    env["ledger"].release_lease("orders", first.batch_id)
    # WHEN it is retried
    second = start_batch_attempt("orders", first.batch_id, now=T0 + timedelta(minutes=10), **env)
    # THEN attempt 2 runs the same files under a new clientToken and manifest
    assert second is not None
    assert second.attempt == 2
    assert second.client_token == f"{first.batch_id}-2"
    assert set(second.files) == set(first.files)
    assert len(_runs(env)) == 2
    manifest = json.loads(
        env["s3"]
        .get_object(Bucket=env["settings"].data_bucket, Key=f"batches/orders/{first.batch_id}/manifest.json")["Body"]
        .read()
    )
    assert manifest["attempt"] == 2
    files = list(env["ledger"].query_dataset("orders", "FILE#"))
    assert {f["attempt"] for f in files} == {2}


def test_files_put_back_after_a_failure_are_batched_as_the_next_attempt(env: dict[str, Any], orders: Contract) -> None:
    # GIVEN the completion side put a failed batch's files back to waiting (attempt 1 recorded on each)
    ledger = env["ledger"]
    _accept(ledger, 10)
    first = _start(env, orders, T0)
    assert first is not None
    ledger.update_batch("orders", first.batch_id, status="FAILED")
    for sk in first.files:
        ledger.transition_file("orders", sk, BATCHED, ACCEPTED)
    ledger.release_lease("orders", first.batch_id)
    # WHEN the policy runs again
    second = _start(env, orders, T0 + timedelta(minutes=1))
    # THEN the same batch id runs as attempt 2
    assert second is not None
    assert second.batch_id == first.batch_id
    assert second.attempt == 2
    assert second.client_token == f"{first.batch_id}-2"
    batch = ledger.get_batch("orders", first.batch_id)
    assert batch is not None
    assert batch["attempt"] == 2
    assert batch["job_run_id"] == second.job_run_id
    item = ledger.get_item(dataset_pk("orders"), first.files[0])
    assert item is not None
    assert item["attempt"] == 2


def test_batch_id_depends_on_the_set_of_files_only() -> None:
    a = batch_id_for(["FILE#b/k1#v", "FILE#b/k2#v"])
    assert a == batch_id_for(["FILE#b/k2#v", "FILE#b/k1#v"])
    assert a != batch_id_for(["FILE#b/k1#v", "FILE#b/k2#v2"])
    assert re.fullmatch(r"[0-9a-f]{40}", a)
    assert len(client_token(a, 99)) <= 64


@pytest.mark.parametrize(
    ("batch_bytes", "max_vcpu", "executors"),
    [
        (10 * MIB, 16, 1),  # small batch: one executor
        (4 * 256 * MIB, 16, 1),  # 4 cores' worth: one 4-core executor
        (5 * 256 * MIB, 16, 2),  # one core more: a second executor
        (100 * 2**30, 16, 3),  # huge batch, capped: (16 - 2 driver vCPU) // 4
        (100 * 2**30, 64, 15),
        (100 * 2**30, 4, 1),  # a cap below one executor still gets one
    ],
)
def test_spark_sizing_follows_batch_bytes_within_the_vcpu_cap(batch_bytes: int, max_vcpu: int, executors: int) -> None:
    parameters = spark_submit_parameters(batch_bytes, max_vcpu, None)
    assert f"spark.executor.instances={executors} " in parameters
    assert f"spark.dynamicAllocation.maxExecutors={executors} " in parameters
    assert "--py-files" not in parameters


def test_a_file_the_index_still_shows_after_it_was_batched_is_left_out(
    env: dict[str, Any], orders: Contract, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN 11 accepted files, the oldest of which another worker has just batched, but the eventually consistent
    # waiting index still shows it as waiting
    sks = _accept(env["ledger"], 11)
    ledger: Ledger = env["ledger"]
    snapshot = list(ledger.query_waiting("BATCH#orders"))
    assert ledger.transition_file("orders", sks[0], ACCEPTED, BATCHED, batch_id="other") is not None
    monkeypatch.setattr(ledger, "query_waiting", lambda value: iter(snapshot))
    # WHEN the policy runs
    started = _start(env, orders, T0 + timedelta(minutes=1))
    # THEN the run takes the 10 files that really wait, and the batched one keeps its batch
    assert started is not None
    assert sorted(started.files) == sorted(sks[1:])
    assert (ledger.get_item(dataset_pk("orders"), sks[0]) or {})["batch_id"] == "other"


def test_the_file_just_accepted_counts_even_before_the_index_shows_it(
    env: dict[str, Any], orders: Contract, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN 10 accepted files (min_files) of which the index shows only 9 so far
    sks = _accept(env["ledger"], 10)
    ledger: Ledger = env["ledger"]
    shown = [f for f in ledger.query_waiting("BATCH#orders") if f["sk"] != sks[-1]]
    monkeypatch.setattr(ledger, "query_waiting", lambda value: iter(shown))
    now = T0 + timedelta(minutes=1)
    assert _start(env, orders, now) is None
    # WHEN the ingest step that accepted the 10th names it THEN the run starts with all 10
    started = _start(env, orders, now, just_accepted=[sks[-1]])
    assert started is not None
    assert sorted(started.files) == sorted(sks)


@pytest.mark.parametrize(
    ("key", "fmt"),
    [
        ("incoming/orders/a.csv", "csv"),
        ("incoming/orders/a.CSV.GZ", "csv.gz"),
        ("incoming/orders/a.json", "jsonl"),
        ("incoming/orders/a.ndjson", "jsonl"),
        ("incoming/orders/a.ndjson.gz", "jsonl.gz"),
        ("incoming/orders/a.json.gz", "jsonl.gz"),
        ("incoming/orders/a.jsonl", "jsonl"),
        ("incoming/orders/a.parquet", "parquet"),
        ("incoming/orders/a.txt", ""),
    ],
)
def test_a_batch_file_gets_the_format_the_validator_read_it_as(key: str, fmt: str) -> None:
    """Every name the validator accepts has a format in the manifest (an accepted .ndjson file had '' and failed the
    Spark run); the job's own reading of a bare URI agrees."""
    from spark_app.io import file_format as job_format

    assert file_format(key) == fmt
    assert (detect_format(key) or "") == fmt
    if fmt:
        assert job_format(f"s3://bucket/{key}") == fmt
