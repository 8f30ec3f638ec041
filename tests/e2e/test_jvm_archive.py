"""The class data sharing archive of the local Spark driver (dropzone/local/jvm.py): built once, then mapped."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dropzone.local import jvm
from dropzone.local.emr import LOCAL_JAVA_OPTIONS, SparkHost, driver_options

TINY_JOB = """
from pyspark.sql import SparkSession, functions as F
spark = SparkSession.builder.getOrCreate()
rows = spark.range(100).groupBy((F.col("id") % 3).alias("k")).count().collect()
print("[dropzone] groups", len(rows))
"""


def _sources(class_log: Path) -> dict[str, str]:
    """Class name → where the JVM loaded it from (-Xlog:class+load): the archive, or a jar or file on the class
    path. Classes the JDK's base archive holds and classes made at run time (lambdas, proxies) are left out."""
    found = {}
    for line in class_log.read_text(encoding="utf-8", errors="replace").splitlines():
        match = re.search(r"\] (\S+) source: (shared objects file \(top\)|jar:\S+|file:\S+)", line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


@pytest.mark.slow
@pytest.mark.spark
def test_the_driver_maps_spark_classes_from_the_archive_built_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    stale = store / "spark-classes-0123456789abcdef.jsa"  # of another JDK or pyspark install
    stale.write_bytes(b"old")
    monkeypatch.setattr(jvm, "ARCHIVE_DIR", store)
    options = driver_options(2, "2g", LOCAL_JAVA_OPTIONS, {})
    assert not any("SharedArchiveFile" in option for option in options)  # none built: the jars, as before

    built, why = jvm.build()
    assert built is not None, why
    assert built.parent == store
    assert built.name == jvm.archive_name()
    assert not stale.exists()
    assert sorted(p.name for p in store.iterdir()) == [built.name]  # no partial file left behind
    written = built.stat().st_mtime_ns
    assert jvm.build() == (built, "")  # built once
    assert built.stat().st_mtime_ns == written

    class_log = tmp_path / "classes.log"
    java_options = f"{LOCAL_JAVA_OPTIONS} -Xlog:class+load=info:file={class_log}"
    assert f"-XX:SharedArchiveFile={built}" in " ".join(driver_options(2, "2g", java_options, {}))
    host = SparkHost(tmp_path / "work", driver_options(2, "2g", java_options, {}))
    entry = tmp_path / "tiny.py"
    entry.write_text(TINY_JOB)
    said: list[str] = []
    try:
        answer = host.run({"id": "t", "entry": str(entry), "arguments": [], "py_files": [], "conf": {}}, said.append)
    finally:
        host.close()
    assert answer.code == 0, "".join(said)[-2000:]
    assert "[dropzone] groups 3\n" in said
    sources = _sources(class_log)
    mapped = [name for name, source in sources.items() if source.startswith("shared objects file")]
    assert len([name for name in mapped if name.startswith("org.apache.spark.")]) > 2000
    assert len(mapped) > 0.9 * len(sources), sorted(set(sources) - set(mapped))[:20]

    truncated = tmp_path / "truncated.jsa"
    truncated.write_bytes(built.read_bytes()[: 2**20])
    assert jvm.usable(built)
    assert not jvm.usable(truncated)  # would crash a driver at start: never given the archive's name
