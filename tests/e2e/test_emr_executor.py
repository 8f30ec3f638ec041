"""EMR Serverless job runs recorded in moto, executed with local Spark: staging, state, cost, events."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote_plus

import pytest

from dropzone.local.emr import EmrExecutor, parse_job_driver, sizing
from dropzone.local.server import EmbeddedAws
from dropzone.local.stack import Stack
from dropzone.local.staging import Mirror

TOY = Path(__file__).parent / "toy"


def test_job_driver_and_sizing_are_read_from_the_run() -> None:
    driver = {
        "sparkSubmit": {
            "entryPoint": "s3://b/main.py",
            "entryPointArguments": ["--x", "s3://b/in/"],
            "sparkSubmitParameters": "--conf spark.executor.cores=2 --conf spark.executor.memory=7g "
            "--conf spark.dynamicAllocation.enabled=false --conf spark.executor.instances=5 --py-files s3://b/z.zip",
        }
    }
    submit = parse_job_driver(driver, {"applicationConfiguration": []})
    assert submit.py_files == ["s3://b/z.zip"]
    plan = sizing(submit.conf)
    assert (plan.executors, plan.executor_vcpu, plan.executor_gb, plan.driver_vcpu) == (5, 2.0, 8.0, 4.0)
    # 10 s of wall time is billed as the 1-minute minimum: (4 + 5*2) vCPU * 1/60 h
    assert plan.billed(10)["vCPUHour"] == pytest.approx(14 / 60, abs=1e-6)
    assert plan.billed(7200)["memoryGBHour"] == pytest.approx((16 + 5 * 8) * 2)
    with pytest.raises(ValueError, match="no sparkSubmit entryPoint"):
        parse_job_driver({"hive": {}}, None)


def _start(
    aws: EmbeddedAws, stack: Stack, *extra: str, parameters: str = "", py_files: dict[str, bytes] | None = None
) -> tuple[str, str]:
    """Start a toy job run in moto; ``py_files``: zip key → toylib.py source, shipped with --py-files."""
    s3 = aws.client("s3")
    bucket = stack.outputs["DataBucketName"]
    s3.put_object(Bucket=bucket, Key="assets/job.py", Body=(TOY / "spark_job.py").read_bytes())
    for i in range(2):
        s3.put_object(Bucket=bucket, Key=f"incoming/t/{i}.csv", Body=b"a,b\n1,2\n3,4\n5,6\n")
    files = [f"s3://{bucket}/incoming/t/{i}.csv" for i in range(2)]
    s3.put_object(Bucket=bucket, Key="batches/b1.json", Body=json.dumps({"files": files}).encode())
    for key, source in (py_files or {}).items():
        s3.put_object(Bucket=bucket, Key=key, Body=_zip({"toylib.py": source}))
    zips = ",".join(f"s3://{bucket}/{key}" for key in py_files or {})
    app_id = stack.emr_applications["Spark"]
    run = aws.client("emr-serverless").start_job_run(
        applicationId=app_id,
        executionRoleArn=f"arn:aws:iam::{aws.account_id}:role/job",
        clientToken=f"b1-{len(extra)}-{parameters}-{zips}",
        name="b1",
        jobDriver={
            "sparkSubmit": {
                "entryPoint": f"s3://{bucket}/assets/job.py",
                "entryPointArguments": [
                    "--manifest",
                    f"s3://{bucket}/batches/b1.json",
                    "--out",
                    f"s3://{bucket}/out/b1/",
                    *extra,
                ],
                "sparkSubmitParameters": "--conf spark.executor.cores=4 --conf spark.executor.memory=14g"
                + (f" {parameters}" if parameters else "")
                + (f" --py-files {zips}" if zips else ""),
            }
        },
    )
    return app_id, run["jobRunId"]


def _zip(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, body in files.items():
            archive.writestr(name, body)
    return buffer.getvalue()


def _events(aws: EmbeddedAws) -> list[dict]:
    sqs = aws.client("sqs")
    url = next(u for u in sqs.list_queues()["QueueUrls"] if "JobEventsQueue" in u)
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


@pytest.fixture(params=["warm", "per-run"])
def executor(
    request: pytest.FixtureRequest, aws: EmbeddedAws, toy_stack: Stack, tmp_path: Path
) -> Iterator[EmrExecutor]:
    """Both ways a run executes: in the warm local driver (the default) and with its own spark-submit."""
    lines: list[str] = []
    app_id = toy_stack.emr_applications["Spark"]
    executor = EmrExecutor(aws, [app_id], tmp_path, progress=lines.append, warm=request.param == "warm")
    executor.lines = lines  # type: ignore[attr-defined]
    yield executor
    executor.close()


def _said(executor: EmrExecutor) -> list[str]:
    """The job's own [dropzone] lines the executor passed on (not the stage progress or driver notes)."""
    return [ln for ln in executor.lines if ln.startswith("[dropzone]")]  # type: ignore[attr-defined]


@pytest.mark.slow
@pytest.mark.spark
def test_a_run_executes_with_staged_inputs_and_reports_truthfully(
    aws: EmbeddedAws, toy_stack: Stack, executor: EmrExecutor
) -> None:
    app_id, run_id = _start(aws, toy_stack)
    assert executor.run_pending() == 1
    assert executor.run_pending() == 0  # each run executes once
    outcome = executor.outcomes[0]
    assert outcome.state == "SUCCESS", outcome.log.read_text()[-2000:]
    assert _said(executor) == ["[dropzone] counted 6 rows"]
    bucket = toy_stack.outputs["DataBucketName"]
    s3 = aws.client("s3")
    assert s3.get_object(Bucket=bucket, Key="out/b1/count.txt")["Body"].read() == b"6"
    manifest = json.loads(s3.get_object(Bucket=bucket, Key="out/b1/_manifest.json")["Body"].read())
    assert manifest["count"] == f"s3://{bucket}/out/b1/count.txt"  # local paths rewritten back to s3://
    assert outcome.uploaded[-1].endswith("_manifest.json")
    run = aws.client("emr-serverless").get_job_run(applicationId=app_id, jobRunId=run_id)["jobRun"]
    assert run["state"] == "SUCCESS"
    # 4 vCPU driver + 3 initial executors of 4 vCPU, at least one minute each
    assert run["billedResourceUtilization"]["vCPUHour"] >= 16 / 60
    states = [(e["detail"]["state"], e["detail"]["jobRunId"]) for e in _events(aws)]
    assert states == [("RUNNING", run_id), ("SUCCESS", run_id)]


@pytest.mark.slow
@pytest.mark.spark
def test_a_run_records_no_python_call_sites_unless_it_asks(
    aws: EmbeddedAws, toy_stack: Stack, executor: EmrExecutor
) -> None:
    # as spark_app.job.build_session on EMR: set when the driver starts, so the local drivers carry it themselves
    quiet = executor.execute(*_start(aws, toy_stack, "--show-debugging"))
    asked = executor.execute(
        *_start(
            aws, toy_stack, "--show-debugging", parameters="--conf spark.python.sql.dataFrameDebugging.enabled=true"
        )
    )
    assert [quiet.state, asked.state] == ["SUCCESS", "SUCCESS"], asked.log.read_text()[-2000:]
    assert _said(executor) == [
        "[dropzone] dataframe debugging false, in effect False",
        "[dropzone] counted 6 rows",
        "[dropzone] dataframe debugging true, in effect True",
        "[dropzone] counted 6 rows",
    ]


@pytest.mark.slow
@pytest.mark.spark
def test_a_failing_run_is_failed_with_the_error_in_its_details(
    aws: EmbeddedAws, toy_stack: Stack, executor: EmrExecutor
) -> None:
    app_id, run_id = _start(aws, toy_stack, "--fail", "contract breaks the job")
    outcome = executor.execute(app_id, run_id)
    assert outcome.state == "FAILED"
    run = aws.client("emr-serverless").get_job_run(applicationId=app_id, jobRunId=run_id)["jobRun"]
    assert run["state"] == "FAILED"
    assert "ValueError: contract breaks the job" in run["stateDetails"]
    assert "ValueError: contract breaks the job" in outcome.log.read_text()
    assert [e["detail"]["state"] for e in _events(aws)] == ["RUNNING", "FAILED"]


@pytest.mark.slow
@pytest.mark.spark
def test_runs_in_the_warm_driver_share_its_jvm_but_not_their_state(
    aws: EmbeddedAws, toy_stack: Stack, tmp_path: Path
) -> None:
    executor = EmrExecutor(aws, [toy_stack.emr_applications["Spark"]], tmp_path, progress=lambda line: None)
    lines: list[str] = []
    executor._progress = lines.append  # the job's lines, run by run
    try:
        first = executor.execute(
            *_start(
                aws,
                toy_stack,
                "--lib",
                "--show-state",
                "--set-time-zone",
                "Asia/Tokyo",
                "--cache",
                parameters="--conf spark.sql.shuffle.partitions=3",
                py_files={"assets/lib1.zip": b"VALUE = 'one'\n"},
            )
        )
        said_first = [ln for ln in lines if ln.startswith("[dropzone]")]
        lines.clear()
        failed = executor.execute(*_start(aws, toy_stack, "--fail", "in between"))
        second = executor.execute(
            *_start(aws, toy_stack, "--lib", "--show-state", py_files={"assets/lib2.zip": b"VALUE = 'two'\n"})
        )
        said_second = [ln for ln in lines if ln.startswith("[dropzone]")]
        assert executor.host is not None
        assert (executor.host.starts, executor.host.broken) == (1, "")  # one driver served all three
    finally:
        executor.close()
    assert [first.state, failed.state, second.state] == ["SUCCESS", "FAILED", "SUCCESS"]
    # the run's own properties apply to its session only; what the job set or cached is gone for the next run;
    # the next run imports its own toylib (a fresh module from its own zip), not the one already imported
    assert said_first[0] == "[dropzone] toylib one"
    assert said_first[1].startswith("[dropzone] partitions 3, time zone ")
    zone = said_first[1].split("time zone ")[1].split(",")[0]  # printed before the job set Asia/Tokyo
    assert zone != "Asia/Tokyo"
    assert said_first[2:] == ["[dropzone] counted 6 rows"]
    assert said_second == [
        "[dropzone] toylib two",
        f"[dropzone] partitions 8, time zone {zone}, persisted 0",
        "[dropzone] counted 6 rows",
    ]
    assert "warm local Spark driver" in first.log.read_text().splitlines()[0]


@pytest.mark.slow
@pytest.mark.spark
def test_a_run_the_warm_driver_cannot_take_gets_its_own_spark_submit(
    aws: EmbeddedAws, toy_stack: Stack, tmp_path: Path
) -> None:
    lines: list[str] = []
    executor = EmrExecutor(aws, [toy_stack.emr_applications["Spark"]], tmp_path, progress=lines.append)
    try:
        # a driver JVM option is fixed when the driver starts: the warm driver was started without this one
        java = executor.execute(*_start(aws, toy_stack, parameters="--conf spark.driver.extraJavaOptions=-Dtoy.flag=1"))
        first = executor.execute(*_start(aws, toy_stack, "--lib", py_files={"assets/v1/lib.zip": b"VALUE = 1\n"}))
        # Spark keeps one shipped py-file per name: another lib.zip cannot reach the warm driver's Python workers
        other = executor.execute(*_start(aws, toy_stack, "--lib", py_files={"assets/v2/lib.zip": b"VALUE = 2\n"}))
    finally:
        executor.close()
    assert [java.state, first.state, other.state] == ["SUCCESS"] * 3, other.log.read_text()[-2000:]
    log = java.log.read_text()
    assert "not in the warm driver: spark.driver.extraJavaOptions=-Dtoy.flag=1" in log
    assert "spark-submit --master 'local[2]'" in log
    assert "--conf spark.driver.extraJavaOptions=-Dtoy.flag=1" in log
    assert "warm local Spark driver" in first.log.read_text().splitlines()[0]
    assert "not in the warm driver: its Python workers already have a different lib.zip" in other.log.read_text()
    assert [ln for ln in lines if ln.startswith("[dropzone]")] == [
        "[dropzone] counted 6 rows",
        "[dropzone] toylib 1",
        "[dropzone] counted 6 rows",
        "[dropzone] toylib 2",
        "[dropzone] counted 6 rows",
    ]


@pytest.mark.slow
@pytest.mark.spark
def test_a_driver_that_dies_fails_its_run_and_the_next_run_gets_a_new_one(
    aws: EmbeddedAws, toy_stack: Stack, tmp_path: Path
) -> None:
    executor = EmrExecutor(aws, [toy_stack.emr_applications["Spark"]], tmp_path)
    try:
        app_id, run_id = _start(aws, toy_stack, "--exit-hard", "3")
        died = executor.execute(app_id, run_id)
        after = executor.execute(*_start(aws, toy_stack))
        assert executor.host is not None
        assert executor.host.starts == 2
    finally:
        executor.close()
    assert (died.state, after.state) == ("FAILED", "SUCCESS")
    run = aws.client("emr-serverless").get_job_run(applicationId=app_id, jobRunId=run_id)["jobRun"]
    assert run["state"] == "FAILED"
    assert "exited during the run with code 3" in run["stateDetails"]


def test_published_files_are_objects_like_any_put_without_a_request_each(
    aws: EmbeddedAws, toy_stack: Stack, tmp_path: Path
) -> None:
    """A run's small files are stored through moto's S3 code directly (a daily-partitioned table is hundreds of
    them): readable over the API with their bytes and MD5 ETags, the bucket's notifications sent, the manifest
    last; a file above the single-put size still goes through the API in parts."""
    s3 = aws.client("s3")
    sent: list[str] = []
    s3.meta.events.register("before-call.s3", lambda model, **_: sent.append(model.name))
    root = tmp_path / "s3"
    mirror = Mirror(s3, root, put=aws.put_object)
    bucket = toy_stack.outputs["DataBucketName"]
    before = mirror.snapshot()
    bodies = {f"curated/t/event_date=2026-01-{day:02d}/part-0.parquet": os.urandom(100 + day) for day in (1, 2, 3)}
    bodies["incoming/t/late.csv"] = b"a,b\n1,2\n"  # under the toy bucket's notification prefix
    bodies["features/t/big.bin"] = os.urandom(9 * 2**20)
    for key, body in bodies.items():
        (root / bucket / key).parent.mkdir(parents=True, exist_ok=True)
        (root / bucket / key).write_bytes(body)
    manifest = root / bucket / "features/t/_manifest.json"
    manifest.write_text(json.dumps({"table": str(root / bucket / "curated/t") + "/"}))

    uploaded = mirror.publish(before)

    assert sorted(uploaded[:-1]) == sorted(f"s3://{bucket}/{key}" for key in bodies)
    assert uploaded[-1] == f"s3://{bucket}/features/t/_manifest.json"
    for key, body in bodies.items():
        got = s3.get_object(Bucket=bucket, Key=key)
        assert got["Body"].read() == body, key
        if len(body) < 2**20:
            assert got["ETag"] == f'"{hashlib.md5(body).hexdigest()}"', key
    stored = json.loads(s3.get_object(Bucket=bucket, Key="features/t/_manifest.json")["Body"].read())
    assert stored == {"table": f"s3://{bucket}/curated/t/"}
    published = [name for name in sent if name not in ("GetObject", "HeadObject")]
    assert "PutObject" not in published
    assert published.count("CreateMultipartUpload") == 1  # the 9 MiB file only
    sqs = aws.client("sqs")
    inbox = next(u for u in sqs.list_queues()["QueueUrls"] if "InboxQueue" in u)
    notes = [json.loads(m["Body"]) for m in sqs.receive_message(QueueUrl=inbox, MaxNumberOfMessages=10)["Messages"]]
    keys = [unquote_plus(r["s3"]["object"]["key"]) for note in notes for r in note.get("Records", [])]
    assert keys == ["incoming/t/late.csv"]  # the same notification a PutObject request gets
