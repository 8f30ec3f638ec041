"""Reading S3 objects as file objects without downloading them into memory or /tmp.

- :func:`open_stream`: one GET, the body as a buffered binary stream (CSV, JSON Lines, gzip).
- :class:`RangedReader`: a seekable file object that fetches byte ranges on demand (Parquet: footer first,
  then the row groups). Both pin the object's version (VersionId, or ETag via If-Match) so a concurrent
  overwrite of the key cannot mix two objects in one read.
"""

from __future__ import annotations

import io
from typing import Any

DEFAULT_BLOCK = 8 * 2**20  # bytes fetched per ranged GET (one read-ahead block)
STREAM_BUFFER = 2**20


def _object_args(bucket: str, key: str, version_id: str | None, etag: str | None) -> dict[str, Any]:
    args: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if version_id:
        args["VersionId"] = version_id
    elif etag:
        args["IfMatch"] = etag if etag.startswith('"') else f'"{etag}"'
    return args


class _BodyRaw(io.RawIOBase):
    """A botocore StreamingBody as a raw binary file (readinto), so io.BufferedReader can wrap it."""

    def __init__(self, body: Any) -> None:
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._body.read(len(view))
        n = len(data)
        view[:n] = data
        return n

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


def open_stream(
    s3: Any, bucket: str, key: str, *, version_id: str | None = None, etag: str | None = None
) -> io.BufferedReader:
    """GET the object and return its body as a buffered binary stream (read sequentially, never all at once)."""
    answer = s3.get_object(**_object_args(bucket, key, version_id, etag))
    return io.BufferedReader(_BodyRaw(answer["Body"]), buffer_size=STREAM_BUFFER)


class RangedReader(io.RawIOBase):
    """A seekable, read-only file object over one S3 object, served by ranged GETs of ``block_size`` bytes.

    The last block read is kept, so the small reads of a Parquet footer cost one request. ``requests`` counts
    the GETs made (useful in tests and benchmarks).
    """

    def __init__(
        self,
        s3: Any,
        bucket: str,
        key: str,
        *,
        size: int | None = None,
        version_id: str | None = None,
        etag: str | None = None,
        block_size: int = DEFAULT_BLOCK,
    ) -> None:
        super().__init__()
        self._s3 = s3
        self._args = _object_args(bucket, key, version_id, etag)
        if size is None:
            head = s3.head_object(**self._args)
            size = int(head["ContentLength"])
        self.size = size
        self.block_size = block_size
        self._pos = 0
        self._block_start = 0
        self._block = b""
        self.requests = 0
        self.name = f"s3://{bucket}/{key}"

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_SET:
            target = offset
        elif whence == io.SEEK_CUR:
            target = self._pos + offset
        elif whence == io.SEEK_END:
            target = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if target < 0:
            raise OSError(f"cannot seek to {target} (before the start of {self.name})")
        self._pos = target
        return self._pos

    def _fetch(self, start: int, length: int) -> bytes:
        end = min(self.size, start + length) - 1
        self.requests += 1
        answer = self._s3.get_object(Range=f"bytes={start}-{end}", **self._args)
        body = answer["Body"]
        try:
            return bytes(body.read())
        finally:
            body.close()

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._pos >= self.size or len(view) == 0:
            return 0
        wanted = min(len(view), self.size - self._pos)
        offset_in_block = self._pos - self._block_start
        if not (0 <= offset_in_block < len(self._block)):
            # A large read goes straight through in one request; small reads fill a block for the next ones.
            self._block_start = self._pos
            self._block = self._fetch(self._pos, max(wanted, self.block_size))
            offset_in_block = 0
        chunk = self._block[offset_in_block : offset_in_block + wanted]
        n = len(chunk)
        view[:n] = chunk
        self._pos += n
        return n

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = self.size - self._pos
        out = bytearray()
        while len(out) < size:
            buffer = bytearray(size - len(out))
            n = self.readinto(buffer)
            if n == 0:
                break
            out += buffer[:n]
        return bytes(out)
