"""boto3 clients for every part of dropzone: botocore ``standard`` retry mode, endpoint from the environment.

``AWS_ENDPOINT_URL_<SERVICE>`` (e.g. ``AWS_ENDPOINT_URL_S3``) or ``AWS_ENDPOINT_URL`` point the clients at the
embedded local runtime (moto server); unset, boto3 talks to AWS. Throttling and transient errors are retried by
botocore's standard mode (exponential backoff with jitter, retry quota) before they reach our code.
"""

from __future__ import annotations

import os
from typing import Any

import boto3
from botocore.config import Config

MAX_ATTEMPTS = 5  # total attempts per call in standard mode (first try + 4 retries)
DEFAULT_REGION = "us-east-1"  # only when neither AWS_REGION nor AWS_DEFAULT_REGION is set (local runs)


def client_config(max_attempts: int = MAX_ATTEMPTS) -> Config:
    """The botocore configuration every dropzone client uses."""
    return Config(retries={"mode": "standard", "total_max_attempts": max_attempts}, connect_timeout=5, read_timeout=60)


def endpoint_url(service: str) -> str | None:
    """The endpoint override for ``service`` from the environment, if any."""
    specific = "AWS_ENDPOINT_URL_" + service.upper().replace("-", "_")
    return os.environ.get(specific) or os.environ.get("AWS_ENDPOINT_URL") or None


def region_name() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION


def client(service: str, *, max_attempts: int = MAX_ATTEMPTS) -> Any:
    """A boto3 client for ``service`` (e.g. ``"s3"``, ``"dynamodb"``, ``"emr-serverless"``)."""
    return boto3.client(
        service,
        region_name=region_name(),
        endpoint_url=endpoint_url(service),
        config=client_config(max_attempts),
    )
