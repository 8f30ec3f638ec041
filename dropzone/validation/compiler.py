"""The pyarrow compiler of :mod:`dropzone.rules`: typed values and one failure mask per rule, per record batch.

Vectorized with pyarrow.compute; per-value Python runs only when a batch holds a value that matches a type's text
pattern yet still does not convert (e.g. ``2025-02-30``), to find which values those are.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from dropzone.contract import Column
from dropzone.rules import TEXT_PATTERNS, RowRule
from dropzone.validation.digits import digit_pattern, offsets, valid

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int64(),
    "double": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}
_ZONE = r"(?:Z|[+-][0-9]{2}:?[0-9]{2})$"


@functools.lru_cache(maxsize=8)  # arrays are immutable: one all-False array per batch length is enough
def _false(n: int) -> pa.Array:
    return pa.BooleanArray.from_buffers(pa.bool_(), n, [None, pa.py_buffer(bytes((n + 7) // 8))])


def false_mask(n: int) -> pa.Array:
    """An all-False boolean array of length ``n`` (cached: arrays are immutable)."""
    return _false(n)


def bool_array(mask: np.ndarray) -> pa.Array:
    """A numpy bool array as an Arrow boolean array (no nulls), bit-packed by numpy: ``pa.array(mask,
    type=pa.bool_())`` converts value by value (~1.7 ms per 20,000 values, ~600x slower)."""
    bits = np.packbits(np.ascontiguousarray(mask, dtype=bool), bitorder="little")
    return pa.BooleanArray.from_buffers(pa.bool_(), len(mask), [None, pa.py_buffer(bits)])


def _cast_values(candidates: pa.Array, target: pa.DataType) -> tuple[pa.Array, pa.Array | None]:
    """Cast; if one value still fails, cast value by value. Returns (typed, mask of values that failed or None)."""
    try:
        return pc.cast(candidates, target), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    values: list[object] = []
    failed: list[bool] = []
    for i, scalar in enumerate(candidates):
        if not scalar.is_valid:
            values.append(None)
            failed.append(False)
            continue
        try:  # the value as an array of one, not through Python (which may hold no such value)
            values.append(pc.cast(candidates.slice(i, 1), target)[0].as_py())
            failed.append(False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            values.append(None)
            failed.append(True)
    return pa.array(values, type=target), pa.array(failed, type=pa.bool_())


def _all_width(text: pa.Array, width: int, last: bytes | None) -> bool:
    """Is every value non-null, exactly ``width`` bytes long and (``last``) ending with that byte? Read from the
    offsets and data buffers: ~10x cheaper than ``utf8_length`` and ``ends_with`` kernels. A value of ``width``
    bytes that the strict ISO casts below accept is ASCII, so bytes and characters agree there."""
    bounds = offsets(text)
    if bounds is None or text.null_count:
        return False
    if not bool((np.diff(bounds) == width).all()):
        return False
    if last is None:
        return True
    data = np.frombuffer(text.buffers()[2], dtype=np.uint8)
    ends = data[bounds[1:].astype(np.intp) - 1]
    return bool((ends == last[0]).all())


def _fast_parse(text: pa.Array, ctype: str) -> pa.Array | None:
    """The common spelling of each type in one or two passes; None when any value needs the full path.

    Only spellings inside the documented forms are taken here (Arrow's number and bool parsers accept a subset of
    them; timestamps must be exactly ``YYYY-MM-DDTHH:MM:SSZ`` and dates ``YYYY-MM-DD``, checked by length too).
    The length tests only decide whether to try the cast: any value they let through that the rules refuse, the
    cast refuses too, and None sends the batch to the full path.
    """
    try:
        if ctype in ("double", "bool"):
            return pc.cast(text, ARROW_TYPES[ctype])
        if ctype == "int":
            bounds = offsets(text)
            # bytes >= characters (null slots count too): never lets a longer value through
            longest = int(np.diff(bounds).max()) if bounds is not None else pc.max(pc.utf8_length(text)).as_py()
            if (longest or 0) <= 19:
                return pc.cast(text, ARROW_TYPES[ctype])
            return None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if ctype in ("timestamp", "date"):
        width = 20 if ctype == "timestamp" else 10
        last = b"Z" if ctype == "timestamp" else None
        if not _all_width(text, width, last):
            # with nulls (or another layout): the character-length kernels, which skip nulls
            if text.null_count == len(text) or pc.min_max(pc.utf8_length(text)).as_py() != {"min": width, "max": width}:
                return None
            if ctype == "timestamp" and not pc.all(pc.ends_with(text, "Z")).as_py():
                return None
        try:
            return pc.cast(text, ARROW_TYPES[ctype])  # Arrow's ISO 8601 parser checks the calendar
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
    return None


def parse_text(text: pa.Array, ctype: str) -> tuple[pa.Array, pa.Array]:
    """Text → the column type per the rules module; returns (typed values, parse-failure mask without nulls)."""
    if ctype == "string":
        return text, _false(len(text))
    fast = _fast_parse(text, ctype)
    if fast is not None:
        return fast, _false(len(text))
    if text.offset:
        # if_else with a null scalar misreads a sliced string array before the fix of apache/arrow#49410 (pyarrow 20,
        # the Lambda pin, has the bug): one copy at offset 0
        text = pa.concat_arrays([text])
    matches = pc.match_substring_regex(text, TEXT_PATTERNS[ctype])
    candidates = pc.if_else(matches, text, pa.scalar(None, pa.string()))
    if ctype == "bool":
        candidates = pc.utf8_lower(candidates)
    elif ctype == "int" and pc.any(pc.starts_with(candidates, "+")).as_py():
        candidates = pc.replace_substring_regex(candidates, r"^\+", "")  # Arrow's int cast refuses a leading '+'
    elif ctype == "timestamp":
        # The rules allow up to 9 fractional digits; timestamps are microseconds here as in Spark and Parquet, so
        # digits 7-9 are truncated like Spark does (Arrow's cast would refuse the lost precision).
        candidates = pc.replace_substring_regex(candidates, r"(\.[0-9]{6})[0-9]{1,3}", r"\1")
        if not pc.all(pc.ends_with(candidates, "Z")).as_py():
            zoned = pc.match_substring_regex(candidates, _ZONE)
            candidates = pc.if_else(zoned, candidates, pc.binary_join_element_wise(candidates, pa.scalar("Z"), ""))
    typed, cast_failed = _cast_values(candidates, ARROW_TYPES[ctype])
    failed = pc.and_(pc.is_valid(text), pc.invert(pc.fill_null(matches, False)))
    if cast_failed is not None:
        failed = pc.or_(failed, cast_failed)
    return typed, pc.fill_null(failed, False)


def compatible(found: pa.DataType, ctype: str) -> bool:
    """Can a typed (Parquet) column of ``found`` type hold the contract type ``ctype`` without losing meaning?"""
    if pa.types.is_dictionary(found):
        found = found.value_type
    if pa.types.is_null(found):
        return True
    if pa.types.is_string(found) or pa.types.is_large_string(found):
        return True  # text is parsed like CSV
    return {
        "string": False,
        "int": pa.types.is_integer(found),
        "double": pa.types.is_floating(found) or pa.types.is_integer(found) or pa.types.is_decimal(found),
        "bool": pa.types.is_boolean(found),
        "date": pa.types.is_date(found),
        "timestamp": pa.types.is_timestamp(found) or pa.types.is_date(found),
    }[ctype]


def spark_unreadable(found: pa.DataType) -> str | None:
    """Why the Spark job cannot read a Parquet column of type ``found`` (its Parquet reader fails the whole run on
    the file), or None."""
    if pa.types.is_dictionary(found):
        found = found.value_type
    if pa.types.is_float16(found):
        return "Spark does not read 16-bit floats"
    if pa.types.is_decimal(found) and found.precision > 38:
        return "Spark reads decimals of at most 38 digits"
    return None


def typed_values(values: pa.Array, ctype: str) -> tuple[pa.Array, pa.Array]:
    """Any input array (text or typed) → (values of the contract type, parse-failure mask)."""
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    if pa.types.is_large_string(values.type):
        values = values.cast(pa.string())
    if pa.types.is_null(values.type):
        return pa.nulls(len(values), ARROW_TYPES[ctype]), _false(len(values))
    if pa.types.is_string(values.type):
        return parse_text(values, ctype)
    if ctype == "timestamp" and pa.types.is_timestamp(values.type) and values.type.unit == "ns":
        # Nanoseconds (pandas' default unit, Parquet's INT96) are kept to the microsecond, rounded down, as the Spark
        # job keeps them (spark_app.io) and as text with more than six decimals is read: not a failed cast.
        values = pc.floor_temporal(values, unit="microsecond")
    if ctype == "timestamp" and pa.types.is_timestamp(values.type) and values.type.tz is None:
        values = pc.assume_timezone(values, "UTC")
    if ctype == "double" and (pa.types.is_integer(values.type) or pa.types.is_decimal(values.type)):
        # The nearest double, as Spark's cast gives it: an integer beyond 2**53 is no failure (a checked cast fails)
        return pc.cast(values, ARROW_TYPES[ctype], safe=False), _false(len(values))
    typed, failed = _cast_values(values, ARROW_TYPES[ctype])  # e.g. a uint64 beyond the int64 range fails parse
    failed = _false(len(values)) if failed is None else failed
    if ctype in _FOUR_DIGIT_YEARS:
        failed = pc.or_(failed, _outside_four_digit_years(typed, ctype))
    return typed, failed


# Dates and timestamps whose year Spark writes in four digits, 0000-01-01 to 9999-12-31T23:59:59.999999 UTC (days and
# microseconds from 1970): the Spark job checks a typed Parquet value as that text, where a value outside fails the
# YYYY pattern (e.g. '+10000-01-01'). The value is kept, so the other rules see it as Spark does.
_FOUR_DIGIT_YEARS = {"date": (-719_528, 2_932_896), "timestamp": (-62_167_219_200_000_000, 253_402_300_799_999_999)}


def _outside_four_digit_years(typed: pa.Array, ctype: str) -> pa.Array:
    low, high = _FOUR_DIGIT_YEARS[ctype]
    count = pc.cast(typed, pa.int32() if ctype == "date" else pa.int64())
    return pc.fill_null(pc.or_(pc.less(count, low), pc.greater(count, high)), False)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@functools.lru_cache(maxsize=64)
def _scalar(value: float | int, arrow_type: pa.DataType) -> pa.Scalar:
    """An Arrow scalar from the bytes of a one-value numpy array. ``pa.scalar`` converts a Python object, which makes
    pyarrow import pandas (when installed) to check for pandas types: ~0.17 CPU-s once per process."""
    width = arrow_type.bit_width
    dtype = {("f", 64): np.float64, ("i", 64): np.int64, ("i", 32): np.int32}[
        ("f" if pa.types.is_floating(arrow_type) else "i", width)
    ]
    one = np.array([value], dtype=dtype)
    return pa.Array.from_buffers(arrow_type, 1, [None, pa.py_buffer(one)])[0]


def _bound(value: datetime, ctype: str) -> pa.Scalar:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if ctype == "date":
        return _scalar((value.date() - _EPOCH.date()).days, pa.date32())
    return _scalar((value - _EPOCH) // timedelta(microseconds=1), ARROW_TYPES["timestamp"])


def failure_mask(
    rule: RowRule,
    column: Column,
    raw: pa.Array,
    typed: pa.Array,
    parse_failed: pa.Array,
    *,
    digit_matches: np.ndarray | None = None,
) -> pa.Array:
    """True where ``rule`` fails (never null). ``raw`` is the input as read, ``typed`` the parsed values.

    ``digit_matches``: for a regex rule of an id pattern, its byte test of ``typed`` if the caller already ran it.
    """
    kind = rule.kind
    if kind == "required":
        return pc.is_null(raw) if raw.null_count else _false(len(raw))
    if kind == "parse":
        return parse_failed
    if kind == "finite":
        mask = pc.invert(pc.is_finite(typed))
    elif kind == "min":
        mask = pc.less(typed, _scalar(float(rule.value), pa.float64()))
    elif kind == "max":
        mask = pc.greater(typed, _scalar(float(rule.value), pa.float64()))
    elif kind == "allowed":
        mask = pc.invert(pc.is_in(typed, value_set=pa.array(list(rule.value), type=typed.type)))
    elif kind == "regex":
        digits = digit_pattern(rule.value)
        if digits is not None and pa.types.is_string(typed.type):  # an id pattern: a byte test, same answer
            matched = digits.matches(typed) if digit_matches is None else digit_matches
            failed = ~matched  # True for nulls too: they only fail ``required``
            if typed.null_count:
                failed &= valid(typed)
            return bool_array(failed)
        mask = pc.invert(pc.match_substring_regex(typed, rule.value))
    elif kind == "max_length":
        bounds = offsets(typed)
        # bytes >= characters (null slots count too), so no value is too long when no slot has more bytes
        longest = int(np.diff(bounds).max()) if bounds is not None else pc.max(pc.binary_length(typed)).as_py()
        if (longest or 0) <= rule.value:
            return _false(len(typed))
        mask = pc.greater(pc.utf8_length(typed), rule.value)
    elif kind == "too_old":
        mask = pc.less(typed, _bound(rule.value, column.type))
    elif kind == "future":
        mask = pc.greater(typed, _bound(rule.value, column.type))
    elif kind == "formula":
        if pa.types.is_string(typed.type) and all(len(p) == 1 and p.isascii() for p in rule.value):
            # an ASCII character starts a UTF-8 string iff its first byte is that character
            bounds = offsets(typed)
            if bounds is None:  # no values
                return _false(0)
            data_buf = typed.buffers()[2]
            n = len(typed)
            data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(1, np.uint8)
            starts = bounds[:-1]
            first = data[np.minimum(starts, len(data) - 1)] if len(data) else np.zeros(n, np.uint8)
            hit = np.isin(first, np.frombuffer("".join(rule.value).encode(), dtype=np.uint8)) & (bounds[1:] > starts)
            if typed.null_count:
                hit &= valid(typed)
            return bool_array(hit)
        mask = pc.is_in(pc.utf8_slice_codeunits(typed, 0, 1), value_set=pa.array(list(rule.value)))
    else:
        # Our bug, not the file's: not a ValueError, which validate_stream would blame on the file (quarantined as
        # unreadable). Raised, it fails the ingest message, which is retried and then kept in the DLQ.
        raise NotImplementedError(f"no pyarrow compiler for rule kind {kind!r}")
    if kind in ("allowed", "formula"):  # is_in answers False (not null) for a null: invert would flag it
        mask = pc.and_(mask, pc.is_valid(typed))
    return pc.fill_null(mask, False) if mask.null_count else mask


def any_of(masks: Sequence[pa.Array], n: int) -> pa.Array:
    out = _false(n)
    for mask in masks:
        out = pc.or_(out, mask)
    return out
