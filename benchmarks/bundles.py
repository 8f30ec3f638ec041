"""Lambda bundle sizes after `sam build` and cold import time of each function in a fresh interpreter.

Sizes are of the real arm64 bundles (.aws-sam/build, built if missing), unzipped and zipped (deflate, as
`sam deploy` uploads them). Import times need native code this machine can run: each bundle is rebuilt with the
same Makefile target for manylinux2014_x86_64 (same pins, same files) and its handler module is imported in a
fresh `python3.11 -S` per repeat (no site-packages: only the bundle and boto3, as the Lambda runtime provides
it), with the function's environment set to placeholders. The validating function is
also timed up to "ready to validate" (its lazy import of dropzone.validation, i.e. pyarrow and numpy).

    .venv/bin/python benchmarks/bundles.py [--repeat 7] [--write-results]

Goals (issue 5): the validating function <= 150 MB and <= 800 ms, the others <= 30 MB and <= 400 ms.
--write-results replaces the "Bundles and cold imports" section of benchmarks/RESULTS.md.
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
FUNCTIONS = ("IngestFunction", "JobFinishedFunction", "ModelTrainedFunction", "ReconcileFunction")
VALIDATING = "IngestFunction"
GOALS = {VALIDATING: (150, 800)}
DEFAULT_GOAL = (30, 400)
# Lazily imported on first use; timed on top of the handler import.
FIRST_USE = {VALIDATING: "dropzone.validation"}
PYTHON = shutil.which("python3.11") or sys.executable

_TIMER = """
import importlib, sys, time
start = time.perf_counter()
import app
handler = time.perf_counter()
for name in sys.argv[1:]:
    importlib.import_module(name)
ready = time.perf_counter()
print((handler - start) * 1000, (ready - start) * 1000)
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


def cold_imports(bundle: Path, sdk: Path, logical_id: str, repeat: int) -> tuple[list[float], list[float]]:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": f"{bundle}{os.pathsep}{sdk}",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "POWERTOOLS_TRACE_DISABLED": "1",  # no X-Ray daemon here
        **function_environment(logical_id),
    }
    handler, ready = [], []
    extra = [FIRST_USE[logical_id]] if logical_id in FIRST_USE else []
    for _ in range(repeat):
        answer = subprocess.run(
            [PYTHON, "-S", "-c", _TIMER, *extra], cwd=bundle, env=env, capture_output=True, text=True, check=False
        )
        if answer.returncode != 0:
            raise ImportFailed(answer.stderr.strip().splitlines()[-1])
        first, second = (float(x) for x in answer.stdout.split())
        handler.append(first)
        ready.append(second)
    return handler, ready


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
        baseline, _ = cold_imports(empty, sdk, "baseline", repeat)
        rows.append(
            {
                "function": "baseline: boto3 + one client",
                "unzipped_mb": 0.0,
                "zipped_mb": 0.0,
                "mb_goal": "-",
                "ms_goal": "-",
                "error": None,
                "import_ms": statistics.median(baseline),
                "ready_ms": None,
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
                handler, ready = cold_imports(host, sdk, logical_id, repeat)
            except ImportFailed as e:
                row.update(import_ms=None, ready_ms=None, error=str(e))
            else:
                row.update(
                    import_ms=statistics.median(handler),
                    ready_ms=statistics.median(ready) if logical_id in FIRST_USE else None,
                )
            rows.append(row)
    return rows


def table(rows: list[dict[str, object]], repeat: int, load: tuple[float, float]) -> str:
    lines = [
        SECTION,
        "",
        "`benchmarks/bundles.py`: each function's bundle from `sam build` (arm64 wheels, bytecode compiled in,",
        "boto3 not bundled: the runtime has it), unzipped and zipped; cold import = median over "
        f"{repeat} fresh `python3.11 -S` processes",
        "of `import app` (the handler module, module-level clients and settings included) from an x86_64 twin of the",
        "bundle built by the same Makefile target. `ready` adds the validator's lazy import (pyarrow, numpy), i.e.",
        f"the first event's extra cost. Machine: {platform.machine()}, 2 cores shared with other work; Lambda's",
        "arm64 CPUs differ, so read the times as relative.",
        f"Load average (1 min): {load[0]:.1f} before, {load[1]:.1f} after (2 cores).",
        "",
        "| function | unzipped MB | zipped MB | goal MB | import ms | ready ms | goal ms | within goals |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    failures = []
    for r in rows:
        size = f"| {r['function']} | {r['unzipped_mb']:.1f} | {r['zipped_mb']:.1f} | {r['mb_goal']} |"
        if r["error"] is not None:
            lines.append(f"{size} import fails | - | {r['ms_goal']} | NO |")
            failures.append(f"- {r['function']}: `{r['error']}`")
            continue
        ready = f"{r['ready_ms']:.0f}" if r["ready_ms"] is not None else "-"
        if r["mb_goal"] == "-":
            lines.append(f"| {r['function']} | - | - | - | {r['import_ms']:.0f} | - | - | - |")
            continue
        worst = r["ready_ms"] if r["ready_ms"] is not None else r["import_ms"]
        ok = r["unzipped_mb"] <= r["mb_goal"] and worst <= r["ms_goal"]  # type: ignore[operator]
        lines.append(f"{size} {r['import_ms']:.0f} | {ready} | {r['ms_goal']} | {'yes' if ok else 'NO'} |")
    if failures:
        lines += ["", "Import failures (the bundle lacks a module its code imports):", *failures]
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if SECTION in current:
        start = current.index(SECTION)
        following = current.find("\n## ", start + len(SECTION))
        current = current[:start] + text + ("\n" + current[following + 1 :] if following != -1 else "")
    else:
        current = current.rstrip("\n") + "\n\n" + text
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
