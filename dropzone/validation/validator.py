"""Validate one file against its contract, streaming, batch by batch: the decision, reasons and counts.

CSV is read by ``pyarrow.csv.open_csv`` with every column as text, then typed by the compiled rules; JSON Lines is
cut into line-aligned blocks, guarded for nesting depth with numpy *before* any parser sees it, then read by
pyarrow's JSON reader where that provably gives the per-line answer, else parsed line by line (the stdlib parser);
Parquet has its magic bytes, footer and row-group metadata checked before a row is read, then is read row group by
row group in bounded batches. Hostile input never raises: it becomes a reason.
"""

from __future__ import annotations

import csv
import io
import json
import re
import tempfile
import time
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from dropzone.contract import Contract, format_of, read_suffixes
from dropzone.rules import (
    DECIMAL_DIGITS,
    INT64_RANGE,
    JSON_KINDS,
    RowRule,
    describe_json_type_failure,
    row_rules,
    unique_rule_name,
)
from dropzone.validation.compiler import (
    any_of,
    bool_array,
    compatible,
    failure_mask,
    false_mask,
    spark_unreadable,
    typed_values,
)
from dropzone.validation.digits import bools, digit_pattern
from dropzone.validation.guard import BARE_CR, GuardedStream, human_size
from dropzone.validation.report import Rejected, SchemaDiff, ValidationReport
from dropzone.validation.uniqueness import UniqueTracker

CSV_BLOCK = 512 << 10
CSV_BATCHES_PER_CHECK = 8
JSON_BLOCK = 1 << 20
PARQUET_BATCH_ROWS = 65_536
MAX_PARQUET_FOOTER = 16 << 20
MAX_SAMPLE_VALUE = 200
ROW_COLUMNS = "row.columns"  # a CSV row with the wrong number of fields
ROW_JSON = "row.json"  # a JSON Lines line that is not a JSON object
# What an invalid UTF-8 byte in a text file most often is: a legacy 8-bit encoding's letter (é is 0xE9 in both).
_ENCODINGS = (
    'another encoding, such as Windows-1252 or Latin-1 (Excel\'s "CSV (Comma delimited)" writes one): save it as'
    ' UTF-8 ("CSV UTF-8" in Excel)'
)
OTHER_ENCODING = f"the file is probably in {_ENCODINGS}"
_EXCEL_SEP = re.compile(r'"?sep=.?"?', re.IGNORECASE)  # a first line Excel reads as "the delimiter is ..."
_JSON_STRING = re.compile(rb'"(?:[^"\\\n]|\\.)*"')


detect_format = format_of  # the format a file name says, or None for an unsupported name


def _pct(fraction: float) -> str:
    value = fraction * 100
    return f"{value:.1f}%" if value == 0 or value >= 0.1 else f"{value:.3g}%"


class _JsonNumber(str):
    """A JSON number with a fraction or an exponent, kept as written (``json.loads(parse_float=...)``): an int column
    needs its exact value (``1000000000000000000.0`` is whole, its double is not below 2**63 by much)."""

    __slots__ = ()


# Spark's JSON parser (Jackson, StreamReadConstraints.maxNumberLength) refuses a number of more than 1000 digits, so
# the line is broken for the Spark job: it is for the validator too (row.json), whatever the column.
JSON_MAX_NUMBER_DIGITS = 1000
# Every byte that can be part of a JSON number as b"0", any other as a space: a run of more than
# JSON_MAX_NUMBER_DIGITS zeros in a block so translated may hold a number the per-line path must judge.
_NUMBER_RUNS = bytes(48 if chr(b) in "0123456789+-.eE" else 32 for b in range(256))


def _check_digits(digits: int) -> None:
    if digits > JSON_MAX_NUMBER_DIGITS:
        raise ValueError(f"a number of {digits} digits (at most {JSON_MAX_NUMBER_DIGITS})")


def _json_int(token: str) -> int:
    """``json.loads(parse_int=...)``: the int, or a ValueError (a broken line) above JSON_MAX_NUMBER_DIGITS digits
    (also below Python's own limit on int conversion, 4300 digits)."""
    _check_digits(len(token) - token.startswith("-"))
    return int(token)


def _json_number(token: str) -> _JsonNumber:
    """``json.loads(parse_float=...)``: the number kept as written, or a ValueError (a broken line) when Jackson
    counts more than JSON_MAX_NUMBER_DIGITS digits in it: those of the integer part, the fraction and the exponent,
    but for a number whose integer part is 0 and which has a fraction or an exponent, not both, one fewer (Jackson
    2.20 counts an absent part as -1 on that path: ``0.`` + 1000 digits passes, ``1.`` + 1000 digits does not).
    Jackson takes that path for any number that crosses the end of its 4000-character buffer, which only a line of
    more than 32768 characters has (shorter ones are parsed in one piece): there, at exactly 1001 digits so counted,
    the Spark job may keep a row this refuses (checked with Spark 4.1.1; the other way round cannot happen)."""
    mantissa, exp, exponent = token.lstrip("-").lower().partition("e")
    whole, dot, fraction = mantissa.partition(".")
    digits = len(whole) + len(fraction) + len(exponent.lstrip("+-"))
    if whole == "0" and bool(dot) != bool(exp):
        digits -= 1
    _check_digits(digits)
    return _JsonNumber(token)


def _refuse_constant(name: str) -> Any:
    """``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (RFC 8259): the line is broken, as for Spark."""
    raise ValueError(f"{name} is not a JSON value")


def _plain(value: Any) -> Any:
    """A parsed JSON value with its numbers as Python numbers again (for samples)."""
    if isinstance(value, _JsonNumber):
        return float(value)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _sample_value(value: Any) -> Any:
    if isinstance(value, _JsonNumber):  # a number, unless no double is that number: then the number as written
        number = float(value)
        value = number if np.isfinite(number) and Decimal(repr(number)) == Decimal(value) else str(value)
    elif isinstance(value, list | dict):
        value = json.dumps(_plain(value), ensure_ascii=False)
    if isinstance(value, str) and len(value) > MAX_SAMPLE_VALUE:
        return value[:MAX_SAMPLE_VALUE] + "..."
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if value is not None and not isinstance(value, str | int | float | bool):
        return str(value)
    return value


def _spark_unreadable_chunk(chunk: Any) -> str | None:
    """Why the feature job's Parquet reader (Spark 4.1) cannot read a column chunk pyarrow reads, or None: the whole
    run would fail on the file."""
    if chunk.compression == "BROTLI":
        return "is compressed with Brotli, for which Spark has no codec: write snappy, zstd, gzip or lz4"
    if "BYTE_STREAM_SPLIT" in chunk.encodings:
        return "uses the BYTE_STREAM_SPLIT encoding, which Spark's Parquet reader does not read: write it without"
    return None


_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads joins an escaped pair: what is left is half of one


def _lone_surrogate(value: Any) -> str | None:
    """The first lone UTF-16 surrogate in a parsed JSON value's strings, keys included, or None."""
    if isinstance(value, str):
        found = _SURROGATE.search(value)
        return found.group() if found else None
    items = [*value.keys(), *value.values()] if isinstance(value, dict) else value if isinstance(value, list) else []
    return next((half for v in items if (half := _lone_surrogate(v)) is not None), None)


def _cell(values: pa.Array, i: int) -> Any:
    """The value at ``i`` as Python, or as Arrow's text when Python has no such value (a date beyond year 9999)."""
    try:
        return values[i].as_py()
    except (OverflowError, ValueError):
        return pc.cast(values.slice(i, 1), pa.string())[0].as_py()


class _Checker:
    """Applies the compiled rules to each batch and accumulates counts, samples and uniqueness."""

    def __init__(self, contract: Contract, report: ValidationReport, uploaded_at: datetime, max_samples: int) -> None:
        self.contract = contract
        self.report = report
        self.max_samples = max_samples
        self.rules: dict[str, list[RowRule]] = {c.name: [] for c in contract.columns}
        self.blocking: dict[str, bool] = {}
        for rule in row_rules(contract, uploaded_at):
            self.rules[rule.column].append(rule)
            self.blocking[rule.name] = rule.blocking
        regex = {c.name: c.regex for c in contract.columns if c.type == "string"}
        self.unique = {
            name: UniqueTracker(capacity=contract.limits.max_rows, pattern=regex.get(name))
            for name in contract.unique_columns
        }
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dropzone-unique")
        self.descriptions = {r.name: r.describe() for rules in self.rules.values() for r in rules}
        for name in contract.unique_columns:
            self.descriptions[unique_rule_name(name)] = f"{name} repeats a value seen earlier in the file"
        self.descriptions[ROW_COLUMNS] = "row has the wrong number of fields"
        self.descriptions[ROW_JSON] = "line is not one readable JSON object"
        self.types = {c.name: c.type for c in contract.columns}
        # JSON values of a JSON type their column does not take (they fail ``<col>.parse``): column -> kinds, rows
        self.json_kinds: dict[str, set[str]] = {}
        self.json_kind_rows: dict[str, int] = {}
        self.first_detail: dict[str, str] = {}  # row.json, row.columns: what the first such row is

    def describe(self, name: str) -> str:
        """The phrase of a rule in reasons; ``<col>.parse`` names the JSON types that did not fit, if any, and a
        row no parser read the first such row's detail (in the samples too, but a notification shows reasons)."""
        if name in self.first_detail:
            return f"{self.descriptions.get(name, name)}; the first: {self.first_detail[name]}"
        column = name[: -len(".parse")] if name.endswith(".parse") else None
        if column is None or column not in self.json_kinds:
            return self.descriptions.get(name, name)
        wrong = describe_json_type_failure(column, self.types[column], self.json_kinds[column])
        others = self.report.rule_counts.get(name, 0) - self.json_kind_rows.get(column, 0)
        if others <= 0:
            return wrong
        return f"{self.descriptions.get(name, name)}; {self.json_kind_rows[column]} of them: {wrong}"

    def close(self) -> None:
        self._worker.shutdown(wait=True)

    def _count(self, name: str, n: int) -> None:
        if n:
            target = self.report.rule_counts
            target[name] = target.get(name, 0) + n
            if not self.blocking.get(name, True):
                self.report.flagged[name] = self.report.flagged.get(name, 0) + n

    def _limit_rows(self) -> None:
        limit = self.contract.limits.max_rows
        if self.report.rows_read > limit:
            raise Rejected(f"file has more than max_rows {limit} rows")

    def invalid_row(self, row: int, rule: str, detail: str, summary: str | None = None) -> None:
        """A row no parser could turn into values (wrong field count, broken JSON): bad, counted, sampled.
        ``summary``: what reasons say of it when ``detail`` holds the row's text."""
        self.report.rows_read += 1
        self.report.bad_rows += 1
        self._count(rule, 1)
        if rule not in self.first_detail:  # for reasons, which reach notifications: no row text
            self.first_detail[rule] = detail if summary is None else f"data row {row}, {summary}"
        if len(self.report.samples) < self.max_samples:
            self.report.samples.append({"row": row, "rules": [rule], "detail": detail[:MAX_SAMPLE_VALUE]})
        self._limit_rows()

    def check(
        self,
        columns: Mapping[str, pa.Array],
        n: int,
        *,
        first_row: int,
        row_numbers: Sequence[int] | np.ndarray | None = None,
        forced: Mapping[str, Sequence[bool]] | None = None,
        originals: Sequence[Mapping[str, Any]] | None = None,
    ) -> None:
        """Check ``n`` rows; ``forced`` marks rule failures found while reading (a JSON value of a JSON type its
        column does not take: ``<col>.parse``, where ``columns`` holds null for it); ``originals`` are the rows as
        read, for the samples, when ``columns`` holds something else (JSON values rendered as text)."""
        if n == 0:
            return
        masks: dict[str, pa.Array] = {}
        pending: dict[str, Future[np.ndarray]] = {}
        for column in self.contract.columns:
            raw = columns.get(column.name)
            if raw is None:
                raw = pa.nulls(n, pa.string())
            typed, parse_failed = typed_values(raw, column.type)
            # An id pattern's byte test, once, when both its regex rule and the uniqueness key need it.
            digits = digit_pattern(column.regex) if column.name in self.unique else None
            fits = digits.matches(typed) if digits is not None and pa.types.is_string(typed.type) else None
            if column.name in self.unique:
                # numpy releases the GIL: the uniqueness check of this batch overlaps the other rules.
                pending[column.name] = self._worker.submit(self.unique[column.name].add, typed, fits)
            for rule in self.rules[column.name]:
                masks[rule.name] = failure_mask(rule, column, raw, typed, parse_failed, digit_matches=fits)
        for name, future in pending.items():
            repeated = future.result()
            masks[unique_rule_name(name)] = bool_array(repeated) if repeated.any() else false_mask(n)
        for name, flags in (forced or {}).items():
            forced_mask = pa.array(flags, type=pa.bool_())
            masks[name] = pc.or_(masks[name], forced_mask) if name in masks else forced_mask
            required = name[: -len(".parse")] + ".required" if name.endswith(".parse") else None
            if required in masks:  # the value is there, of the wrong JSON type: not missing
                masks[required] = pc.and_(masks[required], pc.invert(forced_mask))
        failing = []
        for name, mask in masks.items():
            count = int(pc.sum(mask).as_py() or 0)
            self._count(name, count)
            if count and self.blocking.get(name, True):
                failing.append(mask)
        bad = any_of(failing, n)
        n_bad = int(pc.sum(bad).as_py() or 0) if failing else 0
        self.report.rows_read += n
        self.report.bad_rows += n_bad
        if n_bad and len(self.report.samples) < self.max_samples:
            need = self.max_samples - len(self.report.samples)
            rows = np.flatnonzero(bools(bad))[:need]
            for i in rows.tolist():
                failed = [name for name, m in masks.items() if self.blocking.get(name, True) and m[i].as_py()]
                if originals is not None:
                    values = {name: _sample_value(originals[i].get(name)) for name in columns}
                else:
                    values = {name: _sample_value(_cell(arr, i)) for name, arr in columns.items()}
                number = int(row_numbers[i]) if row_numbers is not None else first_row + i
                self.report.samples.append({"row": number, "rules": failed, "values": values})
        self._limit_rows()


def _schema_diff(found: Sequence[str], contract: Contract) -> SchemaDiff:
    seen = set(found)
    return SchemaDiff(
        missing=[c for c in contract.column_names if c not in seen],
        extra=[c for c in found if c not in set(contract.column_names)],
    )


def _reader_pool() -> pa.MemoryPool:
    """jemalloc returns freed blocks to the OS sooner than the default mimalloc: ~15-30 MiB lower peak RSS."""
    try:
        return pa.jemalloc_memory_pool()
    except (NotImplementedError, pa.ArrowNotImplementedError):
        return pa.default_memory_pool()


def _csv(guard: GuardedStream, contract: Contract, checker: _Checker, report: ValidationReport) -> None:
    first = guard.peek_line()
    if not first.strip(b"\r\n\t "):
        raise Rejected("file is empty" if not first else "file is empty (blank first line, no header)")
    line = first.removesuffix(b"\n").removesuffix(b"\r")  # a CR elsewhere in it: refused by the guard
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise Rejected(
            f"header line is not valid UTF-8 ({_bad_byte(e)}): the file is binary, or in {_ENCODINGS}"
        ) from None
    header = next(csv.reader([text]))
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise Rejected(f"header repeats column {duplicates[0]!r}")
    diff = _schema_diff(header, contract)
    if diff:
        report.schema = diff
        if _EXCEL_SEP.fullmatch(text.strip()):
            report.quarantine(
                f"the first line is {text.strip()!r}, a delimiter hint for Excel, not the header: remove it (the"
                " header must be the first line)"
            )
        # A wrong delimiter explains every missing and unexpected column below it: the producer reads it first.
        if len(header) == 1:
            for delimiter, label in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
                if delimiter in text:
                    report.quarantine(f"the header has one column: the file looks {label}-delimited; expected commas")
                    break
        for reason in diff.reasons():
            report.quarantine(reason)
        return
    invalid: list[tuple[int, str, str]] = []  # data row number, field counts, the row's text

    def on_invalid(row: Any) -> str:
        # the serial reader numbers records, the header being 1 (blank lines not counted): data row = number - 1
        number = row.number - 1 if row.number is not None and row.number > 0 else -1
        invalid.append((number, f"expected {row.expected_columns} fields, got {row.actual_columns}", row.text))
        return "skip"

    # One thread: the handler above then gets each invalid row's number (the threaded reader numbers none, and
    # parses blocks ahead in its own time, so reports varied from run to run). On the 1 GiB orders CSV the CPU time
    # is the same either way.
    reader = pa_csv.open_csv(
        guard,
        memory_pool=_reader_pool(),
        read_options=pa_csv.ReadOptions(block_size=CSV_BLOCK, use_threads=False),
        parse_options=pa_csv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
        convert_options=pa_csv.ConvertOptions(
            column_types={name: pa.string() for name in header},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
            check_utf8=False,  # checked below, per batch, where the first bad byte can be named
        ),
    )
    group: list[pa.RecordBatch] = []
    numbers: list[np.ndarray] = []  # data row numbers of the group's rows, when a block had invalid rows
    starts = [1, 1]  # data row number of the group's first row, and of the next block's

    def check_group() -> None:
        if group:
            table = pa.Table.from_batches(group).combine_chunks()
            rows = np.concatenate(numbers) if numbers else None
            group.clear()
            numbers.clear()
            columns = {name: table.column(name).chunk(0) for name in table.schema.names}
            checker.check(columns, table.num_rows, first_row=starts[0], row_numbers=rows)
        starts[0] = starts[1]

    for batch in reader:
        # The reader may have parsed (and reported the invalid rows of) blocks ahead: this block's invalid rows are
        # the numbers below its end, which each of them pushes one further; the rest wait for their block. An
        # invalid row that ends a block is taken with the next one: the numbers of the valid rows are the same.
        start, end, mine = starts[1], starts[1] + batch.num_rows, []
        invalid.sort(key=lambda item: item[0])
        while invalid and invalid[0][0] < end:
            mine.append(invalid.pop(0))
            end += 1
        if mine:
            check_group()  # the rows of earlier blocks first, then this block's invalid rows, then its others
            for number, counts, text in mine:
                checker.invalid_row(number, ROW_COLUMNS, f"{counts}: {text}", summary=counts)
            block = np.arange(start, end)
            kept = block[~np.isin(block, [number for number, _, _ in mine])]
            numbers.append(kept if len(kept) == batch.num_rows else block[: batch.num_rows])  # (unnumbered rows)
        elif numbers:
            numbers.append(np.arange(start, end))
        starts[1] = end
        # The guard is ahead of the reader: all ASCII so far, this batch too (and no UTF-8 to check)
        place = None if guard.ascii else _invalid_utf8(batch, start, numbers[-1] if numbers else None)
        if place is not None:
            raise Rejected(f"file is not valid UTF-8 text at {place}: {OTHER_ENCODING}")
        # Blocks stay small (pyarrow's reader memory grows fast with the block size: RSS), the checks run on 8 at a
        # time (~4 MiB, ~50,000 rows): fewer per-batch calls. 1 GiB orders CSV: 3 per check ~4.1 CPU-s, 8 ~3.6.
        group.append(batch)
        if len(group) == CSV_BATCHES_PER_CHECK:
            check_group()
    check_group()
    for number, counts, text in sorted(invalid, key=lambda item: item[0]):
        checker.invalid_row(number, ROW_COLUMNS, f"{counts}: {text}", summary=counts)


def _bad_byte(e: UnicodeDecodeError) -> str:
    """``0xE9 at byte 4``: the first byte a UTF-8 decode refused, counted from 1 in the bytes decoded."""
    return f"0x{e.object[e.start]:02X} at byte {e.start + 1}"


def _invalid_utf8(batch: pa.RecordBatch, first_row: int, rows: np.ndarray | None) -> str | None:
    """Where the batch's first byte that is not UTF-8 is (data row, column, byte of the value), or None: pyarrow's
    own check (``ConvertOptions.check_utf8``) fails the read naming no place. A column whose bytes are all ASCII
    is skipped. ``rows``: the data row number of each row, when they are not ``first_row`` onwards."""
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        data = column.buffers()[2]
        if data is None or np.frombuffer(data, dtype=np.uint8).max(initial=0) < 0x80:
            continue  # ASCII (the column's whole data buffer)
        try:
            column.validate(full=True)
            continue
        except pa.ArrowInvalid:
            pass
        for i, value in enumerate(column.view(pa.binary()).to_pylist()):
            try:
                if value is not None:
                    value.decode("utf-8")
            except UnicodeDecodeError as e:
                row = int(rows[i]) if rows is not None else first_row + i
                around = value[max(0, e.start - 20) : e.start + 20].decode("utf-8", errors="backslashreplace")
                shown = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in around)
                byte = f'byte {e.start + 1} of its value (0x{value[e.start]:02X} in "{shown}")'
                return f"data row {row}, column {name!r}, {byte}"
        return f"column {name!r}"  # (pyarrow found what Python's decoder did not)
    return None


def _json_depth_guard(block: bytes, first_line: int, limit: int) -> None:
    """Reject a block whose JSON nests deeper than ``limit`` (strings ignored), before anything parses it."""
    if block.count(b"[") + block.count(b"{") <= limit:
        return
    data = np.frombuffer(block, dtype=np.uint8)
    starts = np.concatenate(([0], np.flatnonzero(data == 10) + 1))
    starts = starts[starts < len(data)]
    opens = ((data == ord("{")) | (data == ord("["))).astype(np.int32)
    if int(np.add.reduceat(opens, starts).max()) <= limit:
        return  # no line even holds more than ``limit`` opening brackets (in strings or not)
    stripped = np.frombuffer(_JSON_STRING.sub(b'""', block), dtype=np.uint8)
    opens = (stripped == ord("{")) | (stripped == ord("["))
    closes = (stripped == ord("}")) | (stripped == ord("]"))
    depth = np.cumsum(opens.astype(np.int64) - closes.astype(np.int64))
    newline = stripped == ord("\n")
    line = np.cumsum(newline) - newline  # the newline belongs to its own line
    base = np.concatenate(([0], depth[newline]))
    relative = depth - base[line]
    if relative.size and int(relative.max()) > limit:
        at = int(np.argmax(relative > limit))
        on_line = line == line[at]
        deepest = int(relative[on_line].max())
        raise Rejected(f"nesting depth {deepest} exceeds limit {limit} at line {first_line + int(line[at])}")


def _json_int_text(number: str) -> str:
    """A JSON number with a fraction or an exponent → the text of its value for an int column: the digits when the
    value is whole and within 64 bits, else the number as written (which then fails ``parse``). The value is exact
    when written without an exponent in at most 38 digits and 38 decimals (how Spark's variant stores a JSON
    number: a decimal), else the nearest double (Spark: a double)."""
    if "e" not in number and "E" not in number:
        exact = Decimal(number)
        shape = exact.as_tuple()
        if len(shape.digits) <= DECIMAL_DIGITS and -int(shape.exponent) <= DECIMAL_DIGITS:
            return str(int(exact)) if exact == exact.to_integral_value() else number
    value = float(number)
    if value.is_integer() and INT64_RANGE[0] <= value < INT64_RANGE[1]:
        return str(int(value))
    return number


def _json_text(value: Any, ctype: str) -> tuple[str | None, str | None]:
    """A JSON value → (text for the type parser, the value's JSON kind when the column does not take it).

    The rule is ``dropzone.rules.JSON_KINDS`` (docs/validation.md, "JSON Lines"); a refused value has no text.
    """
    if value is None:
        return None, None
    if type(value) is str:
        kind = "string"
    elif isinstance(value, _JsonNumber | int) and not isinstance(value, bool):
        kind = "number"
    elif isinstance(value, bool):
        kind = "bool"
    else:
        kind = "array" if isinstance(value, list) else "object"
    if kind not in JSON_KINDS[ctype]:
        return None, kind
    if kind == "string":
        return value, None
    if kind == "bool":
        return ("true" if value else "false"), None
    if isinstance(value, int):
        return str(value), None
    # a fraction or an exponent: a double column reads it as written (the double parser takes JSON's syntax)
    return (_json_int_text(value) if ctype == "int" else str.__str__(value)), None


# JSON types of each contract type for the pyarrow JSON reader: a value of any other JSON type fails the read.
_JSON_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int64(),
    "double": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.string(),
    "timestamp": pa.string(),
}


def _jsonl_fast(block: bytes, types: Mapping[str, str], keys_seen: set[str]) -> dict[str, pa.Array] | None:
    """A depth-guarded block read by pyarrow's JSON reader, or None when the per-line path must decide.

    Taken only when the answer is provably the per-line one: valid UTF-8, every line one object (row count = line
    count, no blank line), each value of the JSON type its column maps to (pyarrow refuses the block otherwise: a
    number in a string column, ``3.0`` in an int column, ``1`` in a bool column, a repeated key), no key outside the
    contract (their order of appearance is reported), every contract key not yet seen in the file non-null in
    the block (an all-null column cannot tell a null from a missing key), only finite doubles (pyarrow takes
    ``NaN``/``Infinity``, which are not JSON) and no run of number characters long enough to hold a number of more
    than JSON_MAX_NUMBER_DIGITS digits (pyarrow takes those too).
    """
    data = np.frombuffer(block, dtype=np.uint8)
    newline = data == 10
    blank = newline | (data == 32) | (data == 9) | (data == 13)
    starts = np.concatenate(([0], np.flatnonzero(newline) + 1))
    starts = starts[starts < len(data)]
    if int(np.add.reduceat(~blank, starts).min() if len(starts) else 0) == 0:
        return None  # a blank line: skipped by the per-line path, which counts it in the line numbers
    lines = len(starts)
    ends = np.append(starts[1:], len(data))
    longest = int((ends - starts).max())
    # pyarrow reads a double of any length; a number Spark refuses for its length is for the per-line path
    if longest > JSON_MAX_NUMBER_DIGITS and b"0" * (JSON_MAX_NUMBER_DIGITS + 1) in block.translate(_NUMBER_RUNS):
        return None
    schema = pa.schema([(name, _JSON_TYPES[ctype]) for name, ctype in types.items()])
    try:
        table = pa_json.read_json(
            pa.py_buffer(block),
            read_options=pa_json.ReadOptions(use_threads=False, block_size=len(block) + 1),
            parse_options=pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error"),
        )
    except (pa.ArrowException, ValueError):
        return None
    if table.num_rows != lines or table.schema.names != list(types):
        return None
    columns = {name: table.column(name).combine_chunks() for name in types}
    try:
        for array in columns.values():
            array.validate(full=True)  # pyarrow's JSON reader leaves invalid UTF-8 in strings unchecked
    except pa.ArrowInvalid:
        return None
    unseen = [name for name in types if name not in keys_seen]
    if any(columns[name].null_count == len(columns[name]) for name in unseen):
        return None
    for name, ctype in types.items():
        # pyarrow reads NaN and Infinity, which are not JSON (broken lines); 1e400 is JSON (inf): the per-line path
        values = columns[name]
        if ctype == "double" and values.null_count < len(values) and not pc.all(pc.is_finite(values)).as_py():
            return None
    keys_seen.update(unseen)
    return columns


def _jsonl(guard: GuardedStream, contract: Contract, checker: _Checker, report: ValidationReport) -> None:
    limit = contract.limits.max_nesting_depth
    types = {c.name: c.type for c in contract.columns}
    keys_seen: set[str] = set()
    extra_seen: list[str] = []
    pending = b""
    next_line = 1
    started = False
    while True:
        chunk = guard.read(JSON_BLOCK)
        if chunk:
            pending += chunk
            cut = pending.rfind(b"\n")
            if cut < 0:
                continue
            block, pending = pending[: cut + 1], pending[cut + 1 :]
        else:
            block, pending = pending, b""
            if not block:
                break
        if not started:
            started = True
            if block.lstrip()[:1] == b"[":
                raise Rejected("file is a JSON array; expected JSON Lines (one object per line)")
        _json_depth_guard(block, next_line, limit)  # before any parser sees the block
        fast = _jsonl_fast(block, types, keys_seen) if block else None
        if fast is not None:
            n = len(next(iter(fast.values())))
            checker.check(fast, n, first_row=next_line)
            next_line += n
            if not chunk:
                break
            continue
        values: dict[str, list[str | None]] = {name: [] for name in types}
        forced: dict[str, list[bool]] = {}
        numbers: list[int] = []
        originals: list[dict[str, Any]] = []
        lines = block.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()
        for offset, line in enumerate(lines):
            number = next_line + offset
            if not line.strip():
                continue
            try:
                row = json.loads(line, parse_float=_json_number, parse_int=_json_int, parse_constant=_refuse_constant)
            except (ValueError, RecursionError) as e:
                if isinstance(e, UnicodeDecodeError):
                    detail = f"not valid UTF-8 ({_bad_byte(e)}): save the file as UTF-8"
                else:
                    detail = f"not valid JSON: {e}"
                if isinstance(e, json.JSONDecodeError) and e.msg == "Extra data" and BARE_CR.search(line):
                    detail += "; a carriage return alone ends no line here: end lines with LF or CRLF"
                checker.invalid_row(number, ROW_JSON, f"line {number} is {detail}")
                continue
            if not isinstance(row, dict):
                checker.invalid_row(number, ROW_JSON, f"line {number} is a JSON {type(row).__name__}, not an object")
                continue
            if b"\\u" in line and (half := _lone_surrogate(row)) is not None:
                checker.invalid_row(
                    number,
                    ROW_JSON,
                    f"line {number} has an escape of half a UTF-16 surrogate pair (\\u{ord(half):04x} alone), which is"
                    " no text: write the character whole",
                )
                continue
            index = len(numbers)
            numbers.append(number)
            originals.append(row)
            for key in row:
                if key not in keys_seen:
                    keys_seen.add(key)
                    if key not in types:
                        extra_seen.append(key)
            for name, ctype in types.items():
                text, wrong_kind = _json_text(row.get(name), ctype)
                values[name].append(text)
                if wrong_kind is not None:
                    flags = forced.setdefault(f"{name}.parse", [])
                    flags.extend([False] * (index + 1 - len(flags)))
                    flags[index] = True
                    checker.json_kinds.setdefault(name, set()).add(wrong_kind)
                    checker.json_kind_rows[name] = checker.json_kind_rows.get(name, 0) + 1
        next_line += len(lines)
        n = len(numbers)
        for flags in forced.values():
            flags.extend([False] * (n - len(flags)))
        arrays = {name: pa.array(v, type=pa.string()) for name, v in values.items()}
        checker.check(
            arrays, n, first_row=numbers[0] if numbers else 0, row_numbers=numbers, forced=forced, originals=originals
        )
        if not chunk:
            break
    if keys_seen:
        diff = SchemaDiff(missing=[c for c in types if c not in keys_seen], extra=extra_seen)
        if diff:
            report.schema = diff
            for reason in diff.reasons():
                report.quarantine(reason)


def _seekable(stream: Any, max_bytes: int) -> Any:
    """Parquet needs random access: use the stream if it seeks, else spool it (to disk past 64 MiB)."""
    seekable = getattr(stream, "seekable", None)
    if callable(seekable) and seekable():
        return stream
    spool = tempfile.SpooledTemporaryFile(max_size=64 << 20)  # noqa: SIM115 - returned to the caller, closed there
    total = 0
    while chunk := stream.read(1 << 20):
        total += len(chunk)
        if total > max_bytes:
            raise Rejected(f"file is larger than max_bytes {human_size(max_bytes)}")
        spool.write(chunk)
    spool.seek(0)
    return spool


def _parquet(stream: Any, contract: Contract, checker: _Checker, report: ValidationReport) -> None:
    limits = contract.limits
    f = _seekable(stream, limits.max_bytes)
    size = f.seek(0, io.SEEK_END)
    report.bytes_read = size
    if size > limits.max_bytes:
        raise Rejected(f"file is larger than max_bytes {human_size(limits.max_bytes)}")
    if size == 0:
        raise Rejected("file is empty")
    if size < 12:
        raise Rejected(f"file is too small to be Parquet ({size} bytes)")
    f.seek(0)
    head = f.read(4)
    f.seek(size - 8)
    tail = f.read(8)
    if head != b"PAR1":
        raise Rejected("not a Parquet file: no PAR1 magic bytes at the start")
    if tail[4:] != b"PAR1":
        raise Rejected("Parquet file is truncated: no PAR1 magic bytes at the end")
    footer = int.from_bytes(tail[:4], "little")
    if footer + 12 > size:
        raise Rejected(f"Parquet footer claims {footer} bytes but the file has only {size}")
    if footer > MAX_PARQUET_FOOTER:
        raise Rejected(f"Parquet footer is {human_size(footer)}, over the {human_size(MAX_PARQUET_FOOTER)} limit")
    f.seek(0)
    try:
        pf = pq.ParquetFile(f)
        meta = pf.metadata
        schema = pf.schema_arrow
    except (pa.ArrowException, OSError, ValueError) as e:
        raise Rejected(f"Parquet footer is unreadable: {_first_line(e)}") from None
    names = list(schema.names)
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise Rejected(f"Parquet schema repeats column {duplicates[0]!r}")
    diff = _schema_diff(names, contract)
    for column in contract.columns:
        if column.name in names:
            found = schema.field(column.name).type
            why = spark_unreadable(found)
            if why is not None or not compatible(found, column.type):
                shown = str(found) if why is None else f"{found} ({why})"
                diff.wrong_type.append({"column": column.name, "expected": column.type, "found": shown})
    if diff:
        report.schema = diff
        for reason in diff.reasons():
            report.quarantine(reason)
        return
    in_groups = sum(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
    if in_groups != meta.num_rows:
        raise Rejected(f"Parquet footer says {meta.num_rows} rows but its row groups hold {in_groups}")
    if meta.num_rows > limits.max_rows:
        raise Rejected(f"file has {meta.num_rows} rows, more than max_rows {limits.max_rows}")
    wanted = set(contract.column_names)
    for g in range(meta.num_row_groups):
        group = meta.row_group(g)
        for c in range(group.num_columns):
            chunk = group.column(c)
            name = chunk.path_in_schema
            end = max(chunk.data_page_offset, chunk.dictionary_page_offset or 0) + chunk.total_compressed_size
            if chunk.data_page_offset < 4 or chunk.file_offset > size or end > size + chunk.total_compressed_size:
                raise Rejected(f"row group {g} column {name!r} points outside the file (the footer lies)")
            unreadable = _spark_unreadable_chunk(chunk) if name in wanted else None
            if unreadable is not None:
                raise Rejected(f"row group {g} column {name!r} {unreadable}")
            stats = chunk.statistics
            if name in wanted and stats is not None and stats.has_null_count and stats.null_count > group.num_rows:
                raise Rejected(f"row group {g} column {name!r}: footer statistics count more nulls than rows")
    row = 1
    for g in range(meta.num_row_groups):
        expected = meta.row_group(g).num_rows
        got = 0
        try:
            for batch in pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=[g], columns=list(wanted)):
                columns = dict(zip(batch.schema.names, batch.columns, strict=True))
                checker.check(columns, batch.num_rows, first_row=row)
                got += batch.num_rows
                row += batch.num_rows
        except (pa.ArrowException, OSError) as e:
            raise Rejected(f"row group {g} is unreadable: {_first_line(e)}") from None
        if got != expected:
            raise Rejected(f"row group {g} holds {got} rows but the footer says {expected}")


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else type(e).__name__


def _arrow_reason(e: BaseException, fmt: str, report: ValidationReport) -> str:
    message = _first_line(e)
    if "utf8" in message.lower() or "utf-8" in message.lower():
        return f"file is not valid UTF-8 text (in the block after row {report.rows_read}): {OTHER_ENCODING}"
    return f"file cannot be read as {fmt}: {message}"


def _finish(report: ValidationReport, contract: Contract, checker: _Checker | None, aborted: bool) -> None:
    if aborted or (report.schema and report.rows_read == 0):
        return  # the reason is already there; row counts of a half-read file would mislead
    if report.rows_read == 0:
        report.quarantine(
            "file has a header but no data rows" if report.format.startswith("csv") else "file has no rows"
        )
        return
    limit = contract.limits.max_bad_row_fraction
    if report.bad_fraction > limit:
        report.quarantine(
            f"{_pct(report.bad_fraction)} of rows are bad (limit {_pct(limit)}): "
            f"{report.bad_rows} of {report.rows_read}"
        )
        for name, count in sorted(report.rule_counts.items(), key=lambda kv: -kv[1]):
            if name in report.flagged:
                continue
            report.reasons.append(f"{name}: {count} rows ({checker.describe(name) if checker is not None else name})")


def validate_stream(
    stream: BinaryIO | Any,
    *,
    name: str,
    contract: Contract,
    size: int | None = None,
    uploaded_at: datetime | None = None,
    max_samples: int = 20,
) -> ValidationReport:
    """Validate one file read from ``stream`` (any binary file-like; seekable for Parquet) against ``contract``.

    ``name`` gives the format by its suffix; ``uploaded_at`` (default now) bounds future timestamps.
    """
    started = time.perf_counter()
    uploaded = uploaded_at or datetime.now(UTC)
    if uploaded.tzinfo is None:
        uploaded = uploaded.replace(tzinfo=UTC)
    fmt = detect_format(name)
    report = ValidationReport(
        name=name, dataset=contract.dataset, format=fmt or "unknown", size=size, uploaded_at=uploaded.isoformat()
    )
    checker: _Checker | None = None
    guard: GuardedStream | None = None
    aborted = False
    try:
        if fmt is None:
            raise Rejected(f"unsupported file name {Path(name).name!r}: expected {read_suffixes()}")
        if fmt not in contract.formats:
            raise Rejected(
                f"format {fmt} is not accepted for {contract.dataset} (accepted: {', '.join(contract.formats)})"
            )
        if size is not None and size > contract.limits.max_bytes:
            raise Rejected(f"file is {human_size(size)}, larger than max_bytes {human_size(contract.limits.max_bytes)}")
        if size == 0:
            raise Rejected("file is empty (0 bytes)")
        checker = _Checker(contract, report, uploaded, max_samples)
        if fmt == "parquet":
            _parquet(stream, contract, checker, report)
        else:
            guard = GuardedStream(
                stream,
                gzip=True if fmt.endswith(".gz") else None,
                max_bytes=contract.limits.max_bytes,
                max_line_length=contract.limits.max_line_length,
                lone_cr=not fmt.startswith("csv"),
            )
            if guard.gzip and not fmt.endswith(".gz"):
                # The feature job's reader (Hadoop's) picks the codec by the name: it would read the compressed bytes
                # as text and fail the batch's run.
                raise Rejected(
                    f"content is gzip but the name says {fmt}: name it {Path(name).name}.gz (the feature job reads a"
                    " file by its name)"
                )
            if fmt.startswith("csv"):
                _csv(guard, contract, checker, report)
            else:
                _jsonl(guard, contract, checker, report)
    except Rejected as e:
        aborted = True
        report.quarantine(str(e))
    except (pa.ArrowException, OSError, ValueError, EOFError, zlib.error, RecursionError) as e:
        aborted = True
        if guard is not None and guard.rejection is not None:
            report.quarantine(guard.rejection)
        else:
            report.quarantine(_arrow_reason(e, fmt or "unknown", report))
    finally:
        if checker is not None:
            checker.close()
    if guard is not None:
        report.bytes_read = guard.bytes_read
    _finish(report, contract, checker, aborted)
    report.duration_s = time.perf_counter() - started
    return report


def validate_path(path: str | Path, contract: Contract, *, uploaded_at: datetime | None = None) -> ValidationReport:
    """Validate a local file; ``uploaded_at`` defaults to now (a producer checking a file before upload)."""
    p = Path(path)
    with p.open("rb") as f:
        return validate_stream(f, name=p.name, contract=contract, size=p.stat().st_size, uploaded_at=uploaded_at)
