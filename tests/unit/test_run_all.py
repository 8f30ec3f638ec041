"""benchmarks/run_all.py (`make bench`): a failing step does not stop the others, sections carry when they were
measured, the Run table keeps every step across partial runs, the goals table says by how much a goal is missed."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def run_all(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    spec = importlib.util.spec_from_file_location("run_all_under_test", REPO / "benchmarks" / "run_all.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def _writer(heading: str, figure: str) -> tuple[str, ...]:
    """A step script that rewrites its own section of the RESULTS.md named on its command line."""
    code = (
        "import re, sys; p = sys.argv[1]; t = open(p).read(); "
        f"b = '{heading}\\n\\n| figure |\\n| --- |\\n| {figure} |\\n\\n'; "
        f"pat = re.compile(r'^{heading}\\n.*?(?=^## |\\Z)', re.S | re.M); "
        "t = pat.sub(lambda _: b, t) if pat.search(t) else t + '\\n' + b; open(p, 'w').write(t)"
    )
    return ("-c", code)


@pytest.fixture
def bench(run_all: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[ModuleType, Path]:
    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n")
    monkeypatch.setattr(run_all, "RESULTS", results)
    monkeypatch.setattr(run_all, "PYTHON", sys.executable)
    step = run_all.Step
    monkeypatch.setattr(
        run_all,
        "STEPS",
        (
            step("broken", "## Broken", ("-c", "print('boom: no data'); raise SystemExit(3)"), (), "fails"),
            step("alpha", "## Alpha", (*_writer("## Alpha", "a1"), str(results)), (), "writes Alpha"),
            step("slow", "## Slow", ("-c", "import time; time.sleep(30)"), (), "hangs", timeout_s=1),
        ),
    )
    monkeypatch.setattr(run_all, "SCRIPT_SECTIONS", ("broken", "alpha", "slow"))
    return run_all, results


def test_a_failing_step_is_recorded_and_the_others_still_run(bench: tuple[ModuleType, Path]) -> None:
    run_all, results = bench
    # WHEN the whole bench runs: one step exits 3, one writes its section, one hangs past its timeout
    code = run_all.main([])
    # THEN the run goes on to the end, exits non-zero, and the Run table says what happened to each step
    assert code == 1
    text = results.read_text()
    run = run_all.sections(text)["## Run"]
    rows = {r[0]: r for r in run_all._table_rows(run)[1:]}
    assert rows["broken"][4] == "failed (exit 3): boom: no data"
    assert rows["alpha"][4] == "ok"
    assert rows["slow"][4] == "failed: timed out after 1 s"
    # the section that was produced carries its stamp; the failed ones have no section
    alpha = run_all.find_section(text, "## Alpha")
    assert alpha is not None
    assert run_all.stamp_of(alpha[1]) is not None
    assert "full sizes" in run_all.stamp_of(alpha[1])
    assert rows["alpha"][2] == run_all.stamp_of(alpha[1])
    assert rows["broken"][2] == "no section"


def test_a_partial_run_keeps_the_other_steps_rows(bench: tuple[ModuleType, Path]) -> None:
    run_all, results = bench
    run_all.main(["--only", "broken"])
    first = run_all.read_state(results.read_text())["broken"]
    # WHEN later only alpha runs
    assert run_all.main(["--only", "alpha"]) == 0
    # THEN broken's last attempt is still listed, as it was, and alpha's is added
    state = run_all.read_state(results.read_text())
    assert state["broken"] == first
    assert state["alpha"]["outcome"] == "ok"
    rows = {r[0]: r for r in run_all._table_rows(run_all.sections(results.read_text())["## Run"])[1:]}
    assert rows["broken"][4].startswith("failed (exit 3)")
    assert rows["slow"][3] == "never by `make bench`"


def test_a_step_whose_script_leaves_its_section_unchanged_fails(
    bench: tuple[ModuleType, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_all, results = bench
    assert run_all.main(["--only", "alpha"]) == 0
    # WHEN the script exits 0 but does not rewrite its section (say, a missing --write flag)
    lazy = run_all.Step("alpha", "## Alpha", ("-c", "pass"), (), "writes nothing")
    monkeypatch.setattr(run_all, "STEPS", (lazy,))
    # THEN the step is a failure: the old figures would otherwise be stamped as new
    assert run_all.main(["--only", "alpha"]) == 1
    assert (
        run_all.read_state(results.read_text())["alpha"]["outcome"] == "failed: its script left its section as it was"
    )


def test_stamp_is_replaced_not_stacked_and_vanishes_when_a_script_rewrites_the_section(run_all: ModuleType) -> None:
    text = "# R\n\n## Alpha\n\nbody\n\n## Beta\n\nother\n"
    once = run_all.put_stamp(text, "## Alpha", "2026-11-27 09:00 UTC, commit aaa, full sizes")
    twice = run_all.put_stamp(once, "## Alpha", "2026-11-27 10:00 UTC, commit bbb, full sizes")
    assert twice.count(run_all.STAMP) == 1
    assert run_all.stamp_of(run_all.sections(twice)["## Alpha"]) == "2026-11-27 10:00 UTC, commit bbb, full sizes"
    assert run_all.sections(twice)["## Beta"] == "\nother\n"
    rewritten = run_all.replace_section(twice, "## Alpha", "new body")
    assert run_all.stamp_of(run_all.sections(rewritten)["## Alpha"]) is None
    assert run_all.as_of("new body", "## Alpha", {"## Alpha": "commit ccc, 2026-11-27 08:00 UTC"}) == (
        "git: commit ccc, 2026-11-27 08:00 UTC (not via `make bench`)"
    )


BUNDLES = """
| function | unzipped MB | zipped MB | goal MB | import ms (CPU) | ready ms (CPU) | goal ms | import ms (wall) \
| within goals |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |
| baseline: boto3 + one client | - | - | - | 199 | - | - | 200 | - |
| IngestFunction | 143.2 | 47.1 | 150 | 341 | 560 | 800 | 344 | yes |
| JobFinishedFunction | 31.5 | 7.2 | 30 | 461 | - | 400 | 470 | NO |
"""


def test_bundle_goals_say_by_how_much_each_goal_is_missed(run_all: ModuleType) -> None:
    rows = {r[0]: r for r in run_all._bundle_goals(BUNDLES)}
    assert rows["IngestFunction bundle / cold import"][3] == "met"
    verdict = rows["JobFinishedFunction bundle / cold import"][3]
    assert verdict == "size missed by 1.5 MB (1.05x the goal); import missed by 61 ms (1.15x the goal)"


def test_ratio_goals_report_the_ratio_to_the_goal(run_all: ModuleType) -> None:
    assert run_all._verdict("32.6x", 3.0, lower=True) == "missed (10.87x the goal)"
    assert run_all._verdict("2.5x", 2.0, lower=False) == "met"
    assert run_all._verdict("-", 2.0, lower=False) == "not measured"


def test_spark_goals_read_what_the_spark_benchmark_writes(run_all: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """The goals rows come from the section benchmarks/spark_features.py renders, generation time included."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    spark_features = importlib.import_module("spark_features")
    size = {"entities": 1, "features": 81, "dated_parquet_s": 8.0, "bare_parquet_s": 1.0, "duckdb_s": 1.0}
    results = [
        {**size, "rows": 1_000_000, "bare_csv_s": 1.2, "full_job_s": 33.5, "features_s": 16.0},
        {**size, "rows": 10_000_000, "bare_csv_s": 6.0, "full_job_s": 134.0, "features_s": 80.0},
    ]
    for r, windowed, naive in zip(results, (4.4, 24.0), (14.1, 36.0), strict=True):
        r.update(ours_windowed_s=windowed, naive_s=naive)
    rows = {r[0]: r[1:] for r in run_all._spark_goals(spark_features.render(results, "", 41.5))}
    assert rows["Spark features, 1,000,000 events: full job / bare CSV scan"] == (
        "27.9x (33.5 s / 1.2 s)",
        "≤ 3x",
        "missed (9.30x the goal)",  # from the ratio as shown, 27.9x
    )
    assert rows["Spark features, 10,000,000 events: naive / our windowed aggregates"][0] == "1.50x (36.0 s / 24.0 s)"
    assert rows["Spark features scaling"] == ("10x the data → 4.0x the time", "≤ 12x for 10x", "met")
    assert rows["Generating 1,000,000 orders (`dropzone generate`)"] == (
        "41.5 s",
        "well under 60 s (≤ 30 s)",
        "missed by 11.5 s (1.38x the goal)",
    )


def test_the_spark_section_states_the_skewed_run_next_to_the_full_job(
    run_all: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    spark_features = importlib.import_module("spark_features")
    size = {"entities": 1, "features": 81, "dated_parquet_s": 8.0, "bare_parquet_s": 1.0, "duckdb_s": 1.0}
    size |= {"bare_csv_s": 1.2, "features_s": 16.0, "ours_windowed_s": 4.4, "naive_s": 14.1}
    one = {**size, "rows": 1_000_000, "full_job_s": 30.0, "skewed_job_s": 31.5}
    text = spark_features.render([one], "", 2.5)
    assert "1,000,000 events 31.5 s against the full job's 30.0 s (1.05x)" in text
    without = {k: v for k, v in one.items() if k != "skewed_job_s"}
    assert "One customer with half the events" not in spark_features.render([without], "", 2.5)


FIGURES = """Result: {result} (60 s).

```
duplicates and order (seed 1):
    files                                        60
    DLQ                                          0
    max runs in flight per dataset               1
    files lost                                   0
burst (4 datasets):
    DLQ                                          {dlq}
    max runs in flight per dataset               1
    files lost                                   {lost}
```
"""


@pytest.mark.parametrize(
    ("values", "verdict"),
    [
        ({"result": "12 passed in 60.00s", "dlq": 0, "lost": 0}, "met"),
        ({"result": "12 passed in 60.00s", "dlq": 0, "lost": 2}, "MISSED"),
        ({"result": "12 passed in 60.00s", "dlq": 1, "lost": 0}, "MISSED"),
        ({"result": "1 failed, 11 passed in 60.00s", "dlq": 0, "lost": 0}, "MISSED"),
    ],
)
def test_reliability_goal_row(run_all: ModuleType, values: dict[str, Any], verdict: str) -> None:
    ((_, measured, _, got),) = run_all._reliability_rows(FIGURES.format(**values))
    assert got == verdict
    assert f"files lost {values['lost']}, DLQ {values['dlq']}" in measured
    assert "over 2 pipelines" in measured


def test_reliability_section_reads_pytest_output(run_all: ModuleType) -> None:
    out = "\n".join(
        [
            "....                                                                     [100%]",
            "=============================== reliability figures ===============================",
            "faults:",
            "    files lost                                   0",
            "=========================== short test summary info ============================",
            "4 passed in 12.34s",
        ]
    )
    outcome, body = run_all.reliability_section(out, 12.3, 0)
    assert outcome == "ok"
    assert "Result: 4 passed in 12.34s (12 s)." in body
    assert "faults:\n    files lost                                   0\n```" in body
    outcome, _ = run_all.reliability_section(out.replace("4 passed", "1 failed, 3 passed"), 12.3, 1)
    assert outcome == "failed (exit 1): 1 failed, 3 passed in 12.34s"


SECURITY_MD = """# Security

Generated 2026-11-27 08:57 UTC on x86_64, Python 3.11.7.

## Scanners on template.yaml

| scanner | version | result |
| --- | --- | --- |
| sam validate --lint | SAM CLI, version 1.170.0 | valid, no lint findings |
| cfn-lint | cfn-lint 1.58.0 | 0 findings (errors, warnings, info) |
| checkov (cloudformation) | 3.2.459 | 32 passed, 0 failed, 2 skipped, 0 parsing errors |

### Skipped checks and why

| check | resource | what it asks | why it is skipped |
| --- | --- | --- | --- |
| CKV_AWS_115 | AWS::Serverless::Function.A | concurrency | bounded by the event source mapping |
| CKV_AWS_116 | AWS::Serverless::Function.A | DLQ | {reason} |

## IAM: actions per role

6 roles, 48 allowed actions in inline policies.
"""


def test_security_summary_and_its_goal_row(run_all: ModuleType) -> None:
    body = run_all.security_section(SECURITY_MD.format(reason="the queue has one"))
    assert "- skipped checkov checks: 2, 2 with a written reason" in body
    assert "- IAM: 6 roles, 48 allowed actions in inline policies." in body
    assert "SECURITY.md generated 2026-11-27 08:57 UTC" in body
    ((_, measured, _, verdict),) = run_all._security_rows(body)
    assert verdict == "met"
    assert "checkov: 32 passed, 0 failed, 2 skipped, 0 parsing errors" in measured
    # a skip without its reason is a miss
    ((_, _, _, verdict),) = run_all._security_rows(run_all.security_section(SECURITY_MD.format(reason="NO REASON")))
    assert verdict == "MISSED"
    # so is a failed check
    failing = SECURITY_MD.format(reason="x").replace("32 passed, 0 failed", "31 passed, 1 failed")
    ((_, _, _, verdict),) = run_all._security_rows(run_all.security_section(failing))
    assert verdict == "MISSED"


def test_replacing_a_section_keeps_the_start_marker_of_the_next_one(run_all: ModuleType) -> None:
    # bundles.py and validation.py write their sections between markers, the start marker above the heading
    text = "# R\n\n## Alpha\n\nold\n\n<!-- bundles:start -->\n## Bundles\n\nb\n<!-- bundles:end -->\n"
    replaced = run_all.replace_section(text, "## Alpha", "new")
    assert replaced == "# R\n\n## Alpha\n\nnew\n\n<!-- bundles:start -->\n## Bundles\n\nb\n<!-- bundles:end -->\n"


def test_git_dates_of_the_committed_sections(run_all: ModuleType) -> None:
    # RESULTS.md as committed: every section has a commit and a date (the fallback for sections without a stamp)
    changed = run_all.last_changed("HEAD")
    assert "## Goals at a glance" in changed
    assert all(re.fullmatch(r"commit [0-9a-f]{7}, \d{4}-\d\d-\d\d \d\d:\d\d UTC", v) for v in changed.values())
