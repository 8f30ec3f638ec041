"""Staging for local job runs: the objects a batch manifest names are copied whatever their keys hold."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
from moto import mock_aws

from dropzone.batching import build_manifest
from dropzone.local.staging import Mirror, split_uri


def test_a_key_with_spaces_and_utf8_is_one_uri() -> None:
    assert split_uri("s3://data-bucket/incoming/orders/my orders é.csv") == (
        "data-bucket",
        "incoming/orders/my orders é.csv",
    )


def test_every_file_a_batch_manifest_names_is_staged_with_its_bytes(tmp_path: Path) -> None:
    """A key with spaces and UTF-8 (the manifest, written as the batcher writes it, escapes the é) is staged whole,
    and the staged manifest points at the local copy; the other files and fields are as they were."""
    keys = ["incoming/orders/my orders é.csv", "incoming/orders/plain.csv", "incoming/orders/a 'quoted' <b>.csv"]
    bodies = {key: f"order_id\nO{i}\n".encode() for i, key in enumerate(keys)}
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="data-bucket")
        files = []
        for i, key in enumerate(keys):
            s3.put_object(Bucket="data-bucket", Key=key, Body=bodies[key])
            files.append({"bucket": "data-bucket", "key": key, "version": "v1", "size": 12, "sk": f"FILE#{i}"})
        manifest = build_manifest("orders", "b1", 1, files)
        body = json.dumps(manifest, indent=1).encode()  # as the batcher stores it: ensure_ascii, é as \u00e9
        s3.put_object(Bucket="data-bucket", Key="batches/orders/b1/manifest.json", Body=body)

        mirror = Mirror(s3, tmp_path / "s3")
        staged = json.loads(Path(mirror.stage("s3://data-bucket/batches/orders/b1/manifest.json")).read_text())

    root = (tmp_path / "s3").resolve()
    assert [f["uri"] for f in staged["files"]] == [str(root / "data-bucket" / key) for key in keys]
    for key in keys:
        assert (root / "data-bucket" / key).read_bytes() == bodies[key], key
    assert [f["key"] for f in staged["files"]] == keys  # fields that are not URIs are left alone
    assert {k: v for k, v in staged.items() if k != "files"} == {"dataset": "orders", "batch_id": "b1", "attempt": 1}
