"""Row rules derived from a contract: a small, backend-neutral description that engines compile to their own code.

Pure Python, no pyarrow or pyspark import, so it also runs in the Spark driver on EMR. Two compilers turn these
rules into engine code: ``dropzone.validation`` (pyarrow.compute, one record batch at a time) and the Spark job.
Both must follow the semantics below, stated per rule kind; a rule *fails* on a row when the condition says so.

Values arrive either as text (CSV, JSON values rendered as text) or already typed (Parquet, JSON numbers). Text is
first *parsed* to the column type (``parse``); every other rule sees the parsed value. Null handling, everywhere:

* An empty CSV field, a JSON ``null`` or a missing JSON key, and a Parquet null are all *null*.
* A null never fails any rule except ``required`` (and is never a parse failure): "not required" means null is OK.
* A JSON value of a JSON type the column does not take (``{"clicks": true}``, a list in any column) is not null:
  it fails ``parse`` and no other rule.

Rule kinds (``RowRule.kind``) and their parameter (``RowRule.value``):

``required``   (no value) fails when the value is null. Name ``<col>.required``.
``parse``      (the column type) fails when a non-null value is not a value of the type. Every column has it; on a
               string column it fails only in JSON Lines. JSON values, by JSON type (:data:`JSON_KINDS`): a string
               is text, parsed as below; a string column takes only strings. ``true``/``false`` are the text
               ``true``/``false`` in a bool column, and fail any other column. A number fails string, bool, date and
               timestamp columns; a double column takes any; an int column one whose value is whole and within the
               signed 64-bit range (``3``, ``3.0``, ``-0.0``, ``1e2``; not ``2.5`` or ``1e19``): the exact value of
               a number written without an exponent in at most 38 digits and 38 decimals, else that of the nearest
               double (as Spark's variant holds them). Arrays and objects fail every column. Accepted text forms:
               int: ``[+-]?[0-9]{1,19}`` within the signed 64-bit range; double: decimal or exponent notation,
               plus ``nan``/``inf``/``infinity`` (any case, optional sign; these parse, then fail ``finite``);
               bool: ``true``/``false``/``1``/``0`` (any case); date: ``YYYY-MM-DD`` (a real calendar date);
               timestamp: :data:`TIMESTAMP_PATTERN`, i.e.
               ``YYYY-MM-DD[T| ]HH:MM:SS[.f{1,9}][Z|+hh:mm|-hh:mm|+hhmm|-hhmm]``, a real date and time; no zone
               means UTC. Leading/trailing spaces are not trimmed (``" 5"`` fails). Name ``<col>.parse``.
``finite``     (no value; double columns) fails on NaN, +inf and -inf. Name ``<col>.finite``.
``min``/``max`` (a float bound, inclusive) fails when value < min or value > max. Names ``<col>.min``/``<col>.max``.
               NaN fails ``finite`` only, never min/max.
``allowed``    (a tuple of str or int) fails when the value is not one of them (exact, case-sensitive).
``regex``      (a pattern) fails when the value does not match the pattern *anywhere* (search semantics, like
               Spark ``rlike`` and pyarrow ``match_substring_regex``): anchor the pattern in the contract with
               ``^...$`` to get a full match, as the shipped contracts do. Patterns must be RE2-compatible.
``max_length`` (an int) fails when the string has more than that many characters (code points, not bytes).
``too_old``    (an aware datetime) fails when the timestamp/date is before it (``limits.earliest_timestamp``).
``future``     (an aware datetime: upload time + ``limits.future_tolerance``) fails when the value is after it.
               Both apply to the contract's timestamp column only; a date column compares its midnight UTC.
``formula``    (the prefixes ``= + - @``; string columns without a regex) fails when the text starts with one of
               them (CSV/formula injection when opened in a spreadsheet). ``blocking`` is False: the row is
               *flagged* and counted under ``<col>.formula`` but is not a bad row, because ordinary text such as
               ``"- arrived late"`` or ``"+1 for the fabric"`` starts the same way. Columns with a regex are
               already constrained by it.

A row is *bad* when any blocking rule fails on it. ``unique`` is a file-level rule, not a row rule: the validator
checks it within a file (``<col>.unique`` on every repeated occurrence after the first).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from dropzone.contract import Column, Contract

RuleKind = Literal[
    "required", "parse", "finite", "min", "max", "allowed", "regex", "max_length", "too_old", "future", "formula"
]

FORMULA_PREFIXES: tuple[str, ...] = ("=", "+", "-", "@")

# Text forms each column type accepts (see the module docstring). Compilers use these exact patterns.
INT_PATTERN = r"^[+-]?[0-9]{1,19}$"  # and within the 64-bit range
DOUBLE_PATTERN = r"^[+-]?(?:(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:nan|inf|infinity))$"
BOOL_PATTERN = r"^(?i:true|false|1|0)$"
DATE_PATTERN = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
TIMESTAMP_PATTERN = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?(?:Z|[+-][0-9]{2}:?[0-9]{2})?$"
)
TEXT_PATTERNS: dict[str, str] = {
    "int": INT_PATTERN,
    "double": DOUBLE_PATTERN,
    "bool": BOOL_PATTERN,
    "date": DATE_PATTERN,
    "timestamp": TIMESTAMP_PATTERN,
}
TRUE_TEXT: tuple[str, ...] = ("true", "1")  # lower-cased

# JSON Lines: the JSON types ("kinds") each column type takes; a value of any other kind fails ``<col>.parse``.
# JSON null (and a missing key) is null, of no kind. Kinds: string, number, bool, array, object.
JSON_KINDS: dict[str, tuple[str, ...]] = {
    "string": ("string",),
    "int": ("number", "string"),
    "double": ("number", "string"),
    "bool": ("bool", "string"),
    "date": ("string",),
    "timestamp": ("string",),
}
JSON_KIND_NAMES: dict[str, str] = {
    "string": "a string",
    "number": "a number",
    "bool": "a bool",
    "array": "an array",
    "object": "an object",
}
INT64_RANGE = (-(2**63), 2**63)  # [low, high): whole JSON numbers an int column takes
DECIMAL_DIGITS = 38  # JSON numbers without an exponent up to this many digits (and decimals) are exact


# What each column type's text looks like (the forms above), for reasons a producer reads.
EXPECTED_FORMS: dict[str, str] = {
    "string": "a JSON string",
    "int": "a whole number such as 42, within 64 bits",
    "double": "a plain number such as 10.5 or 1e3, without thousands separators, currency signs or decimal commas",
    "bool": "true, false, 1 or 0",
    "date": "YYYY-MM-DD such as 2025-03-01",
    "timestamp": "ISO 8601 such as 2025-03-01T10:00:00Z or 2025-03-01 10:00:00+01:00",
}


def type_name(column_type: str) -> str:
    """``an int``, ``a string``...: for messages."""
    return f"{'an' if column_type[:1] in 'aeiou' else 'a'} {column_type}"


def describe_json_type_failure(column: str, column_type: str, kinds: Iterable[str] = ()) -> str:
    """``clicks expected an int, got a bool or an array``: ``<col>.parse`` of JSON values of the wrong JSON type."""
    seen = set(kinds)
    got = [name for kind, name in JSON_KIND_NAMES.items() if kind in seen]
    if not got:
        got = ["another JSON type"]
    return f"{column} expected {type_name(column_type)}, got {' or '.join(got)}"


@dataclass(frozen=True)
class RowRule:
    """One check on one column of every row. ``name`` is stable (``<column>.<kind>``) and used in reports."""

    name: str
    column: str
    kind: RuleKind
    value: Any = None
    blocking: bool = True

    def describe(self) -> str:
        """A short human phrase for reports, e.g. ``amount below 0``."""
        text = {
            "required": "is missing",
            "parse": f"is not a valid {self.value}: expected {EXPECTED_FORMS.get(str(self.value), self.value)}",
            "finite": "is NaN or infinite",
            "min": f"is below {self.value:g}" if isinstance(self.value, float) else "is below the minimum",
            "max": f"is above {self.value:g}" if isinstance(self.value, float) else "is above the maximum",
            "allowed": (
                f"is not one of {', '.join(map(str, self.value))}"
                if isinstance(self.value, tuple) and len(self.value) <= 8
                else "is not an allowed value"
            ),
            "regex": f"does not match {self.value}",
            "max_length": f"is longer than {self.value} characters",
            "too_old": f"is before {self.value.isoformat() if isinstance(self.value, datetime) else self.value}",
            "future": f"is after {self.value.isoformat() if isinstance(self.value, datetime) else self.value}",
            "formula": "starts like a spreadsheet formula (= + - @)",
        }[self.kind]
        return f"{self.column} {text}"


def _rule(column: Column, kind: RuleKind, value: Any = None, blocking: bool = True) -> RowRule:
    return RowRule(name=f"{column.name}.{kind}", column=column.name, kind=kind, value=value, blocking=blocking)


def column_rules(column: Column) -> tuple[RowRule, ...]:
    """The rules of one column, in evaluation order (timestamp bounds come from :func:`row_rules`)."""
    rules: list[RowRule] = []
    if column.required:
        rules.append(_rule(column, "required"))
    rules.append(_rule(column, "parse", column.type))  # on a string column: JSON values that are not strings
    if column.type == "double":
        rules.append(_rule(column, "finite"))
    if column.min is not None:
        rules.append(_rule(column, "min", float(column.min)))
    if column.max is not None:
        rules.append(_rule(column, "max", float(column.max)))
    if column.allowed is not None:
        rules.append(_rule(column, "allowed", tuple(column.allowed)))
    if column.regex is not None:
        rules.append(_rule(column, "regex", column.regex))
    if column.max_length is not None:
        rules.append(_rule(column, "max_length", int(column.max_length)))
    if column.type == "string" and column.regex is None:
        rules.append(_rule(column, "formula", FORMULA_PREFIXES, blocking=False))
    return tuple(rules)


def row_rules(contract: Contract, uploaded_at: datetime | None = None) -> tuple[RowRule, ...]:
    """All row rules of the contract; the ``future`` bound is ``uploaded_at`` (default now) + the tolerance."""
    uploaded = uploaded_at or datetime.now(UTC)
    if uploaded.tzinfo is None:
        uploaded = uploaded.replace(tzinfo=UTC)
    rules: list[RowRule] = []
    for column in contract.columns:
        rules.extend(column_rules(column))
        if column.name == contract.timestamp:
            rules.append(_rule(column, "too_old", contract.limits.earliest_timestamp))
            rules.append(_rule(column, "future", uploaded + contract.limits.future_tolerance))
    return tuple(rules)


def unique_rule_name(column: str) -> str:
    """Name under which repeated values of a unique column are counted."""
    return f"{column}.unique"
