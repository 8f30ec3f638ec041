"""PublishAssetsFunction: CloudFormation custom resource that copies this package's assets/ to the data bucket.

sam build puts the Spark entry point and zip, the contracts and the training source into this function's package
(build_assets.py); on Create and Update the stack calls this handler, which uploads them under
``s3://<Bucket>/<Prefix>``. So ``sam deploy`` alone yields a stack whose functions find their code assets. On Delete
nothing is removed: the bucket is retained and the assets are what the retained data was produced with.

Whatever happens, CloudFormation gets an answer on the pre-signed ResponseURL (a missing answer would hang the
stack for an hour).
"""

from __future__ import annotations

import hashlib
import json
import logging
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3

logger = logging.getLogger()
logger.setLevel(logging.INFO)

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
s3 = boto3.client("s3")


class PublishError(ValueError):
    """The custom resource request cannot be served; the message names the property or file."""


def asset_files(assets_dir: Path = ASSETS_DIR) -> dict[str, Path]:
    """Relative key → file for every asset in the package, sorted by key."""
    if not assets_dir.is_dir():
        raise PublishError(f"{assets_dir}: this package has no assets (was it built with `sam build`?)")
    return {p.relative_to(assets_dir).as_posix(): p for p in sorted(assets_dir.rglob("*")) if p.is_file()}


def publish(client: Any, bucket: str, prefix: str, assets_dir: Path = ASSETS_DIR) -> dict[str, str]:
    """Upload every asset to ``s3://bucket/prefix<key>``; returns key → sha256 of what was uploaded."""
    if not bucket:
        raise PublishError("ResourceProperties.Bucket is empty")
    if prefix and not prefix.endswith("/"):
        raise PublishError(f"ResourceProperties.Prefix {prefix!r} must end with '/'")
    digests: dict[str, str] = {}
    for key, path in asset_files(assets_dir).items():
        body = path.read_bytes()
        digest = hashlib.sha256(body).hexdigest()
        client.put_object(Bucket=bucket, Key=f"{prefix}{key}", Body=body, Metadata={"sha256": digest})
        digests[key] = digest
    return digests


def _respond(event: Mapping[str, Any], status: str, reason: str, data: Mapping[str, str]) -> None:
    url = str(event["ResponseURL"])
    if not url.startswith("https://"):
        raise PublishError(f"ResponseURL must be https, got {url[:40]!r}")
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:1000],
            "PhysicalResourceId": event.get("PhysicalResourceId") or f"{event['StackId']}/{event['LogicalResourceId']}",
            "StackId": event["StackId"],
            "RequestId": event["RequestId"],
            "LogicalResourceId": event["LogicalResourceId"],
            "Data": dict(data),
        }
    ).encode()
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above (pre-signed S3 URL)
        url, data=body, method="PUT", headers={"Content-Type": "", "Content-Length": str(len(body))}
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - https only, checked above
        logger.info("answered CloudFormation: %s (HTTP %s)", status, response.status)


def handle(event: Mapping[str, Any], client: Any, assets_dir: Path = ASSETS_DIR) -> dict[str, str]:
    """Serve one custom resource request; returns the Data sent back to CloudFormation."""
    request_type = event.get("RequestType")
    if request_type == "Delete":
        return {}
    if request_type not in ("Create", "Update"):
        raise PublishError(f"unknown RequestType {request_type!r}")
    props = event.get("ResourceProperties", {})
    digests = publish(client, str(props.get("Bucket", "")), str(props.get("Prefix", "assets/")), assets_dir)
    logger.info("published %d assets", len(digests), extra={"assets": digests})
    manifest = hashlib.sha256(json.dumps(digests, sort_keys=True).encode()).hexdigest()
    return {"Count": str(len(digests)), "ManifestSha256": manifest}


def handler(event: dict[str, Any], context: Any) -> None:
    try:
        data = handle(event, s3)
    except Exception as e:  # every failure must reach CloudFormation, with its reason
        logger.exception("publish failed")
        stream = getattr(context, "log_stream_name", "?")
        _respond(event, "FAILED", f"{type(e).__name__}: {e} (log stream {stream})", {})
        return
    _respond(event, "SUCCESS", "assets published", data)
