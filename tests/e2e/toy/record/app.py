"""Toy handler for the runtime's tests: records what it is given; fails S3 keys containing 'fail'."""

import json
import os
from urllib.parse import unquote_plus

import boto3

TABLE = boto3.resource("dynamodb").Table(os.environ["RECORDS_TABLE"])  # read at import, like the real functions
EMR = boto3.client("emr-serverless")


def handler(event, context):
    if event.get("source") == "aws.events":
        TABLE.put_item(Item={"pk": f"tick#{context.aws_request_id}", "kind": "tick"})
        return {"ticked": True}
    failures = []
    for record in event["Records"]:
        body = json.loads(record["body"])
        if body.get("source") == "aws.emr-serverless":
            detail = body["detail"]
            run = EMR.get_job_run(applicationId=detail["applicationId"], jobRunId=detail["jobRunId"])["jobRun"]
            item = {"pk": f"run#{detail['jobRunId']}", "event_state": detail["state"], "api_state": run["state"]}
            TABLE.put_item(Item=item)
            continue
        for s3_record in body.get("Records", []):
            key = unquote_plus(s3_record["s3"]["object"]["key"])
            if "fail" in key:
                failures.append({"itemIdentifier": record["messageId"]})
                continue
            TABLE.update_item(
                Key={"pk": f"key#{key}"},
                UpdateExpression="ADD deliveries :one SET batch_size = :n",
                ExpressionAttributeValues={":one": 1, ":n": len(event["Records"])},
            )
    return {"batchItemFailures": failures}
