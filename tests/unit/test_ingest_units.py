"""Pieces of the ingest step: notification parsing, key layout, S3 streaming and ranged reads (moto S3)."""

from __future__ import annotations

import io
import json
from typing import Any

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

from dropzone.ingest import BadNotification, parse_notification, quarantine_key, report_key, split_key
from dropzone.s3io import RangedReader, open_stream

REGION = "us-east-1"


def _notification(key: str, **obj: Any) -> str:
    record = {"eventTime": "2026-11-20T09:00:00Z", "s3": {"bucket": {"name": "b"}, "object": {"key": key, **obj}}}
    return json.dumps({"Records": [record]})


def test_keys_are_decoded_as_s3_and_moto_encode_them() -> None:
    # S3 encodes a space as '+', '+' as %2B; moto also encodes '/' as %2F
    [aws] = parse_notification(_notification("incoming/orders/a+b%2Bc.csv", size=3, eTag='"abc"', versionId="v1"))
    [moto] = parse_notification(_notification("incoming%2Forders%2Fa+b%2Bc.csv", size=3))
    assert aws.key == moto.key == "incoming/orders/a b+c.csv"
    assert aws.etag == "abc"
    assert aws.version_id == "v1"
    assert moto.version_id is None
    assert aws.size == 3


def test_s3_test_event_has_no_objects() -> None:
    assert parse_notification(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"})) == []


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        (json.dumps({"Message": "an SNS envelope"}), "no Records list"),
        (json.dumps({"Records": [{"s3": {"bucket": {"name": "b"}}}]}), "record 0 is not an S3 object notification"),
    ],
)
def test_bad_bodies_are_named(body: str, problem: str) -> None:
    with pytest.raises(BadNotification, match=problem):
        parse_notification(body)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("incoming/orders/2026/11/20/a.csv", ("orders", "2026/11/20/a.csv")),
        ("incoming/orders/a.csv", ("orders", "a.csv")),
        ("incoming/orders/", None),
        ("incoming/orders/2026/", None),
        ("incoming/a.csv", None),
        ("quarantine/orders/a.csv", None),
        ("incoming//a.csv", None),
    ],
)
def test_split_key(key: str, expected: tuple[str, str] | None) -> None:
    assert split_key(key) == expected


def test_outputs_never_match_the_incoming_notification_filter() -> None:
    assert report_key("orders", "d/a.csv", "3HL4kqtJlcpXroDTDmJ") == "reports/orders/d/a.csv/3HL4kqtJlcpXroDTDmJ.json"
    assert quarantine_key("orders", "d/a.csv") == "quarantine/orders/d/a.csv"
    assert split_key(report_key("orders", "a.csv", "v1")) is None
    assert split_key(quarantine_key("orders", "a.csv")) is None


@pytest.fixture
def s3(moto_aws: None) -> Any:
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket="bkt")
    return client


def test_open_stream_reads_the_object_sequentially(s3: Any) -> None:
    body = bytes(range(256)) * 40_000  # ~10 MB
    etag = s3.put_object(Bucket="bkt", Key="k", Body=body)["ETag"].strip('"')
    stream = open_stream(s3, "bkt", "k", etag=etag)
    chunks = []
    while chunk := stream.read(1_000_003):
        chunks.append(chunk)
    assert b"".join(chunks) == body
    assert {len(c) for c in chunks[:-1]} == {1_000_003}  # full reads until the end, never the whole object


def test_open_stream_refuses_an_object_that_changed(s3: Any) -> None:
    etag = s3.put_object(Bucket="bkt", Key="k", Body=b"first")["ETag"].strip('"')
    s3.put_object(Bucket="bkt", Key="k", Body=b"second")
    with pytest.raises(ClientError, match="PreconditionFailed"):
        open_stream(s3, "bkt", "k", etag=etag)


def test_ranged_reader_seeks_and_reads_exact_bytes_with_few_requests(s3: Any) -> None:
    body = bytes(range(256)) * 4096  # 1 MiB
    s3.put_object(Bucket="bkt", Key="k", Body=body)
    reader = RangedReader(s3, "bkt", "k", block_size=64 * 1024)
    assert reader.size == len(body)
    reader.seek(-8, io.SEEK_END)
    assert reader.read(8) == body[-8:]
    reader.seek(-100, io.SEEK_END)
    assert reader.read(50) == body[-100:-50]
    assert reader.requests == 2  # the second footer read was not served by the first block (it starts later)
    reader.seek(1000)
    assert reader.read(10) == body[1000:1010]
    assert reader.read(10) == body[1010:1020]  # served from the same block
    assert reader.requests == 3
    reader.seek(0)
    assert reader.read() == body
    assert reader.read(10) == b""
    with pytest.raises(OSError, match="before the start"):
        reader.seek(-1)


def test_parquet_reads_through_the_ranged_reader(s3: Any) -> None:
    table = pa.table({"id": list(range(50_000)), "name": [f"n{i}" for i in range(50_000)]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=10_000)
    answer = s3.put_object(Bucket="bkt", Key="t.parquet", Body=buffer.getvalue())
    reader = RangedReader(s3, "bkt", "t.parquet", etag=answer["ETag"].strip('"'), block_size=32 * 1024)
    parquet = pq.ParquetFile(reader)
    assert parquet.metadata.num_row_groups == 5
    assert parquet.read_row_group(4).column("id").to_pylist() == list(range(40_000, 50_000))
    assert parquet.read().equals(table)


def test_ranged_reader_pinned_to_a_version_never_mixes_two_objects(s3: Any) -> None:
    etag = s3.put_object(Bucket="bkt", Key="k", Body=b"a" * 1000)["ETag"].strip('"')
    reader = RangedReader(s3, "bkt", "k", size=1000, etag=etag, block_size=100)
    assert reader.read(100) == b"a" * 100
    s3.put_object(Bucket="bkt", Key="k", Body=b"b" * 1000)  # overwritten mid-read
    with pytest.raises(ClientError, match="PreconditionFailed"):
        reader.read(100)


def test_clients_retry_in_standard_mode_and_follow_the_endpoint_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from dropzone import aws

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
    monkeypatch.setenv("AWS_ENDPOINT_URL_EMR_SERVERLESS", "http://127.0.0.1:5001")
    emr = aws.client("emr-serverless")
    s3 = aws.client("s3")
    assert emr.meta.config.retries == {"mode": "standard", "total_max_attempts": aws.MAX_ATTEMPTS}
    assert emr.meta.endpoint_url == "http://127.0.0.1:5001"  # the service's own variable wins
    assert s3.meta.endpoint_url == "http://127.0.0.1:5000"
    assert s3.meta.region_name == "eu-west-1"
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    assert aws.client("dynamodb").meta.endpoint_url == "https://dynamodb.eu-west-1.amazonaws.com"


@pytest.mark.parametrize(
    ("status", "code", "missing"),
    [(404, "NoSuchKey", True), (403, "AccessDenied", False)],
)
def test_contract_store_takes_only_404_as_no_contract(status: int, code: str, missing: bool) -> None:
    """Real S3 answers a missing key with 404 only to a caller holding s3:ListBucket (else 403 AccessDenied, which
    moto never sends): a 403 is not read as "no contract", so IngestFunction's role needs ListBucket (template.yaml,
    tests/integration/test_template_ties.py) for a file of a dataset without a contract to be SKIPPED."""
    from botocore.stub import Stubber

    from dropzone.ingest import ContractStore

    s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    store = ContractStore(s3, "data", "assets/contracts/")
    with Stubber(s3) as stub:
        stub.add_client_error(
            "get_object",
            service_error_code=code,
            http_status_code=status,
            expected_params={"Bucket": "data", "Key": "assets/contracts/newdata.yaml"},
        )
        if missing:
            assert store.get("newdata") is None
        else:
            with pytest.raises(ClientError, match="AccessDenied"):
                store.get("newdata")
        stub.assert_no_pending_responses()
