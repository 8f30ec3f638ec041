"""s3:// ↔ local files for jobs that run on this machine instead of in AWS.

A :class:`Mirror` keeps ``<root>/<bucket>/<key>`` copies of objects. Staging an ``s3://`` URI downloads the
object (or every object under the prefix) and returns the local path; JSON documents that name other
``s3://`` objects (a batch manifest) are staged recursively and rewritten to point at the local copies.
After the job, :meth:`Mirror.publish` uploads what the job created or changed, rewriting local paths in JSON
back to ``s3://``, with any ``_manifest.json`` uploaded last (readers trust nothing without it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

_BUCKET = r"([a-z0-9][a-z0-9.\-]{1,61}[a-z0-9])"
S3_URI = re.compile(rf"s3://{_BUCKET}/([^\s\"'<>\\]*)")  # a URI inside free text: it ends at a space or a quote
_WHOLE_URI = re.compile(rf"s3://{_BUCKET}/(.*)", re.DOTALL)  # a whole string: the key is the rest, spaces and all
_TEXT_SUFFIXES = (".json",)
_MANIFEST = "_manifest.json"
UPLOAD_THREADS = 4
_SINGLE_PUT_BYTES = 8 * 2**20  # boto3's multipart threshold: smaller files go in one PutObject


def split_uri(uri: str) -> tuple[str, str]:
    match = _WHOLE_URI.fullmatch(uri)
    if not match:
        raise ValueError(f"{uri!r} is not an s3://bucket/key URI")
    return match.group(1), match.group(2)


@dataclass(frozen=True)
class Snapshot:
    files: dict[Path, tuple[int, int]]


class Mirror:
    """Local copies of S3 objects under ``root``."""

    def __init__(self, s3: Any, root: Path, put: Callable[[str, str, bytes], None] | None = None) -> None:
        """``put(bucket, key, body)``: how :meth:`publish` stores a small object, when not with ``s3``'s
        PutObject (:meth:`dropzone.local.server.EmbeddedAws.put_object`)."""
        self._s3 = s3
        self._put = put or (lambda bucket, key, body: self._s3.put_object(Bucket=bucket, Key=key, Body=body))
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def local_path(self, uri: str) -> Path:
        bucket, key = split_uri(uri)
        return self.root / bucket / key

    def local(self, uri: str) -> str:
        """The local path string of a URI, keeping a trailing slash (a prefix stays a directory)."""
        path = str(self.local_path(uri))
        return path + "/" if uri.endswith("/") and not path.endswith("/") else path

    def to_uri(self, path: Path) -> str:
        relative = path.resolve().relative_to(self.root).as_posix()
        bucket, _, key = relative.partition("/")
        return f"s3://{bucket}/{key}"

    def stage(self, uri: str, depth: int = 2) -> str:
        """Download the object or prefix behind ``uri``; returns the local path to hand to the job."""
        bucket, key = split_uri(uri)
        downloaded: list[Path] = []
        if key and not key.endswith("/") and self._exists(bucket, key):
            downloaded.append(self._download(bucket, key))
        else:
            prefix = key if not key or key.endswith("/") else key + "/"
            paginator = self._s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    downloaded.append(self._download(bucket, item["Key"]))
            if not downloaded:
                self.local_path(f"s3://{bucket}/{prefix}").mkdir(parents=True, exist_ok=True)
        for path in downloaded:
            if depth > 0 and path.suffix in _TEXT_SUFFIXES:
                self._localise(path, depth - 1)
        return self.local(uri)

    def _exists(self, bucket: str, key: str) -> bool:
        try:
            self._s3.head_object(Bucket=bucket, Key=key)
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def _download(self, bucket: str, key: str) -> Path:
        target = self.root / bucket / key
        head = self._s3.head_object(Bucket=bucket, Key=key)
        if target.is_file() and target.stat().st_size == head["ContentLength"]:
            return target  # objects are never overwritten in place by the pipeline: same size, same object
        target.parent.mkdir(parents=True, exist_ok=True)
        self._s3.download_file(bucket, key, str(target))
        return target

    def _localise(self, path: Path, depth: int) -> None:
        """Stage the objects a JSON document names and point it at the local copies. A string value that is an
        ``s3://`` URI is one whole URI, whatever its key holds (spaces, escaped UTF-8: a batch manifest's file
        names); only a file that is not valid JSON is searched as text, where a URI ends at a space or a quote."""
        text = path.read_text(encoding="utf-8", errors="replace")
        try:
            document = json.loads(text)
        except ValueError:  # not JSON after all: searched as text below
            pass
        else:
            localised = self._localise_value(document, depth)
            if localised != document:
                path.write_text(json.dumps(localised, indent=1, ensure_ascii=False), encoding="utf-8")
            return
        uris = {m.group(0) for m in S3_URI.finditer(text)}
        for uri in sorted(uris, key=len, reverse=True):
            text = text.replace(uri, self.stage(uri, depth))
        if uris:
            path.write_text(text, encoding="utf-8")

    def _localise_value(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return self.stage(value, depth) if _WHOLE_URI.fullmatch(value) else value
        if isinstance(value, list):
            return [self._localise_value(v, depth) for v in value]
        if isinstance(value, dict):
            return {k: self._localise_value(v, depth) for k, v in value.items()}
        return value

    def snapshot(self) -> Snapshot:
        return Snapshot({p: _stamp(p) for p in self.root.rglob("*") if p.is_file()})

    def publish(self, before: Snapshot) -> list[str]:
        """Upload files created or changed since ``before``, delete what the job removed (an overwritten
        partition); returns the uploaded URIs, manifests last."""
        for path in before.files:
            if not path.exists() and not path.name.startswith("."):
                bucket, key = split_uri(self.to_uri(path))
                self._s3.delete_object(Bucket=bucket, Key=key)
        changed = [
            p
            for p in sorted(self.root.rglob("*"))
            if p.is_file() and not p.name.startswith(".") and before.files.get(p) != _stamp(p)
        ]
        manifests = [p for p in changed if p.name == _MANIFEST]
        # a run writes hundreds of small Parquet files (a daily-partitioned table): each with one put, a few at a time
        with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
            uploaded = list(pool.map(self._upload, [p for p in changed if p.name != _MANIFEST]))
        return uploaded + [self._upload(p) for p in manifests]  # readers trust nothing before the manifest

    def _upload(self, path: Path) -> str:
        uri = self.to_uri(path)
        bucket, key = split_uri(uri)
        if path.suffix in _TEXT_SUFFIXES:
            text = path.read_text(encoding="utf-8", errors="replace")
            body = re.sub(re.escape(str(self.root)) + r"/([^/\"]+)/", lambda m: f"s3://{m.group(1)}/", text)
            self._put(bucket, key, body.encode())
        elif path.stat().st_size <= _SINGLE_PUT_BYTES:
            self._put(bucket, key, path.read_bytes())
        else:
            self._s3.upload_file(str(path), bucket, key)  # multipart
        return uri


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns
