"""The hostile corpus of the validator's tests (tests/unit/test_hostile.py) as data: every case that must end
QUARANTINED, with the file name, its bytes (or a stream for the 100 MB ones), contract limit overrides and the
reason fragment expected. The row/JSON/Parquet builders are imported from that test module, not copied.

``python -c "from tests.reliability.hostile_corpus import measure; measure()"`` (from the repository root)
validates every case in this process and prints one JSON line per case with its peak RSS above the process's
resident size just before (VmHWM reset through /proc/self/clear_refs, Linux).
"""

from __future__ import annotations

import gzip
import io
import json
import random
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tests.unit.test_hostile import HEADER, EndlessLine, csv_text, json_row, parquet_bytes, row

UPLOADED = datetime(2026, 1, 1, tzinfo=UTC)
BIG = 100 * 2**20


@dataclass(frozen=True)
class Case:
    name: str
    file: str  # file name; its suffix gives the format
    build: Callable[[Path], bytes]  # tmp dir → content (small cases)
    reason: str  # fragment of one of the reasons
    limits: dict[str, Any] = field(default_factory=dict)  # contract limits changed for this case
    stream: Callable[[], tuple[io.RawIOBase, int]] | None = None  # (stream, size) for cases too big to hold

    @property
    def big(self) -> bool:
        return self.stream is not None


def _drop_column(text: str, index: int) -> str:
    return "\n".join(",".join(c for i, c in enumerate(line.split(",")) if i != index) for line in text.splitlines())


def _bomb(_: Path) -> bytes:
    line = (row(1) + "\n").encode()
    return gzip.compress(HEADER.encode() + b"\n" + line * (40_000_000 // len(line)), compresslevel=9)


def _corrupt_gzip(_: Path) -> bytes:
    data = bytearray(gzip.compress(csv_text(2000).encode()))
    data[len(data) // 2 : len(data) // 2 + 64] = bytes(range(64))
    return bytes(data)


def _parquet_under_csv(tmp: Path) -> bytes:
    pq.write_table(pa.table({"order_id": ["O00000001"]}), tmp / "t.parquet")
    return (tmp / "t.parquet").read_bytes()


def _footer_lies(tmp: Path) -> bytes:
    data = bytearray(parquet_bytes(tmp))
    data[-8:-4] = (len(data) * 3).to_bytes(4, "little")
    return bytes(data)


def _footer_garbage(tmp: Path) -> bytes:
    data = bytearray(parquet_bytes(tmp))
    footer = int.from_bytes(data[-8:-4], "little")
    data[-8 - footer : -8] = b"\xa5" * footer
    return bytes(data)


class _LongHeader(io.RawIOBase):
    """A 100 MB first line generated as read."""

    def __init__(self, total: int) -> None:
        self.left = total

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        self.left -= n
        return b"a" * n


def _text(value: str) -> Callable[[Path], bytes]:
    return lambda _: value.encode()


def _bytes(value: bytes) -> Callable[[Path], bytes]:
    return lambda _: value


CASES: tuple[Case, ...] = (
    Case("empty file", "o.csv", _bytes(b""), "file is empty (0 bytes)"),
    Case("empty gzip member", "o.csv.gz", lambda _: gzip.compress(b""), "file is empty"),
    Case("header only", "o.csv", _text(HEADER + "\n"), "file has a header but no data rows"),
    Case("missing column", "o.csv", _text(_drop_column(csv_text(3), 4) + "\n"), "missing column 'amount'"),
    Case(
        "extra column",
        "o.csv",
        _text("\n".join(line + ",x" for line in csv_text(3).splitlines()).replace("review_text,x", "review_text,d")),
        "unexpected column 'd'",
    ),
    Case("duplicate header column", "o.csv", _text(HEADER + ",amount\n" + row(1) + ",3\n"), "header repeats column"),
    Case("wrong delimiter", "o.csv", _text(csv_text(5).replace(",", ";")), "semicolon-delimited"),
    Case("ragged rows", "o.csv", _text(csv_text(5) + "O99999999,C000001,2025-01-01T00:00:00Z\n"), "row.columns"),
    Case("unsupported file name", "o.xlsx", _text(csv_text()), "unsupported file name"),
    Case(
        "truncated gzip",
        "o.csv.gz",
        lambda _: (lambda d: d[: len(d) // 2])(gzip.compress(csv_text(2000).encode())),
        "gzip stream is truncated",
    ),
    Case("corrupt gzip", "o.csv.gz", _corrupt_gzip, "gzip stream is corrupt"),
    Case("gzip bomb", "o.csv.gz", _bomb, "refused as a decompression bomb"),
    Case(
        "gzip over max_bytes decompressed",
        "o.csv.gz",
        lambda _: gzip.compress(csv_text(3000).encode()),
        "decompressed size exceeds max_bytes",
        limits={"max_bytes": "64 KiB"},
    ),
    Case("gz name, plain content", "o.csv.gz", _text(csv_text(3)), "the content is not gzip"),
    Case(
        "invalid UTF-8 in a row",
        "o.csv",
        lambda _: csv_text(5).encode().replace(b"fine", b"caf\xe9", 1),
        "not valid UTF-8",
    ),
    Case("invalid UTF-8 in the header", "o.csv", lambda _: b"order_id\xff," + csv_text(2).encode(), "not valid UTF-8"),
    Case("binary garbage with NUL", "o.csv", lambda _: random.Random(1).randbytes(50_000), "NUL byte at offset"),
    Case(
        "binary garbage without NUL",
        "o.csv",
        lambda _: bytes(random.Random(2).randrange(128, 256) for _ in range(50_000)),
        "not valid UTF-8",
    ),
    Case("Parquet bytes under a .csv name", "o.csv", _parquet_under_csv, "content is Parquet"),
    Case("UTF-16", "o.csv", lambda _: csv_text(2).encode("utf-16"), "file is UTF-16 encoded"),
    Case(
        "100 MB single line",
        "o.csv",
        _bytes(b""),
        "is longer than max_line_length",
        stream=lambda: (EndlessLine(BIG), BIG),
    ),
    Case("100 MB header line", "o.csv", _bytes(b""), "line 1 is longer", stream=lambda: (_LongHeader(BIG), BIG)),
    Case("formula in an id column", "o.csv", _text(csv_text(4, customer_id="=cmd|' /C calc'!A0")), "customer_id.regex"),
    Case(
        "NaN and infinity",
        "o.csv",
        _text(HEADER + "\n" + "\n".join(row(i, amount=v) for i, v in enumerate(("NaN", "inf", "-Infinity"))) + "\n"),
        "amount.finite",
    ),
    Case(
        "future timestamp",
        "o.csv",
        _text(HEADER + "\n" + row(1, order_ts="2099-01-01T00:00:00Z") + "\n"),
        "order_ts.future",
    ),
    Case("absurdly old timestamp", "o.csv", _text(csv_text(3, order_ts="1970-01-01T00:00:00Z")), "order_ts.too_old"),
    Case("unparseable timestamp", "o.csv", _text(csv_text(3, order_ts="yesterday")), "order_ts.parse"),
    Case(
        "impossible calendar date",
        "o.csv",
        _text(csv_text(3) + row(5, order_ts="2025-02-30T10:00:00Z") + "\n"),
        "order_ts.parse",
    ),
    Case("duplicate ids", "o.csv", _text(csv_text(5) + row(2) + "\n"), "order_id.unique"),
    Case("too many rows", "o.csv", _text(csv_text(20)), "more than max_rows 5 rows", limits={"max_rows": 5}),
    Case(
        "JSON nesting 20001 deep",
        "o.jsonl",
        _text('{"order_id": ' + "[" * 20001 + "]" * 20001 + "}\n" + json_row(1) + "\n"),
        "nesting depth 20002 exceeds limit 32",
    ),
    Case(
        "JSON nesting over a lowered limit",
        "o.jsonl",
        _text(json_row(1) + "\n" + json.dumps({"order_id": "O1", "x": [[[[[[[[[[1]]]]]]]]]]}) + "\n"),
        "exceeds limit 5 at line 2",
        limits={"max_nesting_depth": 5},
    ),
    Case(
        "JSON array instead of lines",
        "o.json",
        _text("[\n" + json_row(1) + ",\n" + json_row(2) + "\n]\n"),
        "file is a JSON array",
    ),
    Case("JSON broken lines", "o.jsonl", _text(json_row(1) + "\n" + '{"order_id": "O1",\n' + "42\n"), "row.json"),
    Case("JSON extra key", "o.jsonl", _text(json_row(1, coupon="X") + "\n"), "unexpected column 'coupon'"),
    Case(
        "JSON list where a number belongs",
        "o.jsonl",
        _text(json_row(1, amount=[1, 2]) + "\n" + json_row(2) + "\n"),
        "amount.parse",
    ),
    Case(
        "JSON invalid UTF-8",
        "o.jsonl",
        lambda _: (json_row(1) + "\n").encode().replace(b"fine", b"f\xffne"),
        "row.json",
    ),
    Case("Parquet footer length lies", "o.parquet", _footer_lies, "Parquet footer claims"),
    Case("Parquet footer garbage", "o.parquet", _footer_garbage, "Parquet footer is unreadable"),
    Case("Parquet truncated", "o.parquet", lambda tmp: parquet_bytes(tmp)[:-100], "no PAR1 magic bytes at the end"),
    Case("Parquet name, CSV content", "o.parquet", _text(csv_text()), "no PAR1 magic bytes at the start"),
    Case(
        "Parquet wrong type",
        "o.parquet",
        lambda tmp: parquet_bytes(tmp, quantity=[2.5] * 50),
        "column 'quantity' has type double",
    ),
    Case("Parquet missing column", "o.parquet", lambda tmp: parquet_bytes(tmp, amount=None), "missing column 'amount'"),
    Case(
        "Parquet NaN and nulls",
        "o.parquet",
        lambda tmp: parquet_bytes(
            tmp, amount=[float("nan")] + [10.0] * 49, order_id=[None] + [f"O{i:08d}" for i in range(1, 50)]
        ),
        "2.0% of rows are bad",
    ),
)


def _peak_above_current_mib() -> tuple[float, float]:
    status = Path("/proc/self/status").read_text()
    hwm = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
    rss = int(re.search(r"VmRSS:\s+(\d+) kB", status).group(1))  # type: ignore[union-attr]
    return hwm / 1024, rss / 1024


def measure() -> None:
    """Validate every case here, printing {name, decision, reasons, peak_mib, base_mib} per line."""
    from dropzone.contract import load_contract, parse_contract
    from dropzone.validation import validate_stream

    contracts_dir = Path(__file__).resolve().parents[2] / "contracts"
    base = load_contract(contracts_dir / "orders.yaml")
    validate_stream(io.BytesIO(csv_text(50).encode()), name="warm.csv", contract=base, uploaded_at=UPLOADED)
    import yaml

    document = yaml.safe_load((contracts_dir / "orders.yaml").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        for case in CASES:
            contract = base
            if case.limits:
                changed = json.loads(json.dumps(document))
                changed["limits"].update(case.limits)
                contract = parse_contract(changed, "orders.yaml")
            stream: io.RawIOBase | io.BytesIO
            if case.stream is not None:
                stream, size = case.stream()
            else:
                data = case.build(Path(tmp))
                stream, size = io.BytesIO(data), len(data)
            Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS
            _, before = _peak_above_current_mib()
            report = validate_stream(stream, name=case.file, contract=contract, size=size, uploaded_at=UPLOADED)
            peak, _ = _peak_above_current_mib()
            line = {
                "name": case.name,
                "decision": report.decision,
                "reasons": list(report.reasons),
                "base_mib": round(before, 1),
                "peak_mib": round(peak - before, 1),
                "bytes": size,
            }
            print(json.dumps(line), flush=True)
