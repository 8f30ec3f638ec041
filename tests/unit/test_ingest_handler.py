"""IngestFunction end to end against moto (S3, SQS, DynamoDB, EMR Serverless), driven by the files in events/."""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dropzone.ledger import Ledger

REGION = "us-east-1"
CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
HEADER = "order_id,customer_id,order_ts,product_id,amount,quantity,returned,review_text\n"
GOOD_CSV = (
    HEADER
    + "O000001,C000001,2026-10-01T10:00:00Z,P00001,12.50,1,false,great\n"
    + "O000002,C000002,2026-10-02T11:30:00Z,P00002,99.00,2,true,broke after a week\n"
    + "O000003,C000001,2026-10-03T08:15:00Z,P00003,5.25,3,false,\n"
).encode()
# The amount column is missing: a schema error the validator must quarantine.
BAD_CSV = (
    b"order_id,customer_id,order_ts,product_id,quantity,returned,review_text\n"
    b"O000001,C000001,2026-10-01T10:00:00Z,P00001,1,false,great\n"
)


@pytest.fixture
def env(
    moto_aws: None, data_bucket: str, ledger_table: str, emr_application: str, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_bucket_versioning(Bucket=data_bucket, VersioningConfiguration={"Status": "Enabled"})
    for path in sorted(CONTRACTS.glob("*.yaml")):
        s3.put_object(Bucket=data_bucket, Key=f"assets/contracts/{path.name}", Body=path.read_bytes())
    variables = {
        "DATA_BUCKET": data_bucket,
        "LEDGER_TABLE": ledger_table,
        "EMR_APPLICATION_ID": emr_application,
        "EMR_JOB_ROLE_ARN": "arn:aws:iam::123456789012:role/dropzone-emr-job",
        "EMR_MAX_VCPU": "16",
        "SPARK_ENTRY_POINT": f"s3://{data_bucket}/assets/spark/main.py",
        "SPARK_PY_FILES": f"s3://{data_bucket}/assets/spark/spark_app.zip",
        "POWERTOOLS_SERVICE_NAME": "ingest",
        "POWERTOOLS_METRICS_NAMESPACE": "dropzone",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return {
        "bucket": data_bucket,
        "s3": s3,
        "ledger": Ledger(ledger_table, boto3.client("dynamodb", region_name=REGION)),
        "emr": boto3.client("emr-serverless", region_name=REGION),
        "application": emr_application,
    }


@pytest.fixture
def app(env: dict[str, Any]) -> Iterator[ModuleType]:
    """functions/ingest/app.py imported fresh inside moto, as a new Lambda container would."""
    import functions.ingest.app as module

    return importlib.reload(module)


@pytest.fixture
def validations(app: ModuleType) -> list[str]:
    """Counts calls of the real validator (names of the files validated)."""
    real = app.ingestor.validator
    seen: list[str] = []

    def counting(stream: Any, **kwargs: Any) -> Any:
        seen.append(kwargs["name"])
        return real(stream, **kwargs)

    app.ingestor._validator = counting
    return seen


def put(env: dict[str, Any], key: str, body: bytes) -> dict[str, Any]:
    answer = env["s3"].put_object(Bucket=env["bucket"], Key=key, Body=body)
    return {"key": key, "size": len(body), "eTag": answer["ETag"].strip('"'), "versionId": answer.get("VersionId")}


def s3_event(
    load_event: Callable[[str], dict[str, Any]], name: str, bucket: str, obj: dict[str, Any] | None = None
) -> dict[str, Any]:
    """An event from events/ with its bucket, and (when given) key/size/eTag/versionId, rewritten for moto."""
    event = load_event(name)
    for message in event["Records"]:
        body = json.loads(message["body"])
        for record in body.get("Records", []):
            record["s3"]["bucket"]["name"] = bucket
            record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
            if obj is not None:
                target = record["s3"]["object"]
                if obj.get("key") is not None:
                    target["key"] = quote_plus(obj["key"], safe="/")
                for field in ("size", "eTag", "versionId"):
                    if obj.get(field) is not None:
                        target[field] = obj[field]
                    else:
                        target.pop(field, None)
        message["body"] = json.dumps(body)
    return event


def sqs_batch(*events: dict[str, Any]) -> dict[str, Any]:
    """Several single-message events as one SQS batch (distinct message ids)."""
    records = []
    for i, event in enumerate(events):
        for message in event["Records"]:
            records.append({**message, "messageId": f"msg-{i:04d}"})
    return {"Records": records}


def files(env: dict[str, Any], dataset: str = "orders") -> list[dict[str, Any]]:
    return list(env["ledger"].query_dataset(dataset, "FILE#"))


def get_json(env: dict[str, Any], key: str) -> dict[str, Any]:
    return dict(json.loads(env["s3"].get_object(Bucket=env["bucket"], Key=key)["Body"].read()))


def exists(env: dict[str, Any], key: str) -> bool:
    try:
        env["s3"].head_object(Bucket=env["bucket"], Key=key)
    except env["s3"].exceptions.ClientError:
        return False
    return True


def emf_documents(output: str) -> list[dict[str, Any]]:
    documents = []
    for line in output.splitlines():
        if line.startswith("{") and '"_aws"' in line:
            documents.append(json.loads(line))
    return documents


def test_accepted_file_is_reported_and_recorded(
    app: ModuleType, env: dict[str, Any], load_event: Any, lambda_context: Any, validations: list[str], capsys: Any
) -> None:
    # GIVEN a valid orders file and its notification
    obj = put(env, "incoming/orders/2026/11/20/orders-0001.csv", GOOD_CSV)
    event = s3_event(load_event, "ingest_accepted", env["bucket"], obj)
    # WHEN the function receives it
    response = app.handler(event, lambda_context)
    # THEN no failure, one ACCEPTED entry keyed on the object version, a report, no quarantine copy
    assert response == {"batchItemFailures": []}
    [entry] = files(env)
    assert entry["status"] == "ACCEPTED"
    assert entry["key"] == obj["key"]
    assert entry["version"] == obj["versionId"]
    assert entry["rows"] == 3
    assert entry["bad_rows"] == 0
    assert entry["size"] == len(GOOD_CSV)
    assert entry["report_key"] == f"reports/orders/2026/11/20/orders-0001.csv/{obj['versionId']}.json"
    report = get_json(env, entry["report_key"])
    assert report["decision"] == "ACCEPTED"
    assert report["version"] == obj["versionId"]
    assert not exists(env, "quarantine/orders/2026/11/20/orders-0001.csv")
    assert validations == [obj["key"]]
    # and the metrics carry the dataset dimension
    [document] = [d for d in emf_documents(capsys.readouterr().out) if "FilesAccepted" in d]
    assert document["dataset"] == "orders"
    assert document["FilesAccepted"] == [1.0]
    assert document["RowsRead"] == [3.0]
    assert document["FilesQuarantined"] == [0.0]
    assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "dropzone"


def test_quarantined_file_is_copied_and_the_original_stays(
    app: ModuleType, env: dict[str, Any], load_event: Any, lambda_context: Any
) -> None:
    # GIVEN a file missing a required column
    obj = put(env, "incoming/orders/2026/11/20/orders-bad.csv", BAD_CSV)
    event = s3_event(load_event, "ingest_quarantined", env["bucket"], obj)
    # WHEN the function receives it
    response = app.handler(event, lambda_context)
    # THEN QUARANTINED with the reason, a copy under quarantine/, and the original untouched
    assert response == {"batchItemFailures": []}
    [entry] = files(env)
    assert entry["status"] == "QUARANTINED"
    assert any("amount" in reason for reason in entry["reasons"])
    report = get_json(env, f"reports/orders/2026/11/20/orders-bad.csv/{obj['versionId']}.json")
    assert report["decision"] == "QUARANTINED"
    assert report["reasons"]
    copy = env["s3"].get_object(Bucket=env["bucket"], Key="quarantine/orders/2026/11/20/orders-bad.csv")
    assert copy["Body"].read() == BAD_CSV
    original = env["s3"].get_object(Bucket=env["bucket"], Key=obj["key"], VersionId=obj["versionId"])
    assert original["Body"].read() == BAD_CSV


def test_key_with_spaces_and_plus_is_decoded(
    app: ModuleType, env: dict[str, Any], load_event: Any, lambda_context: Any
) -> None:
    # GIVEN the event file's key exactly as S3 encodes it, and the object under the decoded key
    raw = json.loads(load_event("ingest_key_with_spaces")["Records"][0]["body"])["Records"][0]["s3"]["object"]["key"]
    key = unquote_plus(raw)
    assert key == "incoming/orders/2026/11/20/spring sale+promo (v2).csv"
    obj = put(env, key, GOOD_CSV)
    event = s3_event(load_event, "ingest_key_with_spaces", env["bucket"], {**obj, "key": None})
    assert json.loads(event["Records"][0]["body"])["Records"][0]["s3"]["object"]["key"] == raw
    # WHEN the function receives it
    response = app.handler(event, lambda_context)
    # THEN the file is found and recorded under its real key
    assert response == {"batchItemFailures": []}
    [entry] = files(env)
    assert entry["key"] == key
    assert entry["status"] == "ACCEPTED"
    assert exists(env, f"reports/orders/2026/11/20/spring sale+promo (v2).csv/{obj['versionId']}.json")


def test_s3_test_event_is_skipped(app: ModuleType, env: dict[str, Any], load_event: Any, lambda_context: Any) -> None:
    response = app.handler(load_event("ingest_test_event"), lambda_context)
    assert response == {"batchItemFailures": []}
    assert list(env["ledger"].query_dataset("orders")) == []
    assert "Contents" not in env["s3"].list_objects_v2(Bucket=env["bucket"], Prefix="reports/")


def test_unknown_dataset_is_recorded_skipped_once_and_not_retried(
    app: ModuleType, env: dict[str, Any], load_event: Any, lambda_context: Any, validations: list[str]
) -> None:
    # GIVEN a file under a prefix that has no contract
    obj = put(env, "incoming/widgets/w.csv", GOOD_CSV)
    event = s3_event(load_event, "ingest_accepted", env["bucket"], obj)
    # WHEN it is delivered twice
    first = app.handler(event, lambda_context)
    second = app.handler(event, lambda_context)
    # THEN the message succeeds (not retried forever), one SKIPPED entry with the reason, a report, no validation
    assert first == second == {"batchItemFailures": []}
    [entry] = files(env, "widgets")
    assert entry["status"] == "SKIPPED"
    assert "unknown dataset 'widgets'" in entry["reasons"][0]
    report = get_json(env, f"reports/widgets/w.csv/{obj['versionId']}.json")
    assert report["decision"] == "SKIPPED"
    assert validations == []


def test_same_notification_five_times_leaves_one_entry_and_validates_once(
    app: ModuleType, env: dict[str, Any], load_event: Any, lambda_context: Any, validations: list[str], capsys: Any
) -> None:
    # GIVEN one file
    obj = put(env, "incoming/orders/2026/11/20/orders-0001.csv", GOOD_CSV)
    event = s3_event(load_event, "ingest_accepted", env["bucket"], obj)
    # WHEN the same notification is delivered 5 times
    responses = [app.handler(event, lambda_context) for _ in range(5)]
    # THEN every delivery succeeds, one ledger entry, one validation, the metrics counted once
    assert responses == [{"batchItemFailures": []}] * 5
    assert len(files(env)) == 1
    assert validations == [obj["key"]]
    accepted = [d for d in emf_documents(capsys.readouterr().out) if "FilesAccepted" in d]
    assert len(accepted) == 1


def test_a_new_version_of_the_same_key_is_a_new_file(
    app: ModuleType, env: dict[str, Any], load_event: Any, lambda_context: Any, validations: list[str]
) -> None:
    first = put(env, "incoming/orders/2026/11/20/orders-0001.csv", GOOD_CSV)
    app.handler(s3_event(load_event, "ingest_accepted", env["bucket"], first), lambda_context)
    second = put(env, "incoming/orders/2026/11/20/orders-0001.csv", BAD_CSV)
    app.handler(s3_event(load_event, "ingest_accepted", env["bucket"], second), lambda_context)
    assert sorted((f["version"], f["status"]) for f in files(env)) == sorted(
        [(first["versionId"], "ACCEPTED"), (second["versionId"], "QUARANTINED")]
    )
    assert len(validations) == 2


def test_failed_ledger_write_after_the_report_is_finished_by_the_redelivery(
    app: ModuleType,
    env: dict[str, Any],
    load_event: Any,
    lambda_context: Any,
    validations: list[str],
    record_calls: Any,
) -> None:
    # GIVEN the ledger write of the decision fails (after the report and the quarantine copy were written)
    obj = put(env, "incoming/orders/2026/11/20/orders-bad.csv", BAD_CSV)
    event = s3_event(load_event, "ingest_quarantined", env["bucket"], obj)
    record_calls(app.ledger.client, "UpdateItem").fail_next("InternalServerError")
    # WHEN the message is processed: it fails, its claim is given back; then SQS redelivers it
    failed = app.handler(event, lambda_context)
    assert failed == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert files(env) == []
    assert exists(env, f"reports/orders/2026/11/20/orders-bad.csv/{obj['versionId']}.json")
    redelivered = app.handler(event, lambda_context)
    # THEN the redelivery records the decision from the report without validating again
    assert redelivered == {"batchItemFailures": []}
    [entry] = files(env)
    assert entry["status"] == "QUARANTINED"
    assert "claim_owner" not in entry
    assert validations == [obj["key"]]
    assert exists(env, "quarantine/orders/2026/11/20/orders-bad.csv")


def _claim(env: dict[str, Any], obj: dict[str, Any], expires_at: int) -> None:
    """What a worker that is validating the file (or died doing it) leaves in the ledger."""
    env["ledger"].record_file(
        "orders",
        {
            "bucket": env["bucket"],
            "key": obj["key"],
            "version": obj["versionId"],
            "status": "VALIDATING",
            "claim_owner": "another-worker",
            "claim_expires_at": expires_at,
        },
    )


def test_a_file_another_worker_is_validating_is_not_validated_twice(
    app: ModuleType, env: dict[str, Any], load_event: Any, lambda_context: Any, validations: list[str]
) -> None:
    # GIVEN a duplicate notification arrives while another worker holds the file's claim
    obj = put(env, "incoming/orders/2026/11/20/orders-0001.csv", GOOD_CSV)
    _claim(env, obj, expires_at=int(time.time()) + 600)
    event = s3_event(load_event, "ingest_accepted", env["bucket"], obj)
    # WHEN it is processed THEN the message fails for a later retry, nothing is validated or changed
    response = app.handler(event, lambda_context)
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert validations == []
    [entry] = files(env)
    assert entry["status"] == "VALIDATING"
    assert entry["claim_owner"] == "another-worker"


def test_the_claim_of_a_dead_worker_is_taken_over_and_its_report_reused(
    app: ModuleType, env: dict[str, Any], load_event: Any, lambda_context: Any, validations: list[str]
) -> None:
    # GIVEN a worker wrote the report and then died (timeout) holding the claim, which has expired since
    obj = put(env, "incoming/orders/2026/11/20/orders-0001.csv", GOOD_CSV)
    event = s3_event(load_event, "ingest_accepted", env["bucket"], obj)
    assert app.handler(event, lambda_context) == {"batchItemFailures": []}
    assert validations == [obj["key"]]
    env["ledger"].client.delete_item(
        TableName=env["ledger"].table_name,
        Key={"pk": {"S": "DATASET#orders"}, "sk": {"S": files(env)[0]["sk"]}},
    )
    _claim(env, obj, expires_at=int(time.time()) - 1)
    # WHEN SQS redelivers the message
    response = app.handler(event, lambda_context)
    # THEN the file is finished from the report: ACCEPTED, one entry, no second validation
    assert response == {"batchItemFailures": []}
    [entry] = files(env)
    assert entry["status"] == "ACCEPTED"
    assert entry["rows"] == 3
    assert "claim_owner" not in entry
    assert validations == [obj["key"]]


@pytest.mark.parametrize(
    "key",
    [
        "incoming/orders/2026/11/20/",  # folder marker
        "reports/orders/2026/11/20/orders-0001.csv/v1.json",  # not under incoming/
        "incoming/orders-without-dataset-folder.csv",  # no dataset prefix
    ],
)
def test_non_data_keys_are_ignored(
    app: ModuleType, env: dict[str, Any], load_event: Any, lambda_context: Any, validations: list[str], key: str
) -> None:
    obj = put(env, key, b"")
    response = app.handler(s3_event(load_event, "ingest_accepted", env["bucket"], obj), lambda_context)
    assert response == {"batchItemFailures": []}
    assert list(env["ledger"].query_dataset("orders")) == []
    assert validations == []


def test_an_object_deleted_before_processing_is_skipped(
    app: ModuleType, env: dict[str, Any], load_event: Any, lambda_context: Any, validations: list[str]
) -> None:
    # GIVEN a notification for an object version that was deleted since
    obj = put(env, "incoming/orders/2026/11/20/orders-0001.csv", GOOD_CSV)
    env["s3"].delete_object(Bucket=env["bucket"], Key=obj["key"], VersionId=obj["versionId"])
    response = app.handler(s3_event(load_event, "ingest_accepted", env["bucket"], obj), lambda_context)
    # THEN the message succeeds and nothing is recorded
    assert response == {"batchItemFailures": []}
    assert files(env) == []
    assert validations == []


def test_a_broken_contract_fails_the_message_with_the_problem_named(
    app: ModuleType, env: dict[str, Any], load_event: Any, lambda_context: Any, caplog: Any
) -> None:
    # GIVEN the published orders contract is broken
    env["s3"].put_object(
        Bucket=env["bucket"], Key="assets/contracts/orders.yaml", Body=b"dataset: orders\ncolumns: 3\n"
    )
    obj = put(env, "incoming/orders/2026/11/20/orders-0001.csv", GOOD_CSV)
    event = s3_event(load_event, "ingest_accepted", env["bucket"], obj)
    # WHEN the file arrives THEN the message fails (kept for retry and the DLQ), nothing is recorded
    response = app.handler(event, lambda_context)
    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert files(env) == []
    with pytest.raises(Exception, match=r"s3://.*/assets/contracts/orders.yaml: columns"):
        app.contracts.get("orders")


def test_a_body_that_is_not_an_s3_notification_fails_its_message_only(
    app: ModuleType, env: dict[str, Any], load_event: Any, lambda_context: Any
) -> None:
    good = s3_event(load_event, "ingest_accepted", env["bucket"], put(env, "incoming/orders/a.csv", GOOD_CSV))
    bad = load_event("ingest_accepted")
    bad["Records"][0]["body"] = "not json"
    batch = sqs_batch(good, bad)
    response = app.handler(batch, lambda_context)
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-0001"}]}
    assert len(files(env)) == 1


def test_contract_is_cached_per_container_and_refreshed_when_it_changes(
    app: ModuleType, env: dict[str, Any], load_event: Any, lambda_context: Any
) -> None:
    for i in range(3):
        obj = put(env, f"incoming/orders/2026/11/20/orders-{i}.csv", GOOD_CSV)
        app.handler(s3_event(load_event, "ingest_accepted", env["bucket"], obj), lambda_context)
    assert app.contracts.parsed == 1
    # WHEN the deploy publishes a new contract version THEN the next file reads it
    text = (CONTRACTS / "orders.yaml").read_text().replace("min_files: 10", "min_files: 50")
    env["s3"].put_object(Bucket=env["bucket"], Key="assets/contracts/orders.yaml", Body=text.encode())
    obj = put(env, "incoming/orders/2026/11/20/orders-9.csv", GOOD_CSV)
    app.handler(s3_event(load_event, "ingest_accepted", env["bucket"], obj), lambda_context)
    assert app.contracts.parsed == 2
    contract = app.contracts.get("orders")
    assert contract is not None
    assert contract.batching.min_files == 50


def test_parquet_is_read_with_ranged_gets(
    app: ModuleType, env: dict[str, Any], load_event: Any, lambda_context: Any, tmp_path: Path
) -> None:
    # GIVEN a valid orders Parquet file
    table = pa.table(
        {
            "order_id": ["O000001", "O000002"],
            "customer_id": ["C000001", "C000002"],
            "order_ts": pa.array([1_790_000_000_000_000, 1_790_000_100_000_000], pa.timestamp("us", tz="UTC")),
            "product_id": ["P00001", "P00002"],
            "amount": [10.0, 20.5],
            "quantity": pa.array([1, 2], pa.int64()),
            "returned": [False, True],
            "review_text": ["ok", None],
        }
    )
    path = tmp_path / "orders.parquet"
    pq.write_table(table, path)
    obj = put(env, "incoming/orders/2026/11/20/orders.parquet", path.read_bytes())
    gets: list[dict[str, Any]] = []
    app.s3.meta.events.register("provide-client-params.s3.GetObject", lambda params, **_: gets.append(dict(params)))
    # WHEN it arrives
    response = app.handler(s3_event(load_event, "ingest_accepted", env["bucket"], obj), lambda_context)
    # THEN it is accepted, and the object was read by ranges of that version only
    assert response == {"batchItemFailures": []}
    [entry] = files(env)
    assert entry["status"] == "ACCEPTED"
    assert entry["format"] == "parquet"
    reads = [g for g in gets if g["Key"] == obj["key"]]
    assert reads
    assert all(g["Range"].startswith("bytes=") and g["VersionId"] == obj["versionId"] for g in reads)


def test_tenth_accepted_file_starts_exactly_one_run(
    app: ModuleType, env: dict[str, Any], load_event: Any, lambda_context: Any
) -> None:
    # GIVEN 10 valid files (orders: min_files 10) delivered in one SQS batch
    events = [
        s3_event(load_event, "ingest_accepted", env["bucket"], put(env, f"incoming/orders/d/f{i:02d}.csv", GOOD_CSV))
        for i in range(10)
    ]
    # WHEN the function processes the batch
    response = app.handler(sqs_batch(*events), lambda_context)
    # THEN one run was started for the 10 files, and they are BATCHED
    assert response == {"batchItemFailures": []}
    runs = env["emr"].list_job_runs(applicationId=env["application"])["jobRuns"]
    assert len(runs) == 1
    assert {f["status"] for f in files(env)} == {"BATCHED"}


def test_throttled_start_job_run_fails_the_message_and_the_redelivery_starts_the_run_once(
    app: ModuleType, env: dict[str, Any], load_event: Any, lambda_context: Any, record_calls: Any
) -> None:
    # GIVEN 10 valid files in one SQS batch, and StartJobRun throttled once
    events = [
        s3_event(load_event, "ingest_accepted", env["bucket"], put(env, f"incoming/orders/d/f{i:02d}.csv", GOOD_CSV))
        for i in range(10)
    ]
    calls = record_calls(app.emr, "StartJobRun")
    calls.fail_next("ThrottlingException")
    batch = sqs_batch(*events)
    # WHEN the batch is processed THEN the message whose file completed the batch is reported failed
    response = app.handler(batch, lambda_context)
    assert response == {"batchItemFailures": [{"itemIdentifier": "msg-0009"}]}
    assert len(files(env)) == 10
    # WHEN SQS redelivers that message
    redelivered = app.handler({"Records": [batch["Records"][9]]}, lambda_context)
    # THEN the run starts exactly once, with the same clientToken as the throttled call
    assert redelivered == {"batchItemFailures": []}
    runs = env["emr"].list_job_runs(applicationId=env["application"])["jobRuns"]
    assert len(runs) == 1
    tokens = [c["clientToken"] for c in calls.calls]
    assert len(tokens) == 2
    assert tokens[0] == tokens[1]
    assert {f["status"] for f in files(env)} == {"BATCHED"}


def test_real_s3_notification_through_sqs(
    app: ModuleType, env: dict[str, Any], lambda_context: Any, validations: list[str]
) -> None:
    # GIVEN the bucket notifies an SQS queue for incoming/ (moto encodes keys with quote_plus, '/' as %2F)
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName="dropzone-ingest")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    env["s3"].put_bucket_notification_configuration(
        Bucket=env["bucket"],
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*"],
                    "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "incoming/"}]}},
                }
            ]
        },
    )
    # WHEN a producer uploads a file with a space in its name
    put(env, "incoming/orders/2026/11/20/my orders.csv", GOOD_CSV)
    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    data_messages = [m for m in messages if "ObjectCreated" in m["Body"]]
    event = {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {},
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for m in data_messages
        ]
    }
    response = app.handler(event, lambda_context)
    # THEN the file is validated and recorded under its real key
    assert response == {"batchItemFailures": []}
    [entry] = files(env)
    assert entry["key"] == "incoming/orders/2026/11/20/my orders.csv"
    assert entry["status"] == "ACCEPTED"
    assert validations == ["incoming/orders/2026/11/20/my orders.csv"]


def test_a_file_in_a_format_the_contract_does_not_take_is_quarantined(
    app: ModuleType, env: dict[str, Any], load_event: Any, lambda_context: Any
) -> None:
    # GIVEN a producer drops a spreadsheet export under incoming/orders/
    obj = put(env, "incoming/orders/2026/11/20/orders.xlsx", b"PK\x03\x04 not a csv")
    response = app.handler(s3_event(load_event, "ingest_accepted", env["bucket"], obj), lambda_context)
    # THEN it is quarantined with a reason, not retried and not lost
    assert response == {"batchItemFailures": []}
    [entry] = files(env)
    assert entry["status"] == "QUARANTINED"
    assert entry["reasons"]
    assert exists(env, "quarantine/orders/2026/11/20/orders.xlsx")


def test_a_report_that_cannot_be_read_back_is_no_obstacle(
    app: ModuleType, env: dict[str, Any], load_event: Any, lambda_context: Any, record_calls: Any
) -> None:
    # GIVEN S3 answers 403 for the missing report (the role has no s3:ListBucket, so no 404)
    obj = put(env, "incoming/orders/2026/11/20/orders-0001.csv", GOOD_CSV)
    gets = record_calls(app.s3, "GetObject")
    gets.fail_next("AccessDenied", where=lambda params: params["Key"].startswith("reports/"))
    # WHEN the file arrives THEN it is validated and recorded as usual
    response = app.handler(s3_event(load_event, "ingest_accepted", env["bucket"], obj), lambda_context)
    assert response == {"batchItemFailures": []}
    [entry] = files(env)
    assert entry["status"] == "ACCEPTED"
    assert f"reports/orders/2026/11/20/orders-0001.csv/{obj['versionId']}.json" in [c["Key"] for c in gets.calls]


@pytest.fixture
def unversioned(env: dict[str, Any]) -> str:
    """A second bucket without versioning: files are identified by their ETag there."""
    env["s3"].create_bucket(Bucket="producer-drop")
    return "producer-drop"


def test_in_an_unversioned_bucket_the_etag_identifies_the_file(
    app: ModuleType, env: dict[str, Any], load_event: Any, lambda_context: Any, unversioned: str
) -> None:
    answer = env["s3"].put_object(Bucket=unversioned, Key="incoming/orders/a.csv", Body=GOOD_CSV)
    etag = answer["ETag"].strip('"')
    obj = {"key": "incoming/orders/a.csv", "size": len(GOOD_CSV), "eTag": etag}
    event = s3_event(load_event, "ingest_accepted", unversioned, obj)
    assert app.handler(event, lambda_context) == {"batchItemFailures": []}
    assert app.handler(event, lambda_context) == {"batchItemFailures": []}
    [entry] = files(env)
    assert entry["bucket"] == unversioned
    assert entry["version"] == etag
    assert "version_id" not in entry
    assert entry["status"] == "ACCEPTED"


def test_an_object_overwritten_since_its_event_is_left_to_the_newer_event(
    app: ModuleType, env: dict[str, Any], load_event: Any, lambda_context: Any, unversioned: str, validations: list[str]
) -> None:
    # GIVEN the notified content was replaced by a producer before the function ran (unversioned bucket)
    old = env["s3"].put_object(Bucket=unversioned, Key="incoming/orders/a.csv", Body=BAD_CSV)["ETag"].strip('"')
    env["s3"].put_object(Bucket=unversioned, Key="incoming/orders/a.csv", Body=GOOD_CSV)
    obj = {"key": "incoming/orders/a.csv", "size": len(BAD_CSV), "eTag": old}
    # WHEN the old notification is processed THEN nothing is validated or recorded for content that is gone
    response = app.handler(s3_event(load_event, "ingest_accepted", unversioned, obj), lambda_context)
    assert response == {"batchItemFailures": []}
    assert files(env) == []
    assert validations == []


def test_two_versions_of_one_key_keep_their_own_reports(
    app: ModuleType, env: dict[str, Any], load_event: Any, lambda_context: Any
) -> None:
    # GIVEN a good file, then a bad overwrite of the same key (versioned bucket), each notified
    key = "incoming/orders/2026/11/20/daily.csv"
    first = put(env, key, GOOD_CSV)
    assert app.handler(s3_event(load_event, "ingest_accepted", env["bucket"], first), lambda_context)
    second = put(env, key, BAD_CSV)
    assert app.handler(s3_event(load_event, "ingest_accepted", env["bucket"], second), lambda_context)
    # THEN two ledger entries, each with its own report, which still says what happened to that version
    entries = {e["version"]: e for e in files(env)}
    assert set(entries) == {first["versionId"], second["versionId"]}
    for obj, decision in ((first, "ACCEPTED"), (second, "QUARANTINED")):
        entry = entries[obj["versionId"]]
        assert entry["status"] == decision
        assert entry["report_key"] == f"reports/orders/2026/11/20/daily.csv/{obj['versionId']}.json"
        report = get_json(env, entry["report_key"])
        assert (report["decision"], report["version"]) == (decision, obj["versionId"])


def test_in_an_unversioned_bucket_the_report_is_named_by_etag(
    app: ModuleType, env: dict[str, Any], load_event: Any, lambda_context: Any, unversioned: str
) -> None:
    answer = env["s3"].put_object(Bucket=unversioned, Key="incoming/orders/a.csv", Body=GOOD_CSV)
    etag = answer["ETag"].strip('"')
    obj = {"key": "incoming/orders/a.csv", "size": len(GOOD_CSV), "eTag": etag}
    assert app.handler(s3_event(load_event, "ingest_accepted", unversioned, obj), lambda_context)
    [entry] = files(env)
    assert entry["report_key"] == f"reports/orders/a.csv/{etag}.json"
    assert get_json(env, entry["report_key"])["version"] == etag


def _publish_widgets_contract(env: dict[str, Any]) -> None:
    """A contract for the dataset 'widgets' (the orders columns under another name), as a later deploy adds it."""
    text = (CONTRACTS / "orders.yaml").read_text().replace("dataset: orders", "dataset: widgets")
    env["s3"].put_object(Bucket=env["bucket"], Key="assets/contracts/widgets.yaml", Body=text.encode())


def _redriven_event(sqs: Any, url: str, load_event: Any) -> dict[str, Any]:
    """The messages waiting on the queue as the SQS event Lambda would deliver (envelope from events/)."""
    template = load_event("ingest_accepted")["Records"][0]
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return {"Records": [{**template, "messageId": m["MessageId"], "body": m["Body"]} for m in messages]}


def test_a_file_skipped_for_want_of_a_contract_is_validated_once_the_contract_is_published(
    app: ModuleType, env: dict[str, Any], load_event: Any, lambda_context: Any, validations: list[str]
) -> None:
    from datetime import UTC, datetime

    from dropzone.ingest import redrive_skipped

    # GIVEN a file (key with a space and a plus) SKIPPED because its dataset had no contract yet
    obj = put(env, "incoming/widgets/day 1/w+1.csv", GOOD_CSV)
    assert app.handler(s3_event(load_event, "ingest_accepted", env["bucket"], obj), lambda_context)
    [skipped] = files(env, "widgets")
    assert skipped["status"] == "SKIPPED"
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="ingest")["QueueUrl"]
    now = datetime.now(UTC)
    # WHEN the contract is published and the reconciler redrives the dataset's skipped files
    _publish_widgets_contract(env)
    assert redrive_skipped(env["ledger"], sqs, url, "widgets", now=now) == [skipped["sk"]]
    event = _redriven_event(sqs, url, load_event)
    assert app.handler(event, lambda_context) == {"batchItemFailures": []}
    # THEN its one ledger entry moved to ACCEPTED (validated once), its report says so, and it waits for a batch
    [entry] = files(env, "widgets")
    assert (entry["sk"], entry["status"], entry["rows"]) == (skipped["sk"], "ACCEPTED", 3)
    assert validations == [obj["key"]]
    assert get_json(env, entry["report_key"])["decision"] == "ACCEPTED"
    assert [f["sk"] for f in env["ledger"].files_waiting("widgets")] == [entry["sk"]]
    # and the same redrive delivered again, or a later reconciler pass, changes nothing
    assert app.handler(event, lambda_context) == {"batchItemFailures": []}
    assert redrive_skipped(env["ledger"], sqs, url, "widgets", now=now) == []
    assert [(e["sk"], e["status"]) for e in files(env, "widgets")] == [(entry["sk"], "ACCEPTED")]
    assert validations == [obj["key"]]


def test_a_redriven_file_whose_validation_fails_stays_skipped_for_the_next_redrive(
    app: ModuleType, env: dict[str, Any], load_event: Any, lambda_context: Any, record_calls: Any
) -> None:
    from datetime import UTC, datetime, timedelta

    from dropzone.ingest import redrive_skipped

    # GIVEN a skipped file, its contract published, and its redrive message
    obj = put(env, "incoming/widgets/w.csv", GOOD_CSV)
    assert app.handler(s3_event(load_event, "ingest_accepted", env["bucket"], obj), lambda_context)
    _publish_widgets_contract(env)
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="ingest")["QueueUrl"]
    now = datetime.now(UTC)
    assert len(redrive_skipped(env["ledger"], sqs, url, "widgets", now=now)) == 1
    event = _redriven_event(sqs, url, load_event)
    # WHEN recording its decision fails
    record_calls(app.ledger.client, "UpdateItem").fail_next(
        "InternalServerError", where=lambda params: "claim_owner" in str(params.get("ConditionExpression"))
    )
    failed = app.handler(event, lambda_context)
    # THEN the message fails (SQS retries it) and the file is SKIPPED again, not lost from the ledger
    assert failed == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    [entry] = files(env, "widgets")
    assert entry["status"] == "SKIPPED"
    assert [f["sk"] for f in env["ledger"].files_skipped("widgets")] == [entry["sk"]]
    # and it is not sent twice within REDRIVE_AGAIN_AFTER, but again after it
    assert redrive_skipped(env["ledger"], sqs, url, "widgets", now=now + timedelta(minutes=5)) == []
    assert redrive_skipped(env["ledger"], sqs, url, "widgets", now=now + timedelta(hours=3)) == [entry["sk"]]


def test_a_skipped_file_deleted_before_its_redrive_is_not_redriven_again(
    app: ModuleType, env: dict[str, Any], load_event: Any, lambda_context: Any
) -> None:
    from datetime import UTC, datetime, timedelta

    from dropzone.ingest import redrive_skipped

    # GIVEN a skipped file whose version is deleted before its contract is published
    obj = put(env, "incoming/widgets/w.csv", GOOD_CSV)
    assert app.handler(s3_event(load_event, "ingest_accepted", env["bucket"], obj), lambda_context)
    env["s3"].delete_object(Bucket=env["bucket"], Key=obj["key"], VersionId=obj["versionId"])
    _publish_widgets_contract(env)
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="ingest")["QueueUrl"]
    now = datetime.now(UTC)
    # WHEN it is redriven and the ingest function finds nothing to validate
    assert len(redrive_skipped(env["ledger"], sqs, url, "widgets", now=now)) == 1
    assert app.handler(_redriven_event(sqs, url, load_event), lambda_context) == {"batchItemFailures": []}
    # THEN it stays SKIPPED (one entry, with why) and later passes do not send it again
    [entry] = files(env, "widgets")
    assert entry["status"] == "SKIPPED"
    assert "no longer exists" in entry["gone_reason"]
    assert redrive_skipped(env["ledger"], sqs, url, "widgets", now=now + timedelta(days=1)) == []


# ---- the producer is told about a file that was not accepted ----------------------------------------------


@pytest.fixture
def told(env: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Callable[[], list[dict[str, Any]]]:
    """A notification topic for the function (NOTIFY_TOPIC_ARN, set before the app is imported) with a queue
    subscribed; returns a function that drains what was published: the message with its attributes."""
    sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
    topic = sns.create_topic(Name="dropzone-notifications")["TopicArn"]
    queue = sqs.create_queue(QueueName="producer-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    monkeypatch.setenv("NOTIFY_TOPIC_ARN", topic)

    def drain() -> list[dict[str, Any]]:
        found = []
        while messages := sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
            for m in messages:
                envelope = json.loads(m["Body"])
                attributes = {k: v["Value"] for k, v in envelope.get("MessageAttributes", {}).items()}
                found.append(
                    {"subject": envelope["Subject"], "attributes": attributes, **json.loads(envelope["Message"])}
                )
                sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
        return found

    return drain


def test_a_quarantined_file_is_told_to_its_producer_once_with_the_reason_and_where_to_look(
    told: Callable[[], list[dict[str, Any]]], app: ModuleType, env: dict[str, Any], load_event: Any, lambda_context: Any
) -> None:
    # GIVEN a file missing the amount column, delivered twice, and a good file
    obj = put(env, "incoming/orders/2026/11/20/orders-bad.csv", BAD_CSV)
    event = s3_event(load_event, "ingest_quarantined", env["bucket"], obj)
    good = put(env, "incoming/orders/2026/11/20/orders-0001.csv", GOOD_CSV)
    # WHEN the function handles them
    app.handler(event, lambda_context)
    app.handler(event, lambda_context)
    app.handler(s3_event(load_event, "ingest_accepted", env["bucket"], good), lambda_context)
    # THEN one message, for the bad file: what, why, where its report and copy are; filterable by kind and dataset
    (note,) = told()
    assert note["kind"] == "file_quarantined"
    assert note["attributes"] == {"kind": "file_quarantined", "dataset": "orders"}
    assert (
        note["summary"] == "orders file quarantined: incoming/orders/2026/11/20/orders-bad.csv: missing column 'amount'"
    )
    assert (note["key"], note["version"]) == (obj["key"], obj["versionId"])
    assert note["reasons"] == ["missing column 'amount'"]
    report = f"reports/orders/2026/11/20/orders-bad.csv/{obj['versionId']}.json"
    assert note["report"] == f"s3://{env['bucket']}/{report}"
    assert exists(env, report)
    assert note["quarantined_copy"] == f"s3://{env['bucket']}/quarantine/orders/2026/11/20/orders-bad.csv"


def test_a_failure_before_the_decision_is_recorded_tells_the_producer_again_never_not_at_all(
    told: Callable[[], list[dict[str, Any]]],
    app: ModuleType,
    env: dict[str, Any],
    load_event: Any,
    lambda_context: Any,
    record_calls: Any,
) -> None:
    # GIVEN the ledger write of a quarantine decision fails once
    obj = put(env, "incoming/orders/2026/11/20/orders-bad.csv", BAD_CSV)
    event = s3_event(load_event, "ingest_quarantined", env["bucket"], obj)
    record_calls(app.ledger.client, "UpdateItem").fail_next("InternalServerError")
    # WHEN the message fails and SQS delivers it again, twice
    for _ in range(3):
        app.handler(event, lambda_context)
    # THEN the producer was told on the failed attempt and on the one that recorded it, and not after
    assert [n["kind"] for n in told()] == ["file_quarantined", "file_quarantined"]
    assert [f["status"] for f in files(env)] == ["QUARANTINED"]


def test_a_file_of_a_dataset_without_a_contract_is_told_to_its_producer_once(
    told: Callable[[], list[dict[str, Any]]], app: ModuleType, env: dict[str, Any], load_event: Any, lambda_context: Any
) -> None:
    obj = put(env, "incoming/widgets/w.csv", GOOD_CSV)
    event = s3_event(load_event, "ingest_accepted", env["bucket"], obj)
    app.handler(event, lambda_context)
    app.handler(event, lambda_context)
    (note,) = told()
    assert (note["kind"], note["attributes"]["dataset"], note["key"]) == ("file_skipped", "widgets", obj["key"])
    assert note["summary"] == "widgets file skipped: incoming/widgets/w.csv: no contract"
    assert "unknown dataset 'widgets'" in note["reasons"][0]
