"""dropzone.local.localfs: the java.nio local file system is compiled once per source and pyspark version, and
without a JDK (or when the compile fails) Spark gets Hadoop's raw local file system instead."""

from __future__ import annotations

import logging
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from dropzone.local import localfs

needs_javac = pytest.mark.skipif(shutil.which("javac") is None, reason="no javac (JDK) on this machine")


@needs_javac
def test_the_jar_is_built_once_and_then_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    jar = localfs.build_jar(tmp_path)

    assert jar is not None
    assert jar.parent == tmp_path
    with zipfile.ZipFile(jar) as z:
        assert z.namelist() == ["dropzone/local/NioLocalFileSystem.class"]
    assert [p.name for p in tmp_path.iterdir()] == [jar.name]  # no partial file left behind

    def no_compile(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("javac ran again")

    monkeypatch.setattr(subprocess, "run", no_compile)
    assert localfs.build_jar(tmp_path) == jar


def test_without_javac_spark_gets_the_raw_local_file_system(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setattr(localfs, "cache_dir", lambda: tmp_path)
    localfs.file_system_conf.cache_clear()
    try:
        assert localfs.build_jar(tmp_path) is None
        assert localfs.file_system_conf() == {"spark.hadoop.fs.file.impl": "org.apache.hadoop.fs.RawLocalFileSystem"}
    finally:
        localfs.file_system_conf.cache_clear()
    assert list(tmp_path.iterdir()) == []


@needs_javac
def test_a_source_that_does_not_compile_falls_back_and_says_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    broken = tmp_path / "NioLocalFileSystem.java"
    broken.write_text("package dropzone.local;\npublic class NioLocalFileSystem extends NoSuchClass {}\n")
    monkeypatch.setattr(localfs, "SOURCE", broken)

    with caplog.at_level(logging.WARNING, logger="dropzone.local.localfs"):
        assert localfs.build_jar(tmp_path / "cache") is None

    assert "javac failed on" in caplog.text
    assert "cannot find symbol" in caplog.text
    assert not (tmp_path / "cache").exists()


@needs_javac
def test_a_cache_that_cannot_be_written_falls_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "taken").write_text("a file where the cache folder would be")

    with caplog.at_level(logging.WARNING, logger="dropzone.local.localfs"):
        assert localfs.build_jar(tmp_path / "taken" / "dropzone") is None

    assert "cannot write" in caplog.text
