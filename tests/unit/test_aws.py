"""dropzone.aws: where clients point, how they retry, and lazy clients (created on first use, then kept)."""

from __future__ import annotations

import pytest

from dropzone import aws


def test_lazy_client_is_created_on_first_use_and_then_kept(moto_aws: None) -> None:
    # GIVEN a lazily declared S3 client
    s3 = aws.client("s3", lazy=True)
    assert isinstance(s3, aws.LazyClient)
    assert not s3.created

    # WHEN it is used (twice)
    s3.create_bucket(Bucket="lazy")
    s3.put_object(Bucket="lazy", Key="k", Body=b"v")
    first = s3.resolve()

    # THEN the calls reached S3 through one client, created by the first use
    assert s3.created
    assert s3.get_object(Bucket="lazy", Key="k")["Body"].read() == b"v"
    assert s3.resolve() is first
    assert s3.meta.service_model.service_name == "s3"


def test_lazy_client_points_where_the_environment_said_when_it_was_declared(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a client declared while the environment names a region and a local endpoint
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:4566")
    dynamodb = aws.client("dynamodb", lazy=True, max_attempts=3)

    # WHEN the environment changes before its first use
    monkeypatch.setenv("AWS_REGION", "ap-south-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL_DYNAMODB")

    # THEN it is created as declared, with the shared retry configuration
    assert dynamodb.meta.region_name == "eu-west-1"
    assert dynamodb.meta.endpoint_url == "http://127.0.0.1:4566"
    assert dynamodb.meta.config.retries == {"mode": "standard", "total_max_attempts": 3}
