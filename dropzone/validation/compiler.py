"""The pyarrow compiler of :mod:`dropzone.rules`: typed values and one failure mask per rule, per record batch.

Vectorized with pyarrow.compute; per-value Python runs only when a batch holds a value that matches a type's text
pattern yet still does not convert (e.g. ``2025-02-30``), to find which values those are.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import pyarrow as pa
import pyarrow.compute as pc

from dropzone.contract import Column
from dropzone.rules import TEXT_PATTERNS, RowRule

ARROW_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int": pa.int64(),
    "double": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "timestamp": pa.timestamp("us", tz="UTC"),
}
_ZONE = r"(?:Z|[+-][0-9]{2}:?[0-9]{2})$"


def _false(n: int) -> pa.BooleanArray:
    return pa.array([False] * n, type=pa.bool_()) if n < 64 else pc.fill_null(pa.nulls(n, pa.bool_()), False)


def _cast_values(candidates: pa.Array, target: pa.DataType) -> tuple[pa.Array, pa.Array | None]:
    """Cast; if one value still fails, cast value by value. Returns (typed, mask of values that failed or None)."""
    try:
        return pc.cast(candidates, target), None
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        pass
    values: list[object] = []
    failed: list[bool] = []
    for scalar in candidates:
        if not scalar.is_valid:
            values.append(None)
            failed.append(False)
            continue
        try:
            values.append(pc.cast(pa.array([scalar.as_py()], type=candidates.type), target)[0].as_py())
            failed.append(False)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            values.append(None)
            failed.append(True)
    return pa.array(values, type=target), pa.array(failed, type=pa.bool_())


def parse_text(text: pa.Array, ctype: str) -> tuple[pa.Array, pa.Array]:
    """Text → the column type per the rules module; returns (typed values, parse-failure mask without nulls)."""
    if ctype == "string":
        return text, _false(len(text))
    matches = pc.match_substring_regex(text, TEXT_PATTERNS[ctype])
    candidates = pc.if_else(matches, text, pa.scalar(None, pa.string()))
    if ctype == "bool":
        candidates = pc.utf8_lower(candidates)
    elif ctype in ("int", "double"):
        candidates = pc.replace_substring_regex(candidates, r"^\+", "")  # Arrow's cast refuses a leading '+'
    elif ctype == "timestamp":
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
    if ctype == "timestamp" and pa.types.is_timestamp(values.type) and values.type.tz is None:
        values = pc.assume_timezone(values, "UTC")
    try:
        return pc.cast(values, ARROW_TYPES[ctype]), _false(len(values))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return _cast_values(values, ARROW_TYPES[ctype])[0], pc.invert(pc.is_valid(values))


def _bound(value: datetime, ctype: str) -> pa.Scalar:
    if ctype == "date":
        return pa.scalar(value.date(), pa.date32())
    return pa.scalar(value, ARROW_TYPES["timestamp"])


def failure_mask(rule: RowRule, column: Column, raw: pa.Array, typed: pa.Array, parse_failed: pa.Array) -> pa.Array:
    """True where ``rule`` fails (never null). ``raw`` is the input as read, ``typed`` the parsed values."""
    kind = rule.kind
    if kind == "required":
        return pc.is_null(raw)
    if kind == "parse":
        return parse_failed
    if kind == "finite":
        mask = pc.invert(pc.is_finite(typed))
    elif kind == "min":
        mask = pc.less(typed, pa.scalar(rule.value, pa.float64()))
    elif kind == "max":
        mask = pc.greater(typed, pa.scalar(rule.value, pa.float64()))
    elif kind == "allowed":
        mask = pc.invert(pc.is_in(typed, value_set=pa.array(list(rule.value), type=typed.type)))
    elif kind == "regex":
        mask = pc.invert(pc.match_substring_regex(typed, rule.value))
    elif kind == "max_length":
        mask = pc.greater(pc.utf8_length(typed), rule.value)
    elif kind == "too_old":
        mask = pc.less(typed, _bound(rule.value, column.type))
    elif kind == "future":
        mask = pc.greater(typed, _bound(rule.value, column.type))
    elif kind == "formula":
        mask = pc.match_substring_regex(typed, "^[=+\\-@]")
    else:  # pragma: no cover - the rules module defines the kinds
        raise ValueError(f"unknown rule kind {kind!r}")
    return pc.fill_null(pc.and_(mask, pc.is_valid(typed)), False)


def any_of(masks: Sequence[pa.Array], n: int) -> pa.Array:
    out = _false(n)
    for mask in masks:
        out = pc.or_(out, mask)
    return out
