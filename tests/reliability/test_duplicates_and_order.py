"""Every notification and completion event delivered 1-5 times, in a seeded random order, across all functions:
exactly one ledger entry per file, one batch membership, one run per batch, one training job per run, one model
package per training job."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tests.reliability.harness import Message, Pipeline, bad_csv, good_csv

MIN_FILES = 5


@pytest.mark.parametrize("seed", [7, 2026])
def test_duplicated_and_shuffled_events_change_nothing(
    moto_stack: None, monkeypatch: pytest.MonkeyPatch, lambda_context: Any, figures: Any, seed: int
) -> None:
    # GIVEN a pipeline whose queues deliver every message 1-5 times in random order
    pipeline = Pipeline(monkeypatch, lambda_context, seed=seed, copies=(1, 5), min_files=MIN_FILES)

    # WHEN producers drop 54 good and 6 bad files and everything runs to the end
    for n in range(60):
        if n % 10 == 3:
            pipeline.drop(f"incoming/orders/day={n % 3}/bad-{n:03d}.csv", bad_csv(n), "QUARANTINED")
        else:
            pipeline.drop(f"incoming/orders/day={n % 3}/part-{n:03d}.csv", good_csv(n), "ACCEPTED")
    pipeline.run_until_idle()

    # THEN the audit holds (one entry, one batch, one run, one training job, one package each; nothing lost)
    result = pipeline.audit()
    # AND duplicates really happened, and the runs are what the policy says: batches of min_files, the rest flushed
    assert result["duplicates"] >= result["events sent"]
    assert result["quarantined"] == 6
    assert result["accepted"] == 54
    assert result["runs started"] == math.ceil(54 / MIN_FILES)
    assert result["training jobs"] == result["runs started"] == result["model packages"]
    figures(f"duplicates and order (seed {seed})", result)


def test_the_audit_catches_a_file_recorded_twice_and_a_message_in_a_dlq(
    moto_stack: None, monkeypatch: pytest.MonkeyPatch, lambda_context: Any
) -> None:
    # GIVEN a small pipeline that ran to the end and passes the audit
    pipeline = Pipeline(monkeypatch, lambda_context, seed=1, min_files=MIN_FILES)
    for n in range(MIN_FILES):
        pipeline.drop(f"incoming/orders/a/part-{n:03d}.csv", good_csv(n), "ACCEPTED")
    pipeline.run_until_idle()
    pipeline.audit()
    # WHEN the ledger holds a second entry for one file (another version id) and a message sits in a DLQ
    (first, *_) = [i for i in pipeline.stack.ledger.query_dataset("orders", "FILE#")]
    copy = {k: v for k, v in first.items() if k not in ("pk", "sk")}
    assert pipeline.stack.ledger.record_file("orders", {**copy, "version": "another-version"})
    pipeline.queues["ingest"].dlq.append(Message("ingest-lost", "{}"))
    # THEN the audit names both problems
    with pytest.raises(AssertionError) as failure:
        pipeline.audit()
    assert "files lost or recorded twice" in str(failure.value)
    assert "messages in a DLQ" in str(failure.value)
