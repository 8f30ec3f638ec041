"""The local file system Spark writes through in the local runtime, its benchmark and its tests.

Hadoop's local file system, without Hadoop's native library (pyspark ships none), starts a `chmod` process for every
file and folder it creates (about 4 ms each here), and the checksummed one (the default for file:) writes a .crc file
beside each data file with a chmod of its own: 1,628 processes for a 540-date curated write. RawLocalFileSystem
writes no .crc files (1,087 processes); ``NioLocalFileSystem.java``, a RawLocalFileSystem that sets permissions with
java.nio, starts none. Writing 20,000 orders into 540 daily partitions, same machine and session: 0.9 s against
2.8-3.0 s with the raw one. EMR writes to s3:// and uses neither.

The class is compiled on first use with the JDK's ``javac`` against pyspark's Hadoop jars, into a jar cached per
source and pyspark version. Without a JDK (a JRE runs Spark) or if the compile fails, Spark gets RawLocalFileSystem.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import shutil
import subprocess
import tempfile
import zipfile
from pathlib import Path

SOURCE = Path(__file__).with_name("NioLocalFileSystem.java")
NIO_CLASS = "dropzone.local.NioLocalFileSystem"
RAW_CLASS = "org.apache.hadoop.fs.RawLocalFileSystem"
FS_IMPL = "spark.hadoop.fs.file.impl"
CLASS_PATH = "spark.driver.extraClassPath"  # local[N]: the driver JVM runs every task

log = logging.getLogger(__name__)


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dropzone"


def pyspark_jars() -> tuple[Path, str]:
    import pyspark

    return Path(pyspark.__file__).parent / "jars", pyspark.__version__


def build_jar(directory: Path | None = None) -> Path | None:
    """The compiled file system's jar (built now if missing), or None without a working ``javac``."""
    jars, version = pyspark_jars()
    digest = hashlib.sha256(SOURCE.read_bytes() + version.encode()).hexdigest()[:16]
    directory = directory or cache_dir()
    jar = directory / f"localfs-{digest}.jar"
    if jar.is_file():
        return jar
    javac = shutil.which("javac")
    if javac is None:
        log.info("no javac (a JDK): Spark writes local files through %s", RAW_CLASS)
        return None
    with tempfile.TemporaryDirectory(prefix="dropzone-localfs-") as tmp:
        classes = Path(tmp) / "classes"
        command = [javac, "--release", "17", "-nowarn", "-cp", str(jars / "*"), "-d", str(classes), str(SOURCE)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)  # noqa: S603 - the JDK's javac on our source
        except (OSError, subprocess.TimeoutExpired) as e:
            log.warning("javac could not compile %s (%s): Spark writes local files through %s", SOURCE, e, RAW_CLASS)
            return None
        if done.returncode != 0:
            log.warning("javac failed on %s: %s", SOURCE, (done.stderr or done.stdout).strip()[-2000:])
            return None
        try:
            directory.mkdir(parents=True, exist_ok=True)
            partial = tempfile.NamedTemporaryFile(dir=directory, suffix=".partial", delete=False)  # noqa: SIM115 - kept, then renamed
            with partial, zipfile.ZipFile(partial, "w") as z:  # a jar is a zip; the classpath needs no manifest
                for f in sorted(classes.rglob("*.class")):
                    z.write(f, f.relative_to(classes).as_posix())
            os.replace(partial.name, jar)  # atomic: a concurrent first use sees a whole jar or none
        except OSError as e:
            log.warning("cannot write %s (%s): Spark writes local files through %s", jar, e, RAW_CLASS)
            return None
    return jar


@functools.cache
def file_system_conf() -> dict[str, str]:
    """Spark properties for local files: the java.nio file system when it can be built, else the raw one. Both
    must be set before the driver JVM starts (a SparkSession builder's config, spark-submit's --conf)."""
    jar = build_jar()
    if jar is None:
        return {FS_IMPL: RAW_CLASS}
    return {FS_IMPL: NIO_CLASS, CLASS_PATH: str(jar)}
