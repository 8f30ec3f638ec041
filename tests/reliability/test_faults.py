"""Faults: throttled StartJobRun and CreateTrainingJob, failed runs (retried, or out of attempts), lost completion
events, a crash after the ledger was written but before StartJobRun, a failed training job. Each converges with
nothing lost: the same audit as the other suites, plus what each fault must leave behind."""

from __future__ import annotations

from typing import Any

import pytest

from dropzone.runs import training_sk
from tests.reliability.harness import Faults, Pipeline, bad_csv, good_csv

MIN_FILES = 5
FILES = 32  # 30 accepted → 6 full batches; 2 quarantined


def _drop_files(pipeline: Pipeline) -> None:
    for n in range(FILES):
        if n in (4, 17):
            pipeline.drop(f"incoming/orders/f/bad-{n:03d}.csv", bad_csv(n), "QUARANTINED")
        else:
            pipeline.drop(f"incoming/orders/f/part-{n:03d}.csv", good_csv(n), "ACCEPTED")


def _run(monkeypatch: pytest.MonkeyPatch, context: Any, faults: Faults, seed: int = 3) -> tuple[Pipeline, dict]:
    pipeline = Pipeline(monkeypatch, context, seed=seed, copies=(1, 2), min_files=MIN_FILES, faults=faults)
    _drop_files(pipeline)
    pipeline.run_until_idle()
    return pipeline, pipeline.audit()


def test_throttled_start_job_run(
    moto_stack: None, monkeypatch: pytest.MonkeyPatch, lambda_context: Any, figures: Any
) -> None:
    pipeline, result = _run(monkeypatch, lambda_context, Faults(throttle_start_job_run_at={1, 2, 3, 6, 9}))
    assert pipeline.calls["StartJobRun throttled"] == 5
    assert result["runs started"] == 6  # each batch once, whatever the retries
    assert result["redeliveries after failure"] >= 5
    assert result["accepted"] == 30
    figures("fault: throttled StartJobRun", {"throttled calls": 5, **result})


def test_throttled_create_training_job(
    moto_stack: None, monkeypatch: pytest.MonkeyPatch, lambda_context: Any, figures: Any
) -> None:
    pipeline, result = _run(monkeypatch, lambda_context, Faults(throttle_create_training_at={1, 2, 4}))
    assert pipeline.calls["CreateTrainingJob throttled"] == 3
    assert result["training jobs"] == result["runs started"] == 6
    assert result["model packages"] == 6
    figures("fault: throttled CreateTrainingJob", {"throttled calls": 3, **result})


def test_failed_run_is_retried_as_the_next_attempt(
    moto_stack: None, monkeypatch: pytest.MonkeyPatch, lambda_context: Any, figures: Any
) -> None:
    pipeline, result = _run(monkeypatch, lambda_context, Faults(fail_runs={2}))
    (failed,) = [r for r in pipeline.runs.values() if r["failed"]]
    batch = pipeline.stack.ledger.get_batch("orders", failed["batch_id"])
    assert batch is not None
    assert (batch["status"], batch["attempt"]) == ("SUCCEEDED", 2)
    assert result["runs started"] == 7  # 6 batches + the retry
    assert result["accepted"] == 30  # every file DONE in the end
    figures("fault: failed run, retried", result)


def test_batch_failing_every_attempt_fails_its_files_with_a_reason(
    moto_stack: None, monkeypatch: pytest.MonkeyPatch, lambda_context: Any, figures: Any
) -> None:
    pipeline, result = _run(monkeypatch, lambda_context, Faults(fail_batches_always=1))
    assert pipeline.doomed_batch is not None
    batch = pipeline.stack.ledger.get_batch("orders", pipeline.doomed_batch)
    assert batch is not None
    assert (batch["status"], batch["attempt"]) == ("FAILED", 3)
    assert result["failed (with reason)"] == MIN_FILES
    assert result["accepted"] == 30 - MIN_FILES
    assert result["runs started"] == 5 + 3
    told = [n for n in pipeline.stack.notifications() if n["subject"] and "failed 3 time" in n["subject"]]
    assert len(told) == 1
    assert len(told[0]["files"]) == MIN_FILES
    figures("fault: batch failing every attempt", result)


def test_lost_completion_events_are_recovered_by_the_reconciler(
    moto_stack: None, monkeypatch: pytest.MonkeyPatch, lambda_context: Any, figures: Any
) -> None:
    faults = Faults(lose_run_events={1, 4}, lose_training_events={2, 5})
    pipeline, result = _run(monkeypatch, lambda_context, faults)
    assert result["runs started"] == result["training jobs"] == result["model packages"] == 6
    assert pipeline.reconciler_passes >= 2
    figures("fault: lost completion events", {"events lost": 4, **result})


def test_crash_after_the_ledger_before_start_job_run(
    moto_stack: None, monkeypatch: pytest.MonkeyPatch, lambda_context: Any, figures: Any
) -> None:
    # The process dies right before StartJobRun: batch STARTING, files BATCHED, manifest written, no run
    pipeline, result = _run(monkeypatch, lambda_context, Faults(crash_start_job_run_at={1, 3, 5}))
    assert pipeline.crashes == 3
    assert result["runs started"] == 6
    assert result["accepted"] == 30
    figures("fault: crash before StartJobRun", result)


def test_failed_training_job_is_recorded_and_registers_nothing(
    moto_stack: None, monkeypatch: pytest.MonkeyPatch, lambda_context: Any, figures: Any
) -> None:
    pipeline, result = _run(monkeypatch, lambda_context, Faults(fail_trainings={3}))
    (name,) = pipeline.failing_trainings
    item = pipeline.stack.ledger.get_item("DATASET#orders", training_sk(name))
    assert item is not None
    assert item["status"] == "Failed"
    assert "injected failure" in item["failure_reason"]
    assert result["training jobs"] == 6
    assert result["model packages"] == 5
    figures("fault: failed training job", result)
