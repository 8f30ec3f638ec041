"""Hostile files: the validator's hostile corpus (tests/reliability/hostile_corpus.py, built with the helpers of
tests/unit/test_hostile.py) goes through the ingest function with duplicate deliveries: every file QUARANTINED once,
with its reason, its report and a quarantine copy, the original kept. Peak memory is measured per case in a fresh
interpreter and bounded."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from dropzone.ingest import quarantine_key, report_key
from tests.reliability.harness import Pipeline
from tests.reliability.hostile_corpus import CASES

REPO = Path(__file__).resolve().parents[2]
# Peak RSS a single hostile file may add to the validating process. The orders contract's own limits bound what a
# file can make the validator hold (1 MiB lines, 64 KiB read blocks, 200x gzip expansion): a few tens of MiB.
PEAK_BOUND_MIB = 64


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def test_hostile_files_are_quarantined_once_with_their_reason(
    moto_stack: None, monkeypatch: pytest.MonkeyPatch, lambda_context: Any, tmp_path: Path, figures: Any
) -> None:
    # GIVEN the pipeline, and a dataset per contract-limit variant the corpus needs (same contract, limits changed)
    pipeline = Pipeline(monkeypatch, lambda_context, seed=5, copies=(1, 3))
    s3, bucket = pipeline.stack.s3, pipeline.stack.settings.data_bucket
    document = yaml.safe_load((REPO / "contracts" / "orders.yaml").read_text())
    cases = [c for c in CASES if not c.big]  # the two 100 MB streams are covered by the memory test
    datasets = {}
    for i, case in enumerate(cases):
        if case.limits:
            name = f"orders_limit{i}"
            variant = {**document, "dataset": name, "limits": {**document["limits"], **case.limits}}
            s3.put_object(Bucket=bucket, Key=f"assets/contracts/{name}.yaml", Body=yaml.safe_dump(variant).encode())
            datasets[case.name] = name

    # WHEN every hostile file is dropped and its notification delivered 1-3 times
    keys = {}
    for case in cases:
        dataset = datasets.get(case.name, "orders")
        key = f"incoming/{dataset}/hostile/{_slug(case.name)}/{case.file}"
        pipeline.drop(key, case.build(tmp_path), "QUARANTINED")
        keys[case.name] = (dataset, key)
    pipeline.run_until_idle()

    # THEN each is QUARANTINED exactly once with its reason, reported, copied to quarantine/, original kept
    problems: list[tuple[str, Any]] = []
    for case in cases:
        dataset, key = keys[case.name]
        items = [i for i in pipeline.stack.ledger.query_dataset(dataset, "FILE#") if i["key"] == key]
        rest = key.removeprefix(f"incoming/{dataset}/")
        if len(items) != 1 or items[0]["status"] != "QUARANTINED":
            problems.append((case.name, [i["status"] for i in items]))
            continue
        if not any(case.reason in r for r in items[0].get("reasons", [])):
            problems.append((case.name, items[0].get("reasons")))
        for must_exist in (key, quarantine_key(dataset, rest), report_key(dataset, rest, items[0]["version"])):
            s3.head_object(Bucket=bucket, Key=must_exist)
    assert not problems, problems
    result = pipeline.audit()  # orders: nothing batched, nothing lost, no DLQ
    assert result["runs started"] == 0
    figures(
        "hostile files through IngestFunction",
        {"cases": len(cases), "quarantined with reason": len(cases) - len(problems), **result},
    )


def test_hostile_files_peak_memory_is_bounded_per_case(figures: Any) -> None:
    # WHEN every case (the 100 MB ones streamed) is validated in a fresh interpreter, VmHWM reset before each
    answer = subprocess.run(
        [sys.executable, "-c", "from tests.reliability.hostile_corpus import measure; measure()"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert answer.returncode == 0, answer.stderr[-3000:]
    measured = [json.loads(line) for line in answer.stdout.splitlines() if line.startswith("{")]

    # THEN every case is quarantined with its reason and none adds more than the bound to the process
    assert [m["name"] for m in measured] == [c.name for c in CASES]
    for case, m in zip(CASES, measured, strict=True):
        assert m["decision"] == "QUARANTINED", m
        assert any(case.reason in r for r in m["reasons"]), m
    over = [m for m in measured if m["peak_mib"] > PEAK_BOUND_MIB]
    assert not over, over
    worst = max(measured, key=lambda m: m["peak_mib"])
    figures(
        "hostile files, peak memory per case",
        {
            "cases": len(measured),
            "bytes fed (all cases)": sum(m["bytes"] for m in measured),
            "largest peak above start (MiB)": f"{worst['peak_mib']} ({worst['name']})",
            "bound (MiB)": PEAK_BOUND_MIB,
            "process RSS after all cases (MiB)": measured[-1]["base_mib"],
        },
    )
