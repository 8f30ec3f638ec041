"""The runtime's machinery on a toy template: deploy into moto, wiring read back, SQS delivery like Lambda."""

from __future__ import annotations

import json

import pytest

from dropzone.local.functions import QueuePoller, load_functions, scheduled_event
from dropzone.local.server import EmbeddedAws
from dropzone.local.stack import Stack, StackError, deploy, load_template
from tests.e2e.conftest import TOY_TEMPLATE


def _inbox(aws: EmbeddedAws, stack: Stack) -> QueuePoller:
    functions = load_functions(stack.functions, aws, None)
    mapping = next(m for m in stack.mappings if m.report_batch_item_failures)
    return QueuePoller(mapping, functions[mapping.function], aws)


def test_wiring_comes_from_the_deployed_stack(aws: EmbeddedAws, toy_stack: Stack) -> None:
    # GIVEN the toy template deployed WHEN the wiring is read back THEN it is the template's, resolved
    record = toy_stack.functions["RecordFunction"]
    app_id = toy_stack.emr_applications["Spark"]
    assert record.environment["EMR_APPLICATION_ID"] == app_id
    assert record.environment["LOADED_AT"] == f"us-east-1/{app_id}"
    assert record.environment["DATA_BUCKET"] == toy_stack.outputs["DataBucketName"]
    assert record.code_dir == TOY_TEMPLATE.parent / "record"
    application = aws.client("emr-serverless").get_application(applicationId=app_id)["application"]
    assert application["releaseLabel"] == "emr-spark-8.1.0"
    sizes = sorted((m.batch_size, m.report_batch_item_failures) for m in toy_stack.mappings)
    assert sizes == [(1, False), (3, True)]  # BatchSize 3 is the parameter's default, resolved to a number
    assert [s.expression for s in toy_stack.schedules] == ["rate(5 minutes)"]


def test_parameters_override_defaults_and_unknown_ones_are_refused(aws: EmbeddedAws) -> None:
    stack = deploy(aws, TOY_TEMPLATE, stack_name="toy2", parameters={"BatchSize": "7"})
    assert 7 in [m.batch_size for m in stack.mappings]
    with pytest.raises(StackError, match=r"unknown template parameter.*Nope"):
        deploy(aws, TOY_TEMPLATE, stack_name="toy3", parameters={"Nope": "1"})


def test_short_form_intrinsics_are_read(tmp_path) -> None:
    template = tmp_path / "t.yaml"
    template.write_text(
        "Resources:\n  A:\n    Type: X\n    Properties: {B: !GetAtt Q.Arn, C: !Sub '${A}', D: !Ref P}\n"
    )
    props = load_template(template)["Resources"]["A"]["Properties"]
    assert props == {"B": {"Fn::GetAtt": ["Q", "Arn"]}, "C": {"Fn::Sub": "${A}"}, "D": {"Ref": "P"}}
    (tmp_path / "bad.yaml").write_text("Resources: [1]\n")
    with pytest.raises(StackError, match="no Resources mapping"):
        load_template(tmp_path / "bad.yaml")


def test_notifications_are_delivered_in_batches_with_partial_failures_to_the_dlq(
    aws: EmbeddedAws, toy_stack: Stack
) -> None:
    # GIVEN objects dropped under incoming/ (one the toy function fails) and one outside the filter
    s3 = aws.client("s3")
    bucket = toy_stack.outputs["DataBucketName"]
    for key in ("incoming/a b.csv", "incoming/x/fail.csv", "other/z.csv", "incoming/c.csv", "incoming/d.csv"):
        s3.put_object(Bucket=bucket, Key=key, Body=b"1")
    inbox = _inbox(aws, toy_stack)
    # WHEN the poller runs until the queue is empty
    results = []
    while inbox.depth():
        results.append(inbox.poll_once())
    # THEN batches are at most the mapping's size; the good keys were recorded once each
    assert max(r.received for r in results) == 3
    table = toy_stack.functions["RecordFunction"].environment["RECORDS_TABLE"]
    items = aws.client("dynamodb").scan(TableName=table)["Items"]
    keys = sorted(i["pk"]["S"] for i in items)
    assert keys == ["key#incoming/a b.csv", "key#incoming/c.csv", "key#incoming/d.csv"]
    assert {i["deliveries"]["N"] for i in items} == {"1"}
    # AND the failing message was retried until maxReceiveCount (2), then moved to the DLQ by the redrive policy
    sqs = aws.client("sqs")
    dlq = next(u for u in sqs.list_queues()["QueueUrls"] if "InboxDLQ" in u)
    dead = sqs.receive_message(QueueUrl=dlq, AttributeNames=["All"])["Messages"]
    assert len(dead) == 1
    assert "fail.csv" in dead[0]["Body"]
    assert dead[0]["Attributes"]["ApproximateReceiveCount"] in {"2", "3"}  # moto counts the DLQ receive too
    assert sum(r.failed for r in results) == 2


def test_a_handler_exception_fails_the_whole_batch(aws: EmbeddedAws, toy_stack: Stack) -> None:
    inbox = _inbox(aws, toy_stack)
    aws.client("sqs").send_message(QueueUrl=inbox.mapping.queue_url, MessageBody="not json")
    # the batch holds the s3:TestEvent sent when the notification was configured and the bad message
    result = inbox.poll_once()
    assert (result.received, result.failed) == (2, 2)
    assert "JSONDecodeError" in result.errors[0]
    assert inbox.poll_once().failed == 2  # both retried: an exception reports no partial success
    while inbox.depth():  # the next receive finds them past maxReceiveCount: SQS moves them to the DLQ
        assert inbox.poll_once().succeeded == 0
    sqs = aws.client("sqs")
    dlq = next(u for u in sqs.list_queues()["QueueUrls"] if "InboxDLQ" in u)
    dead = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["All"])["Attributes"]
    assert dead["ApproximateNumberOfMessages"] == "2"


def test_schedule_invokes_the_function_with_a_scheduled_event(aws: EmbeddedAws, toy_stack: Stack) -> None:
    functions = load_functions(toy_stack.functions, aws, None)
    schedule = toy_stack.schedules[0]
    invocation = functions[schedule.function].invoke(scheduled_event(schedule, aws.region, aws.account_id))
    assert invocation.error is None
    assert invocation.response == {"ticked": True}
    assert json.dumps(invocation.response)


def test_a_missing_code_directory_is_named(aws: EmbeddedAws, tmp_path) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(TOY_TEMPLATE.read_text())
    with pytest.raises(StackError, match=r"RecordFunction: CodeUri record/ is not a directory"):
        deploy(aws, template, stack_name="nocode")


def test_a_handler_that_does_not_exist_is_named(aws: EmbeddedAws, tmp_path) -> None:
    (tmp_path / "record").mkdir()
    (tmp_path / "record" / "other.py").write_text("def handler(event, context):\n    return None\n")
    template = tmp_path / "template.yaml"
    template.write_text(TOY_TEMPLATE.read_text())
    stack = deploy(aws, template, stack_name="nohandler")
    with pytest.raises(FileNotFoundError, match=r"handler app.handler needs .*record/app.py"):
        load_functions(stack.functions, aws, None)
