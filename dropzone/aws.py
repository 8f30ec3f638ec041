"""boto3 clients for every part of dropzone: botocore ``standard`` retry mode, endpoint from the environment.

``AWS_ENDPOINT_URL_<SERVICE>`` (e.g. ``AWS_ENDPOINT_URL_S3``) or ``AWS_ENDPOINT_URL`` point the clients at the
embedded local runtime (moto server); unset, boto3 talks to AWS. Throttling and transient errors are retried by
botocore's standard mode (exponential backoff with jitter, retry quota) before they reach our code.

Lambda modules declare their clients at module level with ``lazy=True``: the endpoint, region and configuration
are fixed at once, but botocore's work (session, endpoint rules, the service model: ~100 ms for the first client,
~5-40 ms for each further one) waits until the client is first used, and then happens once per container. So a
cold start pays only for the clients its first event needs (an SNS client, for one, only when something fails).
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


class LazyClient:
    """Stands for a boto3 client, created on first attribute access (``s3.get_object``, ``s3.meta``) and then kept.

    Where it points (region, endpoint) is read from the environment when the LazyClient is made, as for an eager
    client; only the botocore work is deferred.
    """

    __slots__ = ("_client", "_config", "_endpoint", "_region", "service")

    def __init__(self, service: str, *, region: str, endpoint: str | None, config: Config) -> None:
        self.service = service
        self._region = region
        self._endpoint = endpoint
        self._config = config
        self._client: Any = None

    @property
    def created(self) -> bool:
        return self._client is not None

    def resolve(self) -> Any:
        """The real client (created now if this is the first use)."""
        if self._client is None:
            self._client = boto3.client(
                self.service, region_name=self._region, endpoint_url=self._endpoint, config=self._config
            )
        return self._client

    def __getattr__(self, name: str) -> Any:  # only for names not found on the LazyClient itself
        return getattr(self.resolve(), name)

    def __repr__(self) -> str:
        return f"LazyClient({self.service!r}, created={self.created})"


def client(service: str, *, max_attempts: int = MAX_ATTEMPTS, lazy: bool = False) -> Any:
    """A boto3 client for ``service`` (e.g. ``"s3"``, ``"dynamodb"``, ``"emr-serverless"``).

    ``lazy=True`` returns a :class:`LazyClient` that creates it on first use (module-level clients of Lambdas).
    """
    if lazy:
        return LazyClient(
            service, region=region_name(), endpoint=endpoint_url(service), config=client_config(max_attempts)
        )
    return boto3.client(
        service,
        region_name=region_name(),
        endpoint_url=endpoint_url(service),
        config=client_config(max_attempts),
    )
