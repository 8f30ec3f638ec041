"""Ingest edge figures: memory of reading a large object from S3 the way the ingest function does, and the requests
a Parquet file costs through the ranged reader. Runs against a moto server in its own process (so the object's bytes
live there, not in the measured process), each measurement in a fresh interpreter reading its own peak RSS.

    .venv/bin/python benchmarks/ingest_edge.py [--sizes-mb 128 512] [--write-results]

Prints a markdown table; --write-results replaces the "Ingest edge" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import boto3

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
BUCKET = "bench"
SECTION = "## Ingest edge (S3 streaming, ranged Parquet reads)"

# Each mode runs in a fresh interpreter: prints "<seconds> <peak RSS MiB> <bytes> <requests>".
CHILD = r"""
import io, sys, time
import boto3
from dropzone import aws
from dropzone.s3io import open_stream, RangedReader
mode, key = sys.argv[1], sys.argv[2]
s3 = aws.client("s3")
start = time.perf_counter()
requests = 1
if mode == "stream":
    stream = open_stream(s3, "bench", key)
    total = 0
    while chunk := stream.read(1 << 20):
        total += len(chunk)
elif mode == "baseline":
    total = 0
    requests = 0
elif mode == "download":
    total = len(s3.get_object(Bucket="bench", Key=key)["Body"].read())
elif mode == "parquet":
    import pyarrow.parquet as pq
    reader = RangedReader(s3, "bench", key)
    parquet = pq.ParquetFile(reader)
    total = 0
    for i in range(parquet.metadata.num_row_groups):
        total += parquet.read_row_group(i).nbytes
    requests = reader.requests
seconds = time.perf_counter() - start
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec.
hwm_kib = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
peak_mib = hwm_kib / 1024
print(f"{seconds:.3f} {peak_mib:.0f} {total} {requests}")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    port = _free_port()
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _csv_chunk() -> bytes:
    rows = [
        f"O{i:09d},C{i % 999_999:06d},2026-10-01T10:00:00Z,P{i % 99_999:05d},{i % 1000}.25,{1 + i % 9},false,ok\n"
        for i in range(20_000)
    ]
    return "".join(rows).encode()


def _upload_csv(s3: object, key: str, size_mb: int) -> int:
    chunk = _csv_chunk()
    target = size_mb * 2**20

    class Repeat(io.RawIOBase):
        def __init__(self) -> None:
            self.sent = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            if self.sent >= target:
                return 0
            n = min(len(buffer), len(chunk), target - self.sent)
            offset = self.sent % len(chunk)
            piece = (chunk + chunk)[offset : offset + n]
            buffer[:n] = piece
            self.sent += n
            return n

    s3.upload_fileobj(io.BufferedReader(Repeat(), 8 << 20), BUCKET, key)  # type: ignore[attr-defined]
    return target


def _upload_parquet(s3: object, key: str, rows: int) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "order_id": [f"O{i:09d}" for i in range(rows)],
            "amount": [float(i % 1000) for i in range(rows)],
            "quantity": [1 + i % 9 for i in range(rows)],
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer, row_group_size=250_000)
    s3.put_object(Bucket=BUCKET, Key=key, Body=buffer.getvalue())  # type: ignore[attr-defined]
    return len(buffer.getvalue())


def _child(mode: str, key: str, env: dict[str, str]) -> tuple[float, float, int, int]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, key], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    return float(out[0]), float(out[1]), int(out[2]), int(out[3])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[128, 512])
    parser.add_argument("--parquet-rows", type=int, default=2_000_000)
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    lines = [
        SECTION,
        "",
        "Reading one object from S3 (a moto server in another process) in a fresh interpreter; peak RSS of that",
        "interpreter (VmHWM; `baseline` is Python + boto3 + a client, reading nothing).",
        "`stream` is how the ingest function reads CSV/JSON",
        "(dropzone.s3io.open_stream, 1 MiB reads); `download` is `get_object()['Body'].read()` for comparison;",
        "`parquet` reads every row group through dropzone.s3io.RangedReader (8 MiB blocks).",
        "",
        "| object | mode | MiB | seconds | MiB/s | peak RSS MiB | GET requests |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    ratios: list[str] = []
    with moto_server() as url:
        env = {**os.environ, "AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
        env["AWS_DEFAULT_REGION"] = "us-east-1"
        s3 = boto3.client(
            "s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="b", aws_secret_access_key="b"
        )
        s3.create_bucket(Bucket=BUCKET)
        for size_mb in args.sizes_mb:
            key = f"incoming/bench/{size_mb}mb.csv"
            _upload_csv(s3, key, size_mb)
            measured: dict[str, tuple[float, float]] = {}
            for mode in ("baseline", "stream", "download"):
                seconds, peak, total, requests = _child(mode, key, env)
                mib = total / 2**20
                rate = mib / max(seconds, 1e-9)
                measured[mode] = (rate, peak)
                lines.append(
                    f"| CSV {size_mb} MiB | {mode} | {mib:.0f} | {seconds:.2f} | {rate:.0f} | {peak:.0f} | {requests} |"
                )
            base = measured["baseline"][1]
            (stream_rate, stream_peak), (download_rate, download_peak) = measured["stream"], measured["download"]
            ratios.append(
                f"- CSV {size_mb} MiB, stream vs download (the peer, same run): "
                f"{stream_peak - base:.0f} vs {download_peak - base:.0f} MiB above baseline "
                f"({(stream_peak - base) / max(download_peak - base, 1):.3f}x the memory), "
                f"{stream_rate:.0f} vs {download_rate:.0f} MiB/s "
                f"({stream_rate / max(download_rate, 1e-9):.2f}x the speed)"
            )
        size = _upload_parquet(s3, "incoming/bench/orders.parquet", args.parquet_rows)
        seconds, peak, _, requests = _child("parquet", "incoming/bench/orders.parquet", env)
        mib = size / 2**20
        lines.append(
            f"| Parquet {args.parquet_rows:,} rows | parquet | {mib:.0f} | {seconds:.2f} | {mib / seconds:.0f} "
            f"| {peak:.0f} | {requests} |"
        )
    lines += ["", *ratios, ""]
    table = "\n".join(lines)
    print(table)
    if args.write_results:
        text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
        # up to the next heading, or the start marker a section written between markers puts above its heading
        pattern = re.compile(re.escape(SECTION) + r".*?(?=\n## |\n<!-- [\w-]+:start -->|\Z)", re.S)
        text = pattern.sub(table.rstrip() + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + table
        RESULTS.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
