"""A class data sharing archive for the local Spark driver's JVM (``python -m dropzone.local.jvm`` builds it).

A Spark driver loads about 14,000 classes that the JDK's own archive lacks (nearly all from pyspark's jars) when it
starts and runs its first query, and the JVM parses and verifies each one every time. JDK 17 can instead map them
from an archive written by an earlier JVM at its exit (a dynamic CDS archive, ``-XX:ArchiveClassesAtExit``, JEP
350). Measured here (2 cores, the warm driver's options): the SparkSession started in 3.5-3.7 s instead of 6.3-7.4
s, the warm-up query took 3.2 s instead of 5.9-6.2 s, and the JVM used 8.9 CPU-s instead of 14-16; the demo's
orders run in a new driver took 28.3 s instead of 34.7 s. EMR Serverless starts its own JVMs and gets none of this.

The archive is written once, by a warm driver (``spark_host.py``) that runs only its warm-up and exits, into
``<venv>/share/dropzone/``; ``make demo``, ``make test`` and ``make jvm-archive`` build it when it is missing. It is
named by a digest of the JDK and of every jar on the driver's class path, so a new JDK or a reinstalled pyspark gets
a new one. A driver started when there is none (or a run that sets its own ``spark.driver.extraJavaOptions``) loads
its classes from the jars as before. The JVM itself refuses an archive whose class path differs (a warning, then it
goes on without it), but a truncated archive makes it crash at start: an archive is tried once before it gets its
name, and written under another name until then.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ARCHIVE_DIR = Path(sys.prefix) / "share" / "dropzone"
_PREFIX = "spark-classes-"
_BUILD_SECONDS = 600


def java() -> str | None:
    """The ``java`` that spark-submit starts: ``$JAVA_HOME/bin/java``, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home:
        candidate = Path(home) / "bin" / "java"
        return str(candidate) if candidate.is_file() else None
    return shutil.which("java")


@functools.cache
def _java_version(executable: str) -> str:
    done = subprocess.run([executable, "-version"], capture_output=True, text=True, timeout=60, check=False)  # noqa: S603 - the JDK's own java
    return done.stderr + done.stdout


def _class_path() -> list[Path]:
    """What the local driver's class path holds besides the JDK: our file system's jar and pyspark's jars."""
    from dropzone.local.localfs import CLASS_PATH, file_system_conf, pyspark_jars

    extra = file_system_conf().get(CLASS_PATH)
    jars = sorted(pyspark_jars()[0].glob("*.jar"))
    return ([Path(extra)] if extra else []) + jars


def archive_name() -> str | None:
    """The archive's file name for this JDK and class path (None without a ``java``)."""
    executable = java()
    if executable is None:
        return None
    digest = hashlib.sha256()
    digest.update(os.path.realpath(executable).encode())
    digest.update(_java_version(executable).encode())
    for path in _class_path():
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return f"{_PREFIX}{digest.hexdigest()[:16]}.jsa"


def archive(directory: Path | None = None) -> Path | None:
    """The archive of this JDK and class path, if it has been built."""
    name = archive_name()
    if name is None:
        return None
    path = (directory or ARCHIVE_DIR) / name
    return path if path.is_file() else None


def with_archive(java_options: str, directory: Path | None = None) -> str:
    """``java_options`` plus the archive, when there is one."""
    path = archive(directory)
    return f"{java_options} -XX:SharedArchiveFile={path}".strip() if path else java_options


def usable(path: Path) -> bool:
    """Whether a JVM starts with ``path`` as its archive (a truncated archive crashes it; a foreign one it skips)."""
    executable = java()
    if executable is None:
        return False
    command = [executable, f"-XX:SharedArchiveFile={path}", "-version"]
    with tempfile.TemporaryDirectory(prefix="dropzone-jvm-") as scratch:  # a crash writes its hs_err_pid*.log here
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False, cwd=scratch)  # noqa: S603 - the JDK's own java
    return done.returncode == 0


def build(directory: Path | None = None) -> tuple[Path | None, str]:
    """Build the archive unless it exists; returns (its path, "") or (None, why not)."""
    from dropzone.local.emr import LOCAL_JAVA_OPTIONS, driver_options, host_launch

    directory = directory or ARCHIVE_DIR
    name = archive_name()
    if name is None:
        return None, "no java on PATH (nor JAVA_HOME)"
    final = directory / name
    if final.is_file():
        return final, ""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        return None, f"cannot create {directory}: {e}"
    with tempfile.TemporaryDirectory(prefix="dropzone-jvm-") as scratch:
        partial = directory / f".{name}.{os.getpid()}.partial"
        options = driver_options(2, "2g", f"{LOCAL_JAVA_OPTIONS} -XX:ArchiveClassesAtExit={partial}", {}, archive=False)
        command, env = host_launch(options)  # no run on its stdin: its warm-up, then it exits
        log = Path(scratch) / "driver.log"
        try:
            with log.open("w", encoding="utf-8") as out:
                done = subprocess.run(  # noqa: S603 - our own driver script
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd=scratch,
                    timeout=_BUILD_SECONDS,
                    check=False,
                )
            if done.returncode != 0 or not partial.is_file():
                tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-5:]
                return None, f"the driver exited with code {done.returncode}: " + " | ".join(tail)
            if not usable(partial):
                return None, f"a JVM does not start with the archive written ({partial.stat().st_size} bytes)"
            os.replace(partial, final)  # atomic: a driver sees a whole archive or none
        except (OSError, subprocess.TimeoutExpired) as e:
            return None, str(e)
        finally:
            partial.unlink(missing_ok=True)
    for stale in directory.glob(f"{_PREFIX}*.jsa"):  # of an earlier JDK or pyspark: never used again
        if stale != final:
            stale.unlink(missing_ok=True)
    return final, ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dropzone.local.jvm",
        description="Build the class data sharing archive the local Spark driver starts with (once per JDK and "
        "pyspark install; a driver without one starts, only slower).",
    )
    parser.add_argument("--dir", type=Path, default=ARCHIVE_DIR, help=f"where it is kept (default {ARCHIVE_DIR})")
    args = parser.parse_args(argv)
    existing = archive(args.dir)
    if existing is not None:
        print(f"class data sharing archive: {existing}")
        return 0
    started = time.monotonic()
    path, why = build(args.dir)
    if path is None:
        print(f"class data sharing archive not built ({why}): the local Spark driver starts without it, only slower")
        return 0  # an optimisation: nothing depends on it
    size = path.stat().st_size / 2**20
    print(f"class data sharing archive: {path} ({size:.0f} MiB, built in {time.monotonic() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
