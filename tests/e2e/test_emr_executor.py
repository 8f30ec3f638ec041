"""EMR Serverless job runs recorded in moto, executed with local Spark: staging, state, cost, events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dropzone.local.emr import EmrExecutor, parse_job_driver, sizing
from dropzone.local.server import EmbeddedAws
from dropzone.local.stack import Stack

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


def _start(aws: EmbeddedAws, stack: Stack, *extra: str) -> tuple[str, str]:
    s3 = aws.client("s3")
    bucket = stack.outputs["DataBucketName"]
    s3.put_object(Bucket=bucket, Key="assets/job.py", Body=(TOY / "spark_job.py").read_bytes())
    for i in range(2):
        s3.put_object(Bucket=bucket, Key=f"incoming/t/{i}.csv", Body=b"a,b\n1,2\n3,4\n5,6\n")
    files = [f"s3://{bucket}/incoming/t/{i}.csv" for i in range(2)]
    s3.put_object(Bucket=bucket, Key="batches/b1.json", Body=json.dumps({"files": files}).encode())
    app_id = stack.emr_applications["Spark"]
    run = aws.client("emr-serverless").start_job_run(
        applicationId=app_id,
        executionRoleArn=f"arn:aws:iam::{aws.account_id}:role/job",
        clientToken="b1-1",
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
                "sparkSubmitParameters": "--conf spark.executor.cores=4 --conf spark.executor.memory=14g",
            }
        },
    )
    return app_id, run["jobRunId"]


def _events(aws: EmbeddedAws) -> list[dict]:
    sqs = aws.client("sqs")
    url = next(u for u in sqs.list_queues()["QueueUrls"] if "JobEventsQueue" in u)
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(m["Body"]) for m in messages]


@pytest.mark.slow
@pytest.mark.spark
def test_a_run_executes_with_staged_inputs_and_reports_truthfully(aws: EmbeddedAws, toy_stack: Stack, tmp_path) -> None:
    app_id, run_id = _start(aws, toy_stack)
    lines: list[str] = []
    executor = EmrExecutor(aws, [app_id], tmp_path, progress=lines.append)
    assert executor.run_pending() == 1
    assert executor.run_pending() == 0  # each run executes once
    outcome = executor.outcomes[0]
    assert outcome.state == "SUCCESS", outcome.log.read_text()[-2000:]
    # the job's own [dropzone] lines, and Spark's stage progress when a stage runs long enough to show
    assert [ln for ln in lines if not ln.startswith("stage ")] == ["[dropzone] counted 6 rows"]
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
def test_a_failing_run_is_failed_with_the_error_in_its_details(aws: EmbeddedAws, toy_stack: Stack, tmp_path) -> None:
    app_id, run_id = _start(aws, toy_stack, "--fail", "contract breaks the job")
    outcome = EmrExecutor(aws, [app_id], tmp_path).execute(app_id, run_id)
    assert outcome.state == "FAILED"
    run = aws.client("emr-serverless").get_job_run(applicationId=app_id, jobRunId=run_id)["jobRun"]
    assert run["state"] == "FAILED"
    assert "ValueError: contract breaks the job" in run["stateDetails"]
    assert [e["detail"]["state"] for e in _events(aws)] == ["RUNNING", "FAILED"]
