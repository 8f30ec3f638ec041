"""Burst: 2,000 small files land at once in four datasets (the orders contract under four names). The number of
runs is what the batching policy says, one run at a time per dataset, every file ends in exactly one terminal
state, nothing is left in a DLQ (failed messages of a batch are redelivered, as SQS does with
ReportBatchItemFailures)."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest

from dropzone.training_jobs import model_package_group_name
from tests.reliability.harness import Faults, Pipeline, bad_csv, good_csv

FILES = 2000
DATASETS = ("orders", "orders2", "orders3", "orders4")
BAD_EVERY = 20  # 5% of the files are quarantined
MIN_FILES = 10  # contracts/orders.yaml batching.min_files


@pytest.mark.slow
def test_burst_of_2000_files(
    moto_stack: None, monkeypatch: pytest.MonkeyPatch, lambda_context: Any, figures: Any
) -> None:
    # GIVEN the orders contract's batching policy in four datasets, and StartJobRun throttled now and then
    faults = Faults(throttle_start_job_run_at=set(range(3, 400, 17)))
    pipeline = Pipeline(monkeypatch, lambda_context, seed=11, min_files=MIN_FILES, faults=faults)
    for dataset in DATASETS[1:]:
        pipeline.add_dataset(dataset)
    started = time.perf_counter()

    # WHEN 2,000 files are dropped before any function runs
    expected: dict[str, dict[str, int]] = {d: {"accepted": 0, "quarantined": 0} for d in DATASETS}
    for n in range(FILES):
        dataset = DATASETS[n % len(DATASETS)]
        if n % BAD_EVERY == 5:
            pipeline.drop(f"incoming/{dataset}/burst/bad-{n:05d}.csv", bad_csv(n), "QUARANTINED")
            expected[dataset]["quarantined"] += 1
        else:
            pipeline.drop(f"incoming/{dataset}/burst/part-{n:05d}.csv", good_csv(n, rows=2), "ACCEPTED")
            expected[dataset]["accepted"] += 1
    pipeline.run_until_idle()

    # THEN in every dataset: each file in one terminal state, nothing lost or in a DLQ, one run at a time
    totals: dict[str, int] = {}
    for dataset in DATASETS:
        result = pipeline.audit(dataset)
        assert result["accepted"] == expected[dataset]["accepted"]
        assert result["quarantined"] == expected[dataset]["quarantined"]
        # AND the runs are what the policy says: full batches of min_files, the remainder flushed after max_wait
        runs = sum(1 for r in pipeline.runs.values() if r["dataset"] == dataset)
        assert runs == math.ceil(expected[dataset]["accepted"] / MIN_FILES)
        for name in ("files", "accepted", "quarantined", "batches", "files lost"):
            totals[name] = totals.get(name, 0) + result[name]
    assert pipeline.max_running_per_dataset == 1
    assert sum(q.redelivered for q in pipeline.queues.values()) > 0
    assert (
        len(pipeline.runs)
        == len(pipeline.trainings)
        == sum(len(pipeline.packages(model_package_group_name("dropzone", d))) for d in DATASETS)
    )
    figures(
        "burst (4 datasets)",
        {
            **totals,
            **pipeline.delivery_figures(),
            "StartJobRun throttled": pipeline.calls["StartJobRun throttled"],
            "runs started": len(pipeline.runs),
            "max runs in flight per dataset": pipeline.max_running_per_dataset,
            "training jobs": len(pipeline.trainings),
            "reconciler passes": pipeline.reconciler_passes,
            "seconds (moto, in process)": round(time.perf_counter() - started, 1),
        },
    )
