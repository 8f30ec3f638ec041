"""The embedded AWS API: moto's server on 127.0.0.1, a free port, fake credentials, region us-east-1."""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
import urllib.request
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account
_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # moto accepts any credentials
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
}


class PortUnavailable(Exception):
    """The embedded API cannot listen on the port asked for (another program has it, or it is privileged)."""


def check_port(port: int) -> None:
    """Refuse a port the API could not listen on, before moto's server tries: its thread would print werkzeug's
    message and end, and its ``start`` wait for it forever. Port 0 (a free one) always does."""
    if port == 0:
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # as werkzeug binds: a port in TIME_WAIT is free, one another program listens on is not
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as e:
            raise PortUnavailable(_port_problem(port, e)) from None


def _port_problem(port: int, error: OSError | None) -> str:
    if error is not None and error.errno == errno.EADDRINUSE:
        return f"127.0.0.1:{port} is in use by another program; stop it or choose another port (0: a free one)"
    reason = f": {error.strerror or error}" if error is not None else ""
    return f"the embedded AWS API cannot listen on 127.0.0.1:{port}{reason}"


def _start(server: Any) -> None:
    """``ThreadedMotoServer.start``, except that it returns when the server's thread ends before listening: moto
    5.2.5 waits for the thread's ready event, never set when werkzeug cannot bind (it prints and ends the thread)."""
    server._thread = threading.Thread(target=server._server_entry, daemon=True)
    server._thread.start()
    while not server._server_ready_event.wait(0.05):
        if not server._thread.is_alive():
            raise PortUnavailable(_port_problem(server._port, None))


class EmbeddedAws:
    """A running moto server and boto3 clients pointed at it."""

    def __init__(self, port: int = 0) -> None:
        # werkzeug logs one line per request and moto warns about every CloudFormation type it skips.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        logging.getLogger("moto").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore", message="Tried to parse .* but it's not supported", category=UserWarning)
        from moto.server import ThreadedMotoServer

        check_port(port)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        _start(self._server)
        host, bound = self._server.get_host_and_port()
        self.endpoint_url = f"http://{host}:{bound}"
        self.region = REGION
        self.account_id = ACCOUNT_ID
        self.partition = "aws"
        self.reset()
        self._config = Config(retries={"max_attempts": 2, "mode": "standard"})

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=_ENV["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=_ENV["AWS_SECRET_ACCESS_KEY"],
            config=self._config,
        )

    @property
    def environment(self) -> dict[str, str]:
        """Variables that point every boto3 client of this process (and subprocesses) at the embedded API."""
        return {**_ENV, "AWS_ENDPOINT_URL": self.endpoint_url}

    def backend(self, service: str) -> Any:
        """moto's in-process state for ``service``, to record what moto cannot know (a job's real outcome)."""
        from moto.backends import get_backend

        return get_backend(service)[self.account_id][self.region]  # type: ignore[call-overload]

    def put_object(self, bucket: str, key: str, body: bytes) -> None:
        """Store an object as PutObject does, through moto's own S3 code (the bucket's default encryption, its
        event notifications) but without the HTTP round trip: about 0.1 ms against 9 ms for a small object here,
        where most of the 9 ms is botocore and the server thread sharing one interpreter. For the hundreds of small
        files a local job run writes (a daily-partitioned table), which EMR would write straight to S3."""
        from moto.backends import get_backend

        get_backend("s3")[self.account_id]["global"].put_object(bucket, key, body)

    def reset(self) -> None:
        """Forget every resource: moto's state is per process, shared by all servers in it."""
        request = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")  # noqa: S310
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - our own local server
            response.read()

    def stop(self) -> None:
        self._server.stop()


@contextmanager
def patched_environ(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block, restoring the previous values after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def embedded_aws(port: int = 0) -> Iterator[EmbeddedAws]:
    """Start the API, point this process at it, and stop it afterwards."""
    aws = EmbeddedAws(port)
    try:
        with patched_environ(aws.environment):
            yield aws
    finally:
        aws.stop()
