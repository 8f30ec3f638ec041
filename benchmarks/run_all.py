"""`make bench`: run every benchmark, then put the machine, the date and each figure next to its goal on top of
benchmarks/RESULTS.md.

Each benchmark script owns its section of RESULTS.md and rewrites only that section; this script runs them one
after the other (never in parallel: they measure time and memory on a small machine), adds the sections nobody
else writes (local end-to-end time of `dropzone demo`, the reliability suites' figures) and regenerates
SECURITY.md. The top of RESULTS.md ("Run" and "Goals at a glance") is rewritten from what the sections say.

    .venv/bin/python benchmarks/run_all.py            # everything, full sizes (tens of minutes on 2 cores)
    .venv/bin/python benchmarks/run_all.py --quick    # small sizes: checks the machinery in a few minutes
    .venv/bin/python benchmarks/run_all.py --only validation spark   # some steps; the summary covers all sections
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
PYTHON = str(ROOT / ".venv" / "bin" / "python")
TITLE = "# Benchmark results"
RUN = "## Run"
GOALS = "## Goals at a glance"
LOCAL = "## Local end to end (measured by `make bench`)"
RELIABILITY = "## Reliability suites (tests/reliability)"
LOCAL_GOAL_S = 60.0  # issue 6: pipeline ≤ 60 s on 2 cores for the default demo size


@dataclass(frozen=True)
class Step:
    name: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    what: str
    timeout_s: int = 7200


STEPS: tuple[Step, ...] = (
    Step(
        "validation",
        ("benchmarks/validation.py", "--size-mb", "1024", "--write"),
        ("benchmarks/validation.py", "--size-mb", "64", "--write"),
        "validator vs pyarrow read vs pandas+pandera",
    ),
    Step(
        "ingest_edge",
        ("benchmarks/ingest_edge.py", "--write-results"),
        ("benchmarks/ingest_edge.py", "--sizes-mb", "64", "--parquet-rows", "200000", "--write-results"),
        "S3 streaming memory, ranged Parquet reads",
    ),
    Step(
        "spark",
        ("benchmarks/spark_features.py", "--rows", "1000000", "10000000"),
        ("benchmarks/spark_features.py", "--rows", "100000", "1000000", "--driver-memory", "2g"),
        "Spark feature job vs bare scan, naive Spark, DuckDB",
    ),
    Step(
        "training",
        ("benchmarks/training.py", "--write-results"),
        ("benchmarks/training.py", "--rows", "20000", "--write-results"),
        "training/train.py time and memory",
    ),
    Step(
        "bundles",
        ("benchmarks/bundles.py", "--write-results"),
        ("benchmarks/bundles.py", "--repeat", "3", "--write-results"),
        "Lambda bundle sizes and cold imports (needs `make tools` for sam build)",
    ),
    Step("security", ("benchmarks/security.py",), ("benchmarks/security.py",), "SECURITY.md: scanners and IAM"),
)
EXTRA = ("local", "reliability")


# ---- RESULTS.md sections --------------------------------------------------------------------------------------


def sections(text: str) -> dict[str, str]:
    """'## heading' → its body (up to the next '## ')."""
    found: dict[str, str] = {}
    for match in re.finditer(r"^(## [^\n]+)\n(.*?)(?=^## |\Z)", text, re.S | re.M):
        found[match.group(1).strip()] = match.group(2)
    return found


def replace_section(text: str, heading: str, body: str, *, first: bool = False) -> str:
    """Replace (or add) one section, leaving the others as their scripts wrote them."""
    block = f"{heading}\n\n{body.strip()}\n\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text, count=1)
    if first:
        head, sep, rest = text.partition("\n## ")
        return f"{head.rstrip()}\n\n{block}" + (f"## {rest}" if sep else "")
    return text.rstrip() + "\n\n" + block


# ---- the machine -----------------------------------------------------------------------------------------------


def _first(pattern: str, text: str, default: str = "?") -> str:
    match = re.search(pattern, text, re.M)
    return match.group(1).strip() if match else default


def machine() -> list[str]:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    meminfo = Path("/proc/meminfo").read_text() if Path("/proc/meminfo").exists() else ""
    mem_kb = int(_first(r"^MemTotal:\s+(\d+)", meminfo, "0"))
    java = shutil.which("java")
    java_version = (
        subprocess.run([java, "-version"], capture_output=True, text=True, check=False).stderr.splitlines()[0]
        if java
        else "not installed"
    )
    cpu = _first(r"^model name\s*:(.*)$", cpuinfo)
    return [
        f"- CPU: {cpu}, {os.cpu_count()} logical cores ({platform.machine()})",
        f"- memory: {mem_kb / 2**20:.0f} GiB; OS: {platform.platform()}",
        f"- Python {platform.python_version()}; Java: {java_version}",
    ]


def load_average() -> str:
    return f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "?"


def git_commit() -> str:
    answer = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True)
    return answer.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


# ---- steps of our own ------------------------------------------------------------------------------------------


def run_local() -> tuple[str, str]:
    """`dropzone demo` (default size: the goal is stated for it) in a scratch directory: stage times, wall time."""
    with tempfile.TemporaryDirectory(prefix="dz-bench-demo-") as tmp:
        command = [str(ROOT / ".venv" / "bin" / "dropzone"), "demo", "--out", tmp, "--root", str(ROOT)]
        started = time.perf_counter()
        answer = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=3600, check=False)
        wall = time.perf_counter() - started
    output = answer.stdout + answer.stderr
    stages = _first(r"^\s*time\s*\|\s*(.*)$", output, "")
    pipeline = _first(r"pipeline ([0-9.]+)s", stages, "")
    if answer.returncode not in (0, 1) or not pipeline:
        return "failed", f"`dropzone demo` failed (exit {answer.returncode}):\n\n```\n{output[-2000:]}\n```\n"
    seconds = float(pipeline)
    shares = {n.strip(): float(v) for n, v in re.findall(r"([a-z_ ]+?) ([0-9.]+)s", stages.split(";")[0])}
    slowest = max(shares, key=lambda name: shares[name]) if shares else "?"
    share = f"{shares.get(slowest, 0) / seconds:.0%}" if seconds else "?"
    if "spark" not in stages.lower():
        return "failed", f"`dropzone demo` ran no Spark feature run, so its time says nothing: {stages}\n"
    verdict = (
        "met"
        if seconds <= LOCAL_GOAL_S
        else f"missed by {seconds - LOCAL_GOAL_S:.0f} s ({seconds / LOCAL_GOAL_S:.1f}x)"
    )
    body = "\n".join(
        [
            "`dropzone demo` (default demo size, also with --quick: the goal is stated for it) in a fresh process:",
            "embedded AWS API, template deployed, generated files uploaded, Spark feature runs and training",
            "executed locally, until the pipeline is idle.",
            "",
            "| measure | seconds | goal | verdict |",
            "| --- | ---: | ---: | --- |",
            f"| pipeline (dropzone's own clock) | {seconds:.1f} | ≤ {LOCAL_GOAL_S:.0f} | {verdict} |",
            f"| whole command (interpreter start to exit) | {wall:.1f} | - | - |",
            "",
            f"Stages: {stages}",
            "",
            f"What limits it: the {slowest} stage, {share} of the pipeline; 1-minute load average",
            f"{load_average()} at the end (other work on the same cores stretches every stage alike).",
            "",
            f"Exit code {answer.returncode} (0: a model was registered as Approved; 1: none was, see the summary).",
        ]
    )
    return "ok", body


def run_reliability() -> tuple[str, str]:
    """The reliability suites (also part of `make test`); their terminal summary is the section."""
    command = [PYTHON, "-m", "pytest", "tests/reliability", "-q", "-p", "no:logging", "-p", "no:cacheprovider"]
    started = time.perf_counter()
    answer = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=3600, check=False)
    wall = time.perf_counter() - started
    out = answer.stdout
    figures = out[out.find("reliability figures") :].split("\n", 1)[-1] if "reliability figures" in out else ""
    figures = figures.split("\n=", 1)[0].rstrip()
    result = _first(r"^(\d+ passed.*|.*failed.*)$", out, "no result")
    body = "\n".join(
        [
            "`pytest tests/reliability` (the real handlers on moto; queues, redelivery, DLQ and the EMR/SageMaker",
            "semantics moto lacks modelled in tests/reliability/harness.py). Goal: files lost 0, DLQ 0, one run",
            "in flight per dataset, exactly one entry/batch/run/training job/model package each.",
            "",
            f"Result: {result.strip('= ')} ({wall:.0f} s).",
            "",
            "```",
            figures or out[-3000:],
            "```",
        ]
    )
    return ("ok" if answer.returncode == 0 else "failed"), body


# ---- goals at a glance -----------------------------------------------------------------------------------------


def _table_rows(body: str) -> list[list[str]]:
    rows = []
    for line in body.splitlines():
        if line.startswith("|") and not set(line) <= set("|-: "):
            rows.append([c.strip() for c in line.strip().strip("|").split("|")])
    return rows


def _spark_goals(body: str) -> list[str]:
    rows = _table_rows(body)
    if len(rows) < 2:
        return []
    header, data = rows[0], rows[1:]
    out = []
    for r in data:
        cells = dict(zip(header, r, strict=False))
        full, naive = cells.get("full / bare", "?"), cells.get("naive / windowed", "?")
        out.append(
            f"| Spark features, {cells.get('events', '?')} events | full job / bare CSV scan {full} "
            f"| ≤ 3x | {_verdict(full, 3.0, lower=True)} |"
        )
        out.append(
            f"| Spark features, {cells.get('events', '?')} events | naive / ours {naive} | ≥ 2x "
            f"| {_verdict(naive, 2.0, lower=False)} |"
        )
    scaling = re.search(r"\((\d+)x\): full job ([0-9.]+)x the time", body)
    if scaling:
        data_x, time_x = scaling.groups()
        out.append(
            f"| Spark features scaling | {data_x}x the data → {time_x}x the time | ≤ 12x for 10x "
            f"| {_verdict(time_x, 12.0 * int(data_x) / 10, lower=True)} |"
        )
    return out


def _verdict(value: str, goal: float, *, lower: bool) -> str:
    try:
        number = float(value.rstrip("x"))
    except ValueError:
        return "not measured"
    met = number <= goal if lower else number >= goal
    return "met" if met else f"missed ({number / goal:.2f}x of the goal)"


def _bundle_goals(body: str) -> list[str]:
    rows = _table_rows(body)
    if len(rows) < 2:
        return []
    header = rows[0]
    out = []
    for r in rows[1:]:
        cells = dict(zip(header, r, strict=False))
        if cells.get("goal MB", "-") == "-":
            continue
        out.append(
            f"| {cells.get('function')} bundle / cold import | {cells.get('unzipped MB')} MB, "
            f"{cells.get('import ms (CPU)')} ms import (CPU), ready {cells.get('ready ms (CPU)')} ms "
            f"| ≤ {cells.get('goal MB')} MB, ≤ {cells.get('goal ms')} ms | "
            f"{'met' if cells.get('within goals') == 'yes' else 'missed (see the section)'} |"
        )
    return out


def _validation_goals(body: str) -> list[str]:
    """The verdict bullets benchmarks/validation.py writes under its table, one row each."""
    rows: list[str] = []
    name = None
    for line in body.splitlines():
        rss = re.match(r"- (\S+): validator peak RSS (\d+) MiB \(goal (.+?): (.+)\)$", line)
        if rss:
            name = rss.group(1)
            rows.append(f"| Validation {name}, peak RSS | {rss.group(2)} MiB | {rss.group(3)} MiB | {rss.group(4)} |")
            continue
        speed = re.match(r"\s+- throughput vs (.+?): (.+?) \(goal (.+?): (.+)\)$", line)
        if speed and name:
            peer, measured, goal, verdict = speed.groups()
            rows.append(f"| Validation {name}, throughput vs {peer} | {measured} | {goal} | {verdict} |")
    return rows


def goals_at_a_glance(text: str) -> str:
    found = sections(text)
    rows = ["| figure | measured | goal | verdict |", "| --- | --- | --- | --- |"]
    validation = next((b for h, b in found.items() if h.startswith("## Validation")), "")
    rows += _validation_goals(validation)
    rows += _spark_goals(found.get("## Spark features", ""))
    rows += _bundle_goals(found.get("## Bundles and cold imports", ""))
    local = found.get(LOCAL, "")
    match = re.search(r"\| pipeline \(dropzone's own clock\) \| ([0-9.]+) \| (.*?) \| (.*?) \|", local)
    if match:
        rows.append(f"| Local end to end (demo) | {match.group(1)} s | {match.group(2)} s | {match.group(3)} |")
    reliability = found.get(RELIABILITY, "")
    lost = re.findall(r"files lost\s+(\d+)", reliability)
    dlq = re.findall(r"DLQ\s+(\d+)", reliability)
    if lost:
        ok = all(v == "0" for v in lost + dlq)
        rows.append(
            f"| Reliability suites | files lost {sum(map(int, lost))}, DLQ {sum(map(int, dlq))} over {len(lost)} "
            f"suites | 0 | {'met' if ok else 'MISSED'} |"
        )
    return "\n".join(
        [
            "Each figure next to its goal (issues 2, 3, 5, 6, 7), read from the sections below as this run left them;",
            "the sections say how each was measured and what limits it.",
            "",
            *rows,
        ]
    )


# ---- main ------------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    names = [s.name for s in STEPS] + list(EXTRA)
    parser.add_argument("--quick", action="store_true", help="small sizes (minutes, not tens of minutes)")
    parser.add_argument("--only", nargs="+", choices=names, help="run only these steps")
    parser.add_argument("--skip", nargs="+", choices=names, default=[], help="leave these steps out")
    args = parser.parse_args()
    chosen = [n for n in (args.only or names) if n not in args.skip]
    started_at = datetime.now(UTC)
    load_before = load_average()
    status: list[tuple[str, str, float]] = []

    def run(name: str, action: Callable[[], str]) -> None:
        print(f"== {name}", flush=True)
        started = time.perf_counter()
        try:
            outcome = action()
        except (subprocess.TimeoutExpired, OSError) as e:
            outcome = f"failed: {e}"
        status.append((name, outcome, time.perf_counter() - started))
        print(f"== {name}: {outcome} ({time.perf_counter() - started:.0f} s)", flush=True)

    for step in STEPS:
        if step.name not in chosen:
            continue

        def script(step: Step = step) -> str:
            argv = step.quick if args.quick else step.full
            answer = subprocess.run([PYTHON, *argv], cwd=ROOT, timeout=step.timeout_s, check=False)
            return "ok" if answer.returncode == 0 else f"failed (exit {answer.returncode})"

        run(step.name, script)

    for name, heading, produce in (
        ("local", LOCAL, run_local),
        ("reliability", RELIABILITY, run_reliability),
    ):
        if name not in chosen:
            continue

        def own(heading: str = heading, produce: Callable[[], tuple[str, str]] = produce) -> str:
            outcome, body = produce()
            current = RESULTS.read_text() if RESULTS.exists() else TITLE + "\n"
            RESULTS.write_text(replace_section(current, heading, body))
            return outcome

        run(name, own)

    text = RESULTS.read_text() if RESULTS.exists() else TITLE + "\n"
    lines = [
        f"`make bench` ({'--quick' if args.quick else 'full sizes'}), started {started_at:%Y-%m-%d %H:%M} UTC, "
        f"commit {git_commit()}.",
        "",
        *machine(),
        f"- 1-minute load average: {load_before} before, {load_average()} after (other work shares the cores:",
        "  wall times are inflated alike for a figure and its peer; ratios are the fairer reading)",
        "",
        "| step | outcome | seconds |",
        "| --- | --- | ---: |",
        *[f"| {name} | {outcome} | {seconds:.0f} |" for name, outcome, seconds in status],
    ]
    text = replace_section(text, GOALS, goals_at_a_glance(text), first=True)
    text = replace_section(text, RUN, "\n".join(lines), first=True)
    RESULTS.write_text(text)
    print(f"wrote {RESULTS.relative_to(ROOT)}")
    return 0 if all(outcome == "ok" for _, outcome, _ in status) else 1


if __name__ == "__main__":
    sys.exit(main())
