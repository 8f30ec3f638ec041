"""The local file system the Spark session writes through (dropzone.local.localfs): Hadoop's raw local file system
with permissions set in the JVM, not by a `chmod` process per file and folder."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from dropzone.local.localfs import NIO_CLASS

pytestmark = [
    pytest.mark.spark,
    pytest.mark.skipif(shutil.which("javac") is None, reason="no javac (JDK): the session uses the raw file system"),
]


def _file_system(spark: SparkSession, path: Path) -> object:
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    return jvm.org.apache.hadoop.fs.Path(f"file:{path}").getFileSystem(spark.sparkContext._jsc.hadoopConfiguration())


def test_the_session_writes_partitions_through_it_with_the_usual_modes(spark: SparkSession, tmp_path: Path) -> None:
    assert _file_system(spark, tmp_path).getClass().getName() == NIO_CLASS  # type: ignore[attr-defined]
    rows = [(i, f"2026-01-0{1 + i % 3}") for i in range(9)]
    out = tmp_path / "table"

    spark.createDataFrame(rows, "id long, day string").write.partitionBy("day").parquet(f"file:{out}")

    assert sorted(r["id"] for r in spark.read.parquet(f"file:{out}").collect()) == list(range(9))
    folders = sorted(p for p in out.rglob("*") if p.is_dir())
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert [p.name for p in folders] == ["day=2026-01-01", "day=2026-01-02", "day=2026-01-03"]
    assert [p for p in files if p.suffix == ".crc"] == []
    # Hadoop's defaults (fs.permissions.umask-mode 022): folders rwxr-xr-x, files rw-r--r--, as chmod would set them
    assert {stat.S_IMODE(p.stat().st_mode) for p in folders} == {0o755}
    assert {stat.S_IMODE(p.stat().st_mode) for p in files if p.suffix == ".parquet"} == {0o644}


@pytest.mark.parametrize("mode", [0o640, 0o751, 0o000, 0o777])
def test_set_permission_sets_every_mode_bit(spark: SparkSession, tmp_path: Path, mode: int) -> None:
    target = tmp_path / "f"
    target.write_text("x")
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    path = jvm.org.apache.hadoop.fs.Path(f"file:{target}")

    _file_system(spark, tmp_path).setPermission(path, jvm.org.apache.hadoop.fs.permission.FsPermission(mode))  # type: ignore[attr-defined]

    assert stat.S_IMODE(os.stat(target).st_mode) == mode
