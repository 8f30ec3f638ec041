"""Lambda bundle sizes after `sam build` and cold import time of each function in a fresh interpreter.

Sizes are of the real arm64 bundles (.aws-sam/build, built if missing), unzipped and zipped (deflate, as
`sam deploy` uploads them). Import times need native code this machine can run: each bundle is rebuilt with the
same Makefile target for manylinux2014_x86_64 (same pins, same files) and its handler module is imported in a
fresh `python3.11 -S` per repeat (no site-packages: only the bundle and boto3, as the Lambda runtime provides
it), with the function's environment set to placeholders and the variables the Lambda runtime sets
(LAMBDA_TASK_ROOT, AWS_LAMBDA_FUNCTION_NAME, ...), tracing on as the template's `Tracing: Active` has it: the
X-Ray SDK takes its Lambda path only when LAMBDA_TASK_ROOT is set (outside Lambda it builds a sampler with its
own botocore session and X-Ray client at import, ~100-150 ms that no Lambda pays).

"ready" is what the first event adds before its own work: the validating function's lazy import of
dropzone.validation (pyarrow and numpy), and for every function the creation of each boto3 client it declared
lazily (dropzone.aws.LazyClient), i.e. a first event that touches all of them.

    .venv/bin/python benchmarks/bundles.py [--repeat 7] [--write-results]

Goals (issue 5): the validating function <= 150 MB and <= 800 ms, the others <= 30 MB and <= 400 ms.
--write-results replaces the "Bundles and cold imports" section of benchmarks/RESULTS.md (between its markers).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
SECTION = "## Bundles and cold imports"
BUILD = ROOT / ".aws-sam" / "build"
FUNCTIONS = (
    "IngestFunction",
    "JobFinishedFunction",
    "ModelTrainedFunction",
    "ReconcileFunction",
    "PublishAssetsFunction",
)
VALIDATING = "IngestFunction"
GOALS = {VALIDATING: (150, 800)}
DEFAULT_GOAL = (30, 400)
# Lazily imported on first use; timed on top of the handler import.
FIRST_USE = {VALIDATING: "dropzone.validation"}
PYTHON = shutil.which("python3.11") or sys.executable

_TIMER = """
import gc, importlib, sys, time
wall, cpu = time.perf_counter(), time.process_time()
import app
handler = (time.perf_counter() - wall, time.process_time() - cpu)
for name in sys.argv[1:]:
    importlib.import_module(name)
# Finding the lazy clients is the benchmark's own work: its time is left out.
scan = time.perf_counter(), time.process_time()
aws = sys.modules.get("dropzone.aws")
lazy = [o for o in gc.get_objects() if isinstance(o, aws.LazyClient)] if hasattr(aws, "LazyClient") else []
scan = time.perf_counter() - scan[0], time.process_time() - scan[1]
for client in lazy:
    client.resolve()
ready = (time.perf_counter() - wall - scan[0], time.process_time() - cpu - scan[1])
print(*(1000 * x for x in handler + ready), len(lazy))
"""


def sam_build() -> None:
    sam = shutil.which("sam", path=str(ROOT / ".venv-tools" / "bin")) or shutil.which("sam")
    if sam is None:
        raise SystemExit("sam not found: run `make tools`")
    subprocess.run([sam, "build", "--parallel"], cwd=ROOT, check=True, env={**os.environ, "SAM_CLI_TELEMETRY": "0"})


def unzipped_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def zipped_bytes(directory: Path) -> int:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(directory).as_posix())
    return buffer.tell()


def host_bundle(logical_id: str, out: Path) -> Path:
    """The same bundle for this machine's platform, through the same Makefile target."""
    target = out / logical_id
    target.mkdir(parents=True)
    subprocess.run(
        [
            "make",
            "--no-print-directory",
            f"build-{logical_id}",
            f"ARTIFACTS_DIR={target}",
            f"LAMBDA_PLATFORM=manylinux2014_{platform.machine()}",
        ],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return target


def function_environment(logical_id: str) -> dict[str, str]:
    if logical_id == "baseline":
        return {}
    from dropzone.local.stack import load_template

    template = load_template(ROOT / "template.yaml")
    variables = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    variables.update(template["Resources"][logical_id]["Properties"].get("Environment", {}).get("Variables", {}))
    return {k: v if isinstance(v, str) else f"placeholder-{k.lower()}" for k, v in variables.items()}


class ImportFailed(RuntimeError):
    """The bundle cannot import its handler (or first-use modules): the last line of the traceback."""


def runtime_sdk(out: Path) -> Path:
    """boto3 at the pinned version in a directory of its own: what the Lambda runtime adds to the bundle."""
    pins = [line.split()[0] for line in (ROOT / "requirements" / "dev.lock").read_text().splitlines()]
    boto3 = next(p for p in pins if p.lower().startswith("boto3=="))
    target = out / "runtime"
    subprocess.run(
        [PYTHON, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", str(target), boto3],
        check=True,
        stderr=subprocess.DEVNULL,
    )
    return target


def lambda_runtime_environment(bundle: Path, logical_id: str) -> dict[str, str]:
    """What the python3.11 Lambda runtime sets before the handler module is imported (no trace id: that comes
    with each invocation). Powertools' Tracer and the X-Ray SDK decide on LAMBDA_TASK_ROOT whether they run in
    Lambda; nothing is sent at import, so no X-Ray daemon is needed."""
    return {
        "LAMBDA_TASK_ROOT": str(bundle),
        "LAMBDA_RUNTIME_DIR": str(bundle),
        "AWS_LAMBDA_FUNCTION_NAME": logical_id,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.11",
        "AWS_REGION": "us-east-1",
        "_HANDLER": "app.handler",
    }


def cold_imports(bundle: Path, sdk: Path, logical_id: str, repeat: int) -> dict[str, float]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": f"{bundle}{os.pathsep}{sdk}",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        **lambda_runtime_environment(bundle, logical_id),
        **function_environment(logical_id),
    }
    samples = []
    extra = [FIRST_USE[logical_id]] if logical_id in FIRST_USE else []
    for _ in range(repeat):
        answer = subprocess.run(
            [PYTHON, "-S", "-c", _TIMER, *extra], cwd=bundle, env=env, capture_output=True, text=True, check=False
        )
        if answer.returncode != 0:
            raise ImportFailed(answer.stderr.strip().splitlines()[-1])
        samples.append(tuple(float(x) for x in answer.stdout.split()))
    # wall import, cpu import, wall ready, cpu ready: medians; how many lazy clients "ready" created
    times = {
        k: statistics.median(s[i] for s in samples) for i, k in enumerate(("wall", "cpu", "wall_ready", "cpu_ready"))
    }
    return {**times, "lazy_clients": samples[0][4]}


def measure(repeat: int) -> list[dict[str, object]]:
    if not all((BUILD / f).is_dir() for f in FUNCTIONS):
        sam_build()
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="dz-bundles-") as tmp:
        sdk = runtime_sdk(Path(tmp))
        # What every function pays before its own code: the runtime's boto3 and one client.
        empty = Path(tmp) / "baseline"
        empty.mkdir()
        (empty / "app.py").write_text("import boto3\n\ns3 = boto3.client('s3')\n")
        baseline = cold_imports(empty, sdk, "baseline", repeat)
        rows.append(
            {
                "function": "baseline: boto3 + one client",
                "unzipped_mb": 0.0,
                "zipped_mb": 0.0,
                "mb_goal": "-",
                "ms_goal": "-",
                "error": None,
                "times": baseline,
            }
        )
        for logical_id in FUNCTIONS:
            bundle = BUILD / logical_id
            host = host_bundle(logical_id, Path(tmp))
            mb_goal, ms_goal = GOALS.get(logical_id, DEFAULT_GOAL)
            row: dict[str, object] = {
                "function": logical_id,
                "unzipped_mb": unzipped_bytes(bundle) / 1e6,
                "zipped_mb": zipped_bytes(bundle) / 1e6,
                "mb_goal": mb_goal,
                "ms_goal": ms_goal,
                "error": None,
            }
            try:
                row["times"] = cold_imports(host, sdk, logical_id, repeat)
            except ImportFailed as e:
                row["error"] = str(e)
            rows.append(row)
    return rows


def table(rows: list[dict[str, object]], repeat: int, load: tuple[float, float]) -> str:
    lines = [
        SECTION,
        "",
        "`benchmarks/bundles.py`: each function's bundle from `sam build` (arm64 wheels, bytecode compiled in,",
        "boto3 not bundled: the runtime has it), unzipped and zipped; cold import = median over "
        f"{repeat} fresh `python3.11 -S` processes",
        "of `import app` (the handler module, module-level settings and clients included) from an x86_64 twin of the",
        # CPU time of the importing process is what a quiet machine's wall time would be (imports are CPU-bound
        # once files are cached); wall time on this shared machine mostly measures the other work.
        "bundle built by the same Makefile target, in the environment the Lambda runtime sets (LAMBDA_TASK_ROOT etc.,",
        "tracing on as `Tracing: Active`). `ready` = import plus what the first event adds before its own work: the",
        "validator's lazy import (pyarrow, numpy) and the creation of every boto3 client declared lazily",
        "(`lazy clients`: a first event that needs them all). Goals are judged on `ready`, the larger of the two.",
        f"Machine: {platform.machine()}, 2 cores shared with other work; Lambda's arm64 CPUs differ, so read the",
        "times as relative (the baseline row is the peer). CPU time of the importing process is what wall time is",
        "on an idle machine; wall time here mostly measures the other work on the machine.",
        f"Load average (1 min): {load[0]:.1f} before, {load[1]:.1f} after (2 cores).",
        "",
        "What lazy clients move: their creation leaves `import` (Lambda's init phase) for the first event that",
        "uses them; an event a function ignores (a non-terminal state change) creates none. The init phase is",
        "reported to run with unthrottled CPU while the handler gets the memory's share (512 MB: ~0.3 vCPU), so a",
        "first event that needs every client can take longer in wall time than if they were made at import.",
        "",
        "| function | unzipped MB | zipped MB | goal MB | import ms (CPU) | ready ms (CPU) | lazy clients | goal ms "
        "| import ms (wall) | within goals |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    failures = []
    for r in rows:
        name, goal_ms = r["function"], r["ms_goal"]
        if r["error"] is not None:
            lines.append(
                f"| {name} | {r['unzipped_mb']:.1f} | {r['zipped_mb']:.1f} | {r['mb_goal']} | import fails | - | - "
                f"| {goal_ms} | - | NO |"
            )
            failures.append(f"- {name}: `{r['error']}`")
            continue
        t: dict[str, float] = r["times"]  # type: ignore[assignment]
        if r["mb_goal"] == "-":
            lines.append(f"| {name} | - | - | - | {t['cpu']:.0f} | - | - | - | {t['wall']:.0f} | - |")
            continue
        worst = max(t["cpu"], t["cpu_ready"])
        ok = r["unzipped_mb"] <= r["mb_goal"] and worst <= goal_ms  # type: ignore[operator]
        lines.append(
            f"| {name} | {r['unzipped_mb']:.1f} | {r['zipped_mb']:.1f} | {r['mb_goal']} | {t['cpu']:.0f} "
            f"| {t['cpu_ready']:.0f} | {t['lazy_clients']:.0f} | {goal_ms} | {t['wall']:.0f} "
            f"| {'yes' if ok else 'NO'} |"
        )
    if failures:
        lines += ["", "Import failures (the bundle lacks a module its code imports):", *failures]
    return "\n".join(lines) + "\n"


START, END = "<!-- bundles:start -->", "<!-- bundles:end -->"


def write_section(text: str) -> None:
    """Replace this benchmark's section (between its markers) or append it; other sections stay as they are."""
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    block = f"{START}\n{text.rstrip()}\n{END}\n"
    if START in current and END in current:
        head, rest = current.split(START, 1)
        current = head + block + rest.split(END, 1)[1].lstrip("\n")
    else:
        current = current.rstrip("\n") + "\n\n" + block
    RESULTS.write_text(current)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    before = os.getloadavg()[0]
    rows = measure(args.repeat)
    text = table(rows, args.repeat, (before, os.getloadavg()[0]))
    print(text)
    if args.write_results:
        write_section(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
