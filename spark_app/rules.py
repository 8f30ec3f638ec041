"""Spark compiler of the validator's row rules (``dropzone.rules``): the same rule list, the same semantics.

Input: the batch with every contract column as *text* (how CSV arrives; Parquet values and JSON values are rendered
as text first), so ``parse`` applies the exact text forms of ``dropzone.rules.TEXT_PATTERNS``, and for JSON Lines
the JSON type of each value (``spark_app.io.json_kind_column``): one of a JSON type its column does not take
(``dropzone.rules.JSON_KINDS``) has no text and fails ``parse`` only. Output: the typed columns, one boolean flag
per rule and ``_bad`` (any blocking rule failed). Nulls fail only ``required``. A JSON Lines line that is not one
JSON object fails ``row.json`` only, as in the validator.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from dropzone.contract import Contract
from dropzone.rules import JSON_KINDS, TEXT_PATTERNS, TRUE_TEXT, RowRule, row_rules
from spark_app.io import BAD_JSON_LINE, CORRUPT, SPARK_TYPES, json_kind_column

BAD = "_bad"
ROW_COLUMNS = "row.columns"  # a CSV line Spark could not split into the header's fields (the validator's name)
ROW_JSON = "row.json"  # a JSON Lines line that is not one JSON object (the validator's name)


@dataclass(frozen=True)
class CompiledRules:
    frame: DataFrame  # typed contract columns + one flag column per rule + _bad
    flags: dict[str, str]  # rule name -> flag column
    blocking: tuple[str, ...]  # names of rules that make a row bad


def _typed(text: Column, column_type: str) -> Column:
    """Text → the column type, null when the text does not parse (callers check the pattern first)."""
    if column_type == "bool":
        return F.when(text.isNotNull(), F.lower(text).isin(list(TRUE_TEXT)))
    if column_type == "timestamp":
        # +hhmm → +hh:mm (Spark reads the colon form); no zone means UTC, the job's session time zone.
        normal = F.regexp_replace(text, r"([+-][0-9]{2})([0-9]{2})$", "$1:$2")
        return _try_cast(normal, "timestamp")
    if column_type == "double":
        # Spark's cast reads NaN without a sign only (null for "-nan"); the rule takes one, as Python's float does
        text = F.regexp_replace(text, r"^[+-]((?i:nan))$", "$1")
    return _try_cast(text, SPARK_TYPES[column_type].simpleString())


def _try_cast(c: Column, type_name: str) -> Column:
    return c.try_cast(type_name)


def _condition(rule: RowRule, text: Column, value: Column, column_type: str, wrong_json_type: Column) -> Column:
    """True when the rule fails on the row (never null)."""
    if rule.kind == "required":
        return text.isNull() & ~wrong_json_type
    if rule.kind == "parse":
        if column_type == "string":
            return wrong_json_type
        return wrong_json_type | (text.isNotNull() & (~text.rlike(TEXT_PATTERNS[column_type]) | value.isNull()))
    if rule.kind == "finite":
        return F.coalesce(F.isnan(value) | (F.abs(value) == F.lit(float("inf"))), F.lit(False))
    if rule.kind in ("min", "max"):
        finite = ~F.isnan(value)
        out = (value < F.lit(rule.value)) if rule.kind == "min" else (value > F.lit(rule.value))
        return F.coalesce(finite & out, F.lit(False))
    if rule.kind == "allowed":
        return F.coalesce(~value.isin(list(rule.value)), F.lit(False))
    if rule.kind == "regex":
        return F.coalesce(~text.rlike(str(rule.value)), F.lit(False))
    if rule.kind == "max_length":
        return F.coalesce(F.length(text) > F.lit(int(rule.value)), F.lit(False))
    if rule.kind in ("too_old", "future"):
        bound = F.lit(rule.value)  # aware datetime: PySpark converts it by its own offset
        ts = value.cast("timestamp")
        return F.coalesce(ts < bound if rule.kind == "too_old" else ts > bound, F.lit(False))
    if rule.kind == "formula":
        return F.coalesce(F.substring(text, 1, 1).isin(list(rule.value)), F.lit(False))
    raise ValueError(f"no Spark compilation for rule kind {rule.kind!r} ({rule.name})")


def compile_rules(text_rows: DataFrame, contract: Contract, uploaded_at: datetime | None = None) -> CompiledRules:
    """Typed columns, a flag per rule of ``dropzone.rules.row_rules(contract)`` and ``_bad``."""
    rules = row_rules(contract, uploaded_at)
    types = {c.name: c.type for c in contract.columns}
    typed = {name: (F.col(name) if t == "string" else _typed(F.col(name), t)) for name, t in types.items()}
    kinds = {name: F.col(json_kind_column(name)) for name in types}
    wrong = {name: F.coalesce(~kinds[name].isin(list(JSON_KINDS[t])), F.lit(False)) for name, t in types.items()}
    bad_json = F.col(BAD_JSON_LINE).isNotNull()
    bad_columns = F.col(CORRUPT).isNotNull()
    flags: dict[str, Column] = {ROW_COLUMNS: bad_columns, ROW_JSON: bad_json}
    for rule in rules:
        condition = _condition(rule, F.col(rule.column), typed[rule.column], types[rule.column], wrong[rule.column])
        # A broken line is row.json only; a CSV row with the wrong number of fields row.columns only (its values may
        # sit in the wrong columns), as in the validator.
        flags[rule.name] = condition & ~bad_json & ~bad_columns
    blocking = (ROW_COLUMNS, ROW_JSON, *[r.name for r in rules if r.blocking])
    names = {name: f"_rule{i}" for i, name in enumerate(flags)}
    hidden = {CORRUPT, BAD_JSON_LINE, *[json_kind_column(name) for name in types]}
    bad = F.lit(False)
    for name in blocking:
        bad = bad | F.col(names[name])
    frame = text_rows.select(
        *[F.col(c) for c in text_rows.columns if c not in types and c not in hidden],
        *[typed[name].alias(name) for name in types],
        *[flags[name].alias(col) for name, col in names.items()],
    ).withColumn(BAD, bad)
    return CompiledRules(frame, names, blocking)


def failure_count_columns(compiled: CompiledRules) -> list[Column]:
    """Aggregates over the checked rows: rows, bad rows, then rows failing each rule (``failure_counts`` reads them)."""
    return [
        F.count(F.lit(1)).alias("_rows"),
        F.count_if(F.col(BAD)).alias("_bad_rows"),
        *[F.count_if(F.col(col)).alias(col) for col in compiled.flags.values()],
    ]


def failure_counts(values: Sequence[Any], compiled: CompiledRules) -> tuple[int, int, dict[str, int]]:
    """(rows, bad rows, failures per rule name) from the values of ``failure_count_columns``."""
    rows, bad, *per_rule = values
    failures = {name: int(n) for name, n in zip(compiled.flags, per_rule, strict=True) if n}
    return int(rows), int(bad), failures
