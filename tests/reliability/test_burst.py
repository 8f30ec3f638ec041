"""Burst: 2,000 small files land at once. The number of runs is what the batching policy says, one run at a time
per dataset, every file ends in exactly one terminal state, nothing is left in a DLQ (failed messages of a batch
are redelivered, as SQS does with ReportBatchItemFailures)."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from tests.reliability.harness import Faults, Pipeline, bad_csv, good_csv

FILES = 2000
BAD_EVERY = 20  # 5% of the files are quarantined
MIN_FILES = 10  # contracts/orders.yaml batching.min_files


@pytest.mark.slow
def test_burst_of_2000_files(
    moto_stack: None, monkeypatch: pytest.MonkeyPatch, lambda_context: Any, figures: Any
) -> None:
    # GIVEN the orders contract's batching policy, and StartJobRun throttled now and then (EMR allows 1 TPS)
    faults = Faults(throttle_start_job_run_at=set(range(3, 400, 17)))
    pipeline = Pipeline(monkeypatch, lambda_context, seed=11, min_files=MIN_FILES, faults=faults)
    started = time.perf_counter()

    # WHEN 2,000 files are dropped before any function runs
    for n in range(FILES):
        if n % BAD_EVERY == 5:
            pipeline.drop(f"incoming/orders/burst/bad-{n:05d}.csv", bad_csv(n), "QUARANTINED")
        else:
            pipeline.drop(f"incoming/orders/burst/part-{n:05d}.csv", good_csv(n, rows=2), "ACCEPTED")
    pipeline.run_until_idle()

    # THEN every file is in one terminal state, nothing is lost or in a DLQ, one run at a time
    result = pipeline.audit()
    accepted = FILES - FILES // BAD_EVERY
    assert result["accepted"] == accepted
    assert result["quarantined"] == FILES // BAD_EVERY
    # AND the runs are what the policy says: full batches of min_files, the remainder flushed after max_wait
    assert result["runs started"] == math.ceil(accepted / MIN_FILES)
    assert result["redeliveries after failure"] > 0
    assert result["max runs in flight per dataset"] == 1
    figures("burst", {**result, "seconds (moto, in process)": round(time.perf_counter() - started, 1)})
