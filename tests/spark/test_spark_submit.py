"""The packaged artefacts run under pyspark's own ``spark-submit``, as EMR Serverless runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from dropzone.generate import generate
from spark_app.package import build

pytestmark = [pytest.mark.spark, pytest.mark.slow]

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"


def spark_submit(
    cwd: Path, options: list[str], archive: Path, script: Path, arguments: list[str]
) -> subprocess.CompletedProcess[str]:
    """``script`` under pyspark's spark-submit with ``archive`` as --py-files, run from ``cwd`` (outside the
    repository, without PYTHONPATH: spark_app and dropzone can only come from the zip); asserts it succeeded."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}
    env.pop("PYTHONPATH", None)
    cmd = [str(Path(sys.executable).with_name("spark-submit")), *options, "--py-files", str(archive), str(script)]
    cmd += arguments
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_package_holds_what_the_job_imports(tmp_path: Path) -> None:
    main, archive = build(tmp_path / "a")
    names = set(zipfile.ZipFile(archive).namelist())
    assert {"dropzone/contract.py", "spark_app/job.py", "spark_app/features.py", "yaml/__init__.py"} <= names
    assert not [n for n in names if n.endswith((".so", ".pyc"))]  # pure Python only: EMR's Python is not ours
    assert main.read_text() == (Path(__file__).resolve().parents[2] / "spark_app" / "main.py").read_text()
    _, again = build(tmp_path / "b")
    assert again.read_bytes() == archive.read_bytes()  # reproducible


def test_spark_submit_runs_the_packaged_job(tmp_path: Path) -> None:
    main, archive = build(tmp_path / "build")
    data = generate(tmp_path / "in", 300, seed=5, files=1, end_date="2026-06-01")
    # one file, named with glob characters: read through its escaped name, quietly (no WARN stack trace)
    named = Path(data["orders"][0]).rename(tmp_path / "in" / "orders [2026-06].csv")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps({"dataset": "orders", "batch_id": "b1", "attempt": 1, "files": [{"uri": str(named)}]})
    )
    options = ["--master", "local[2]", "--conf", "spark.ui.enabled=false", "--conf", "spark.sql.shuffle.partitions=4"]
    arguments = [
        "--manifest",
        str(manifest),
        "--contracts",
        str(CONTRACTS),
        "--dataset",
        "orders",
        "--curated",
        str(tmp_path / "curated"),
        "--features",
        str(tmp_path / "features"),
        "--run-id",
        "submit-1",
    ]
    done = spark_submit(tmp_path, options, archive, main, arguments)
    written = json.loads((tmp_path / "features" / "orders" / "run=submit-1" / "_manifest.json").read_text())
    assert written["batch_id"] == "b1"
    assert written["curated"]["rows_written"] == 300
    # no reference tables were curated: their features are null and say so, the job does not crash
    assert written["missing_references"] == ["customers", "products"]
    assert written["row_counts"]["score_rows"] > 0
    assert written["as_of"] == "2026-06-01"  # the day after the last event
    assert json.loads(done.stdout.strip().splitlines()[-1])["run_id"] == "submit-1"
    assert "FileStreamSink" not in done.stderr


PROBE = """
from pyspark.errors.utils import is_debugging_enabled
from pyspark.sql import functions as F

from spark_app.job import build_session

spark = build_session()
F.col("x")  # a Column call: pyspark decides here whether to record its call site
print("debugging", spark.conf.get("spark.python.sql.dataFrameDebugging.enabled"), is_debugging_enabled())
"""


@pytest.mark.parametrize(("conf", "expected"), [([], "debugging false False"), (["true"], "debugging true True")])
def test_the_job_session_records_no_call_sites_unless_the_run_asks(
    tmp_path: Path, conf: list[str], expected: str
) -> None:
    _, archive = build(tmp_path / "build")
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    options = ["--master", "local[1]"]
    options += [a for value in conf for a in ("--conf", f"spark.python.sql.dataFrameDebugging.enabled={value}")]
    done = spark_submit(tmp_path, options, archive, probe, [])
    assert done.stdout.strip().splitlines()[-1] == expected
