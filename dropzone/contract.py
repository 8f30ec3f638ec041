"""The dataset contract: one YAML file per dataset, parsed and checked here and nowhere else.

Pure Python (PyYAML only) so the same module runs in Lambda, in the Spark driver on EMR Serverless (shipped in
the ``--py-files`` zip) and in the trainer. Every problem is reported as a :class:`ContractError` naming the
file, the field path and what is wrong.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal, cast

import yaml

ColumnType = Literal["string", "int", "double", "bool", "date", "timestamp"]
COLUMN_TYPES: tuple[str, ...] = ("string", "int", "double", "bool", "date", "timestamp")
FORMATS: tuple[str, ...] = ("csv", "csv.gz", "jsonl", "jsonl.gz", "parquet")
# File name suffix → the format it holds, longest suffix first (``.json`` and ``.ndjson`` are JSON Lines too): the one
# list a file's name is read by, here where every part of the pipeline can import it without pyarrow.
FILE_SUFFIXES: tuple[tuple[str, str], ...] = (
    (".csv.gz", "csv.gz"),
    (".jsonl.gz", "jsonl.gz"),
    (".ndjson.gz", "jsonl.gz"),
    (".json.gz", "jsonl.gz"),
    (".csv", "csv"),
    (".jsonl", "jsonl"),
    (".ndjson", "jsonl"),
    (".json", "jsonl"),
    (".parquet", "parquet"),
)


def format_of(name: str) -> str | None:
    """The format a file name or key says (``orders-1.ndjson.gz`` → ``jsonl.gz``), or None for a name no format has."""
    lower = name.lower()
    return next((fmt for suffix, fmt in FILE_SUFFIXES if lower.endswith(suffix)), None)


def read_suffixes() -> str:
    """Every name ending a file may have, for messages: ``.csv, .csv.gz, ... or .parquet``."""
    names = sorted(suffix for suffix, _ in FILE_SUFFIXES)
    return f"{', '.join(names[:-1])} or {names[-1]}"


AGGREGATIONS: tuple[str, ...] = ("count", "sum", "mean", "min", "max", "stddev", "distinct", "rate")
PERCENTILE = re.compile(r"^p([1-9][0-9]?)$")  # p1 .. p99
LABEL_KINDS: tuple[str, ...] = ("active_in_horizon", "sum_in_horizon")
TEXT_METHODS: tuple[str, ...] = ("tfidf", "word2vec")
GATE_POLICIES: tuple[str, ...] = ("reject", "pending")
NUMERIC_TYPES: tuple[str, ...] = ("int", "double")
DATASET_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Column names the pipeline writes next to the data's own: a contract column may not take them, nor start with an
# underscore (the feature job's working columns all do, e.g. _batch_id, _corrupt_record, _role).
CUTOFF = "cutoff"  # each feature row's cutoff date
EVENT_DATE = "event_date"  # the curated table's partition column
RESERVED_COLUMNS: Mapping[str, str] = {
    CUTOFF: "the feature tables' cutoff column",
    EVENT_DATE: "the curated table's partition column",
}
_NOT_NAME = re.compile(r"\W+")  # runs of characters that are not letters, digits or _
MAX_DAYS = 36_500  # windows and horizons: 100 years is past any data a contract accepts
DATED_TYPES: tuple[str, ...] = ("date", "timestamp")
# JSON Lines ceilings a contract's limits may not pass, or the validator would accept lines a parser refuses. Depth:
# Python's json counts each level against the interpreter's recursion limit (1000, shared with the call stack), and
# Spark's parser (Jackson 2.20, StreamReadConstraints) reads 1000 levels, one of them the array the feature job wraps
# each line in. Line length: Jackson reads strings of at most 20,000,000 characters, and a line of at most that many
# bytes cannot hold a longer one (a character is at least a byte).
MAX_NESTING_DEPTH = 500
MAX_JSON_LINE_LENGTH = 20_000_000

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|KiB|MB|MiB|GB|GiB|TB|TiB)?\s*$")
_SIZE_UNITS = {
    None: 1,
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
}
# Lookaround and backreferences: Python and Java run them, RE2 (pyarrow.compute) does not.
_NOT_PORTABLE_REGEX = re.compile(r"\(\?<?[=!]|\\[1-9]")
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Hyperparameters training/train.py or XGBoost reads as numbers, checked here rather than failing when the training
# job starts; any other name goes to XGBoost as it is. Integers map to their least value (None: any).
_INTEGER_HYPERPARAMETERS: Mapping[str, int | None] = {
    "num_round": 1,
    "early_stopping_rounds": 1,
    "max_depth": 0,
    "max_leaves": 0,
    "max_bin": 2,
    "num_parallel_tree": 1,
    "seed": None,
}
_NUMBER_HYPERPARAMETERS: tuple[str, ...] = (
    "eta",
    "learning_rate",
    "gamma",
    "min_split_loss",
    "min_child_weight",
    "max_delta_step",
    "subsample",
    "colsample_bytree",
    "colsample_bylevel",
    "colsample_bynode",
    "lambda",
    "reg_lambda",
    "alpha",
    "reg_alpha",
    "scale_pos_weight",
    "base_score",
)


class ContractError(ValueError):
    """A contract that cannot be used: says which file, which field and what is wrong."""

    def __init__(self, source: str, path: str, problem: str) -> None:
        self.source = source
        self.path = path
        self.problem = problem
        where = f"{source}: {path}" if path else source
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class Column:
    name: str
    type: ColumnType
    required: bool = False
    unique: bool = False
    min: float | None = None
    max: float | None = None
    allowed: tuple[Any, ...] | None = None
    regex: str | None = None
    max_length: int | None = None


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 5 * 2**30
    max_rows: int = 50_000_000
    max_line_length: int = 2**20
    max_nesting_depth: int = 32
    max_bad_row_fraction: float = 0.0
    earliest_timestamp: datetime = datetime(2000, 1, 1, tzinfo=UTC)
    future_tolerance: timedelta = timedelta(hours=1)


@dataclass(frozen=True)
class Batching:
    min_files: int = 10
    max_batch_bytes: int = 2 * 2**30
    max_wait: timedelta = timedelta(minutes=15)
    max_attempts: int = 3


@dataclass(frozen=True)
class Aggregation:
    column: str
    functions: tuple[str, ...]


@dataclass(frozen=True)
class Share:
    """Share of ``measure`` per value of ``column`` (e.g. share of spend per category)."""

    column: str
    measure: str


@dataclass(frozen=True)
class Join:
    """Enrichment from a reference dataset joined on ``key`` (a column of both datasets)."""

    dataset: str
    key: str
    attributes: tuple[str, ...] = ()
    aggregations: tuple[Aggregation, ...] = ()
    shares: tuple[Share, ...] = ()


@dataclass(frozen=True)
class TextFeatures:
    column: str
    method: str = "tfidf"
    ngrams: int = 2
    num_features: int = 8


@dataclass(frozen=True)
class SequenceFeatures:
    short_window_days: int = 7


@dataclass(frozen=True)
class Features:
    windows: tuple[int, ...] = (30, 90, 365)
    aggregations: tuple[Aggregation, ...] = ()
    joins: tuple[Join, ...] = ()
    text: TextFeatures | None = None
    sequence: SequenceFeatures | None = None


@dataclass(frozen=True)
class Label:
    kind: str
    name: str
    horizon_days: int
    measure: str | None = None

    @property
    def is_classification(self) -> bool:
        return self.kind == "active_in_horizon"


@dataclass(frozen=True)
class Gate:
    metric: str
    margin: float = 0.0
    when_not_better: str = "reject"


@dataclass(frozen=True)
class Training:
    algorithm: str = "xgboost"
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    validation_fraction: float = 0.2
    instance_type: str = "ml.m5.large"
    instance_count: int = 1
    max_runtime_seconds: int = 3600
    spot: bool = False
    max_wait_seconds: int | None = None
    gate: Gate = Gate(metric="auc")


@dataclass(frozen=True)
class Contract:
    dataset: str
    description: str
    formats: tuple[str, ...]
    entity: str
    timestamp: str | None
    columns: tuple[Column, ...]
    limits: Limits
    batching: Batching
    features: Features | None = None
    label: Label | None = None
    training: Training | None = None
    source: str = "<contract>"

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def unique_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.unique)

    @property
    def is_reference(self) -> bool:
        """Reference data (a dimension) has no label: it is joined, not trained on."""
        return self.label is None

    @property
    def prefix(self) -> str:
        return f"incoming/{self.dataset}/"


def parse_size(value: Any) -> int:
    """``'2 GiB'`` → bytes; plain integers are bytes."""
    if isinstance(value, bool):
        raise ValueError("expected a size such as 1048576 or '1 MiB'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    m = _SIZE.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a size: use bytes or a number with B, KB, MB, GB, KiB, MiB, GiB")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2)])


def parse_duration(value: Any) -> timedelta:
    """``'15m'``, ``'1h'``, ``'2d'``, ``'30s'`` → timedelta; plain integers are seconds."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return timedelta(seconds=value)
    m = _DURATION.match(str(value))
    if not m:
        raise ValueError(f"{value!r} is not a duration: use e.g. 30s, 15m, 1h, 2d")
    return timedelta(seconds=int(m.group(1)) * _DURATION_UNITS[m.group(2)])


class _Reader:
    """Walks the YAML tree and raises ContractError with the exact field path on the first problem."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, problem: str) -> ContractError:
        return ContractError(self.source, path, problem)

    def mapping(self, value: Any, path: str, allowed: Sequence[str]) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(path, f"must be a mapping, got {_kind(value)}")
        for key in value:
            if key not in allowed:
                raise self.fail(_join(path, str(key)), f"unknown field (allowed: {', '.join(allowed)})")
        return value

    def required(self, m: Mapping[str, Any], key: str, path: str) -> Any:
        if key not in m or m[key] is None:
            raise self.fail(_join(path, key), "is required")
        return m[key]

    def string(self, value: Any, path: str, pattern: re.Pattern[str] | None = None) -> str:
        if not isinstance(value, str) or not value:
            raise self.fail(path, f"must be a non-empty string, got {_kind(value)}")
        if pattern is not None and not pattern.match(value):
            raise self.fail(path, f"{value!r} must match {pattern.pattern}")
        return value

    def choice(self, value: Any, path: str, choices: Sequence[str]) -> str:
        if value not in choices:
            raise self.fail(path, f"{value!r} is not one of: {', '.join(choices)}")
        return cast(str, value)

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, f"must be true or false, got {_kind(value)}")
        return value

    def integer(self, value: Any, path: str, minimum: int | None = None, maximum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(path, f"must be an integer, got {_kind(value)}")
        if minimum is not None and value < minimum:
            raise self.fail(path, f"must be at least {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.fail(path, f"must be at most {maximum}, got {value}")
        return value

    def days(self, value: Any, path: str) -> int:
        """A number of days: a window, a horizon."""
        return self.integer(value, path, minimum=1, maximum=MAX_DAYS)

    def number(self, value: Any, path: str, minimum: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(path, f"must be a number, got {_kind(value)}")
        if not math.isfinite(value):
            raise self.fail(path, f"must be a finite number, got {value}")
        if minimum is not None and value < minimum:
            raise self.fail(path, f"must be at least {minimum:g}, got {value}")
        return float(value)

    def fraction(self, value: Any, path: str) -> float:
        number = self.number(value, path)
        if not 0.0 <= number <= 1.0:
            raise self.fail(path, f"must be between 0 and 1, got {value}")
        return number

    def size(self, value: Any, path: str) -> int:
        try:
            return parse_size(value)
        except ValueError as e:
            raise self.fail(path, str(e)) from None

    def duration(self, value: Any, path: str) -> timedelta:
        try:
            return parse_duration(value)
        except ValueError as e:
            raise self.fail(path, str(e)) from None

    def sequence(self, value: Any, path: str, non_empty: bool = True) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(path, f"must be a list, got {_kind(value)}")
        if non_empty and not value:
            raise self.fail(path, "must not be empty")
        return value


def _kind(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"boolean {value}"
    if isinstance(value, int | float):
        return f"number {value}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "a mapping"
    return type(value).__name__


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


_TOP = (
    "dataset",
    "description",
    "formats",
    "entity",
    "timestamp",
    "columns",
    "limits",
    "batching",
    "features",
    "label",
    "training",
)
_COLUMN = ("type", "required", "unique", "min", "max", "allowed", "regex", "max_length")


def _not_reserved(r: _Reader, name: str, path: str) -> None:
    # Spark resolves column names whatever their case (spark.sql.caseSensitive is false by default, and on EMR):
    # a column Event_Date is the partition column event_date to the feature job.
    if name.lower() in RESERVED_COLUMNS:
        case = "" if name == name.lower() else " (Spark ignores case)"
        raise r.fail(path, f"{name!r} is reserved: it is {RESERVED_COLUMNS[name.lower()]}{case}")
    if name.startswith("_"):
        raise r.fail(path, f"{name!r}: names starting with an underscore are reserved for the pipeline's own columns")


def _column(r: _Reader, name: Any, spec: Any, path: str) -> Column:
    if not isinstance(name, str) or not COLUMN_NAME.match(name):
        raise r.fail(path, f"column name {name!r} must match {COLUMN_NAME.pattern}")
    _not_reserved(r, name, path)
    m = r.mapping(spec, path, _COLUMN)
    ctype = r.choice(r.required(m, "type", path), _join(path, "type"), COLUMN_TYPES)
    lo = r.number(m["min"], _join(path, "min")) if m.get("min") is not None else None
    hi = r.number(m["max"], _join(path, "max")) if m.get("max") is not None else None
    if (lo is not None or hi is not None) and ctype not in NUMERIC_TYPES:
        raise r.fail(
            _join(path, "min" if lo is not None else "max"), f"only int and double columns take a range, not {ctype}"
        )
    if lo is not None and hi is not None and lo > hi:
        raise r.fail(_join(path, "min"), f"min {lo} is greater than max {hi}")
    regex = m.get("regex")
    if regex is not None:
        regex = r.string(regex, _join(path, "regex"))
        if ctype != "string":
            raise r.fail(_join(path, "regex"), f"only string columns take a regex, not {ctype}")
        try:
            re.compile(regex)
        except re.error as e:
            raise r.fail(_join(path, "regex"), f"is not a valid regular expression: {e}") from None
        if _NOT_PORTABLE_REGEX.search(regex):
            problem = "uses lookaround or a backreference, which RE2 (the validator) cannot run"
            raise r.fail(_join(path, "regex"), problem)
    max_length = m.get("max_length")
    if max_length is not None:
        max_length = r.integer(max_length, _join(path, "max_length"), minimum=1)
        if ctype != "string":
            raise r.fail(_join(path, "max_length"), f"only string columns take max_length, not {ctype}")
    allowed = m.get("allowed")
    if allowed is not None:
        values = r.sequence(allowed, _join(path, "allowed"))
        for i, v in enumerate(values):
            ok = isinstance(v, str) if ctype == "string" else (isinstance(v, int) and not isinstance(v, bool))
            if ctype not in ("string", "int") or not ok:
                raise r.fail(
                    _join(_join(path, "allowed"), i),
                    f"allowed values must be strings or ints matching the column type {ctype}",
                )
        allowed = tuple(values)
    return Column(
        name=name,
        type=cast(ColumnType, ctype),
        required=r.boolean(m.get("required", False), _join(path, "required")),
        unique=r.boolean(m.get("unique", False), _join(path, "unique")),
        min=lo,
        max=hi,
        allowed=allowed,
        regex=regex,
        max_length=max_length,
    )


def _limits(r: _Reader, value: Any, formats: tuple[str, ...]) -> Limits:
    if value is None:
        return Limits()
    path = "limits"
    m = r.mapping(
        value,
        path,
        (
            "max_bytes",
            "max_rows",
            "max_line_length",
            "max_nesting_depth",
            "max_bad_row_fraction",
            "earliest_timestamp",
            "future_tolerance",
        ),
    )
    d = Limits()
    earliest = d.earliest_timestamp
    if m.get("earliest_timestamp") is not None:
        raw = m["earliest_timestamp"]
        try:
            earliest = raw if isinstance(raw, datetime) else datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
        except ValueError:
            raise r.fail(_join(path, "earliest_timestamp"), f"{raw!r} is not an ISO 8601 timestamp") from None
        if earliest.tzinfo is None:
            earliest = earliest.replace(tzinfo=UTC)
    sizes = {}
    for key in ("max_bytes", "max_line_length"):
        sizes[key] = r.size(m.get(key, getattr(d, key)), _join(path, key))
        if sizes[key] < 1:
            raise r.fail(_join(path, key), "must be at least 1 byte")
    depth = r.integer(m.get("max_nesting_depth", d.max_nesting_depth), _join(path, "max_nesting_depth"), minimum=1)
    if depth > MAX_NESTING_DEPTH:
        raise r.fail(
            _join(path, "max_nesting_depth"),
            f"must be at most {MAX_NESTING_DEPTH} (deeper JSON is more than the validator's and the Spark job's"
            f" parsers read), got {depth}",
        )
    if sizes["max_line_length"] > MAX_JSON_LINE_LENGTH and any(f.startswith("jsonl") for f in formats):
        raise r.fail(
            _join(path, "max_line_length"),
            f"must be at most {MAX_JSON_LINE_LENGTH} bytes with a JSON Lines format (the Spark job's JSON parser reads"
            f" strings of at most {MAX_JSON_LINE_LENGTH} characters), got {sizes['max_line_length']}",
        )
    return Limits(
        max_bytes=sizes["max_bytes"],
        max_rows=r.integer(m.get("max_rows", d.max_rows), _join(path, "max_rows"), minimum=1),
        max_line_length=sizes["max_line_length"],
        max_nesting_depth=depth,
        max_bad_row_fraction=r.fraction(
            m.get("max_bad_row_fraction", d.max_bad_row_fraction), _join(path, "max_bad_row_fraction")
        ),
        earliest_timestamp=earliest,
        future_tolerance=r.duration(m.get("future_tolerance", "1h"), _join(path, "future_tolerance")),
    )


def _batching(r: _Reader, value: Any) -> Batching:
    if value is None:
        return Batching()
    path = "batching"
    m = r.mapping(value, path, ("min_files", "max_batch_bytes", "max_wait", "max_attempts"))
    d = Batching()
    return Batching(
        min_files=r.integer(m.get("min_files", d.min_files), _join(path, "min_files"), minimum=1),
        max_batch_bytes=r.size(m.get("max_batch_bytes", d.max_batch_bytes), _join(path, "max_batch_bytes")),
        max_wait=r.duration(m.get("max_wait", "15m"), _join(path, "max_wait")),
        max_attempts=r.integer(m.get("max_attempts", d.max_attempts), _join(path, "max_attempts"), minimum=1),
    )


def _aggregation(
    r: _Reader, value: Any, path: str, columns: Mapping[str, Column], owner: str = "this dataset"
) -> Aggregation:
    m = r.mapping(value, path, ("column", "functions"))
    column = r.string(r.required(m, "column", path), _join(path, "column"))
    if column not in columns:
        raise r.fail(_join(path, "column"), f"{column!r} is not a column of {owner}")
    ctype = columns[column].type
    functions = r.sequence(r.required(m, "functions", path), _join(path, "functions"))
    for i, fn in enumerate(functions):
        fpath = _join(_join(path, "functions"), i)
        if not isinstance(fn, str) or (fn not in AGGREGATIONS and not PERCENTILE.match(fn)):
            raise r.fail(fpath, f"{fn!r} is not an aggregation (use {', '.join(AGGREGATIONS)} or p1..p99)")
        numeric_only = fn in ("sum", "mean", "min", "max", "stddev") or PERCENTILE.match(fn)
        if numeric_only and ctype not in NUMERIC_TYPES:
            raise r.fail(fpath, f"{fn} needs a numeric column, {column} is {ctype}")
        if fn == "rate" and ctype != "bool":
            raise r.fail(fpath, f"rate needs a bool column, {column} is {ctype}")
    if len(set(functions)) != len(functions):
        raise r.fail(_join(path, "functions"), "lists a function twice")
    return Aggregation(column=column, functions=tuple(functions))


def _features(
    r: _Reader,
    value: Any,
    columns: Mapping[str, Column],
    entity: str,
    references: Mapping[str, Contract | None] | None,
    own_dataset: str,
) -> Features:
    path = "features"
    m = r.mapping(value, path, ("windows", "aggregations", "joins", "text", "sequence"))
    windows_raw = r.sequence(m.get("windows", [30, 90, 365]), _join(path, "windows"))
    windows = tuple(r.days(w, _join(_join(path, "windows"), i)) for i, w in enumerate(windows_raw))
    if len(set(windows)) != len(windows):
        raise r.fail(_join(path, "windows"), "lists a window twice")
    aggs = tuple(
        _aggregation(r, a, _join(_join(path, "aggregations"), i), columns)
        for i, a in enumerate(r.sequence(m.get("aggregations", []), _join(path, "aggregations"), non_empty=False))
    )
    joins: list[Join] = []
    for i, j in enumerate(r.sequence(m.get("joins", []), _join(path, "joins"), non_empty=False)):
        jpath = _join(_join(path, "joins"), i)
        jm = r.mapping(j, jpath, ("dataset", "key", "attributes", "aggregations", "shares"))
        dataset = r.string(r.required(jm, "dataset", jpath), _join(jpath, "dataset"), DATASET_NAME)
        for k, earlier in enumerate(joins):
            if earlier.dataset == dataset:
                problem = f"{dataset} is joined already (features.joins[{k}]): join each reference dataset once"
                raise r.fail(_join(jpath, "dataset"), problem)
        key = r.string(r.required(jm, "key", jpath), _join(jpath, "key"))
        if key not in columns:
            raise r.fail(_join(jpath, "key"), f"{key!r} is not a column of this dataset")
        if dataset == own_dataset:
            raise r.fail(_join(jpath, "dataset"), f"{dataset} joins itself: joins take reference datasets")
        if references is not None and dataset not in references:
            raise r.fail(_join(jpath, "dataset"), f"no contract for reference dataset {dataset!r}")
        ref = references.get(dataset) if references is not None else None
        if ref is not None:
            if not ref.is_reference:
                problem = f"{dataset} has a label: joins take reference datasets (contracts without a label)"
                raise r.fail(_join(jpath, "dataset"), problem)
            if key not in ref.column_names:
                raise r.fail(_join(jpath, "key"), f"{key!r} is not a column of {dataset}")
            if ref.column(key).type != columns[key].type:
                here, there = columns[key].type, ref.column(key).type
                problem = f"{key} is {here} here but {there} in {dataset}: the join needs one type"
                raise r.fail(_join(jpath, "key"), problem)
            if not ref.column(key).unique:
                # Without it the curated reference table keeps every delivery of a key, and which one joins is
                # arbitrary; with it the table keeps one row per key, the newest.
                problem = f"{key} is not unique in {dataset}: mark it unique: true there (one {dataset} row per key)"
                raise r.fail(_join(jpath, "key"), problem)
        ref_columns = {c.name: c for c in ref.columns} if ref else None
        attributes = tuple(
            r.string(a, _join(_join(jpath, "attributes"), k))
            for k, a in enumerate(r.sequence(jm.get("attributes", []), _join(jpath, "attributes"), non_empty=False))
        )
        if ref_columns is not None:
            for k, a in enumerate(attributes):
                if a not in ref_columns:
                    raise r.fail(_join(_join(jpath, "attributes"), k), f"{a!r} is not a column of {dataset}")
        jaggs = tuple(
            _aggregation(r, a, _join(_join(jpath, "aggregations"), k), ref_columns or _Anything(), dataset)
            for k, a in enumerate(r.sequence(jm.get("aggregations", []), _join(jpath, "aggregations"), non_empty=False))
        )
        shares: list[Share] = []
        for k, s in enumerate(r.sequence(jm.get("shares", []), _join(jpath, "shares"), non_empty=False)):
            spath = _join(_join(jpath, "shares"), k)
            sm = r.mapping(s, spath, ("column", "measure"))
            scol = r.string(r.required(sm, "column", spath), _join(spath, "column"))
            measure = r.string(r.required(sm, "measure", spath), _join(spath, "measure"))
            if ref_columns is not None and scol not in ref_columns:
                raise r.fail(_join(spath, "column"), f"{scol!r} is not a column of {dataset}")
            if ref_columns is not None and ref_columns[scol].allowed is None:
                raise r.fail(
                    _join(spath, "column"), f"{scol!r} needs 'allowed' values in {dataset} to make one share each"
                )
            if measure not in columns or columns[measure].type not in NUMERIC_TYPES:
                raise r.fail(_join(spath, "measure"), f"{measure!r} must be a numeric column of this dataset")
            shares.append(Share(column=scol, measure=measure))
        if not (attributes or jaggs or shares):
            raise r.fail(jpath, "names no attributes, aggregations or shares: the join would add nothing")
        if key == entity and (jaggs or shares):
            field_ = "aggregations" if jaggs else "shares"
            problem = f"a join on the entity ({entity}) gives one {dataset} row per entity: it takes attributes only"
            raise r.fail(_join(jpath, field_), problem)
        joins.append(Join(dataset=dataset, key=key, attributes=attributes, aggregations=jaggs, shares=tuple(shares)))
    text = None
    if m.get("text") is not None:
        tpath = _join(path, "text")
        tm = r.mapping(m["text"], tpath, ("column", "method", "ngrams", "num_features"))
        tcol = r.string(r.required(tm, "column", tpath), _join(tpath, "column"))
        if tcol not in columns or columns[tcol].type != "string":
            raise r.fail(_join(tpath, "column"), f"{tcol!r} must be a string column of this dataset")
        text = TextFeatures(
            column=tcol,
            method=r.choice(tm.get("method", "tfidf"), _join(tpath, "method"), TEXT_METHODS),
            ngrams=r.integer(tm.get("ngrams", 2), _join(tpath, "ngrams"), minimum=1),
            num_features=r.integer(tm.get("num_features", 8), _join(tpath, "num_features"), minimum=1),
        )
        if text.num_features > 64:
            raise r.fail(_join(tpath, "num_features"), "at most 64 dense text features per entity")
    sequence = None
    if m.get("sequence") is not None:
        spath = _join(path, "sequence")
        sm = r.mapping(m["sequence"], spath, ("short_window_days",))
        sequence = SequenceFeatures(
            short_window_days=r.days(sm.get("short_window_days", 7), _join(spath, "short_window_days"))
        )
    if not (aggs or joins or text or sequence):
        raise r.fail(path, "defines no feature: give it aggregations, joins, text or sequence")
    return Features(windows=windows, aggregations=aggs, joins=tuple(joins), text=text, sequence=sequence)


class _Anything(dict[str, Column]):
    """Column lookup used when the reference contract is not at hand: checks are deferred to load_contracts."""

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: str) -> Column:
        return Column(name=key, type="double")


def _label(r: _Reader, value: Any, columns: Mapping[str, Column]) -> Label:
    path = "label"
    m = r.mapping(value, path, ("kind", "name", "horizon_days", "measure"))
    kind = r.choice(r.required(m, "kind", path), _join(path, "kind"), LABEL_KINDS)
    measure = m.get("measure")
    if kind == "sum_in_horizon":
        measure = r.string(r.required(m, "measure", path), _join(path, "measure"))
        if measure not in columns or columns[measure].type not in NUMERIC_TYPES:
            raise r.fail(_join(path, "measure"), f"{measure!r} must be a numeric column of this dataset")
    elif measure is not None:
        raise r.fail(_join(path, "measure"), "only sum_in_horizon takes a measure")
    name = r.string(m.get("name", "label"), _join(path, "name"), COLUMN_NAME)
    _not_reserved(r, name, _join(path, "name"))
    return Label(
        kind=kind,
        name=name,
        horizon_days=r.days(r.required(m, "horizon_days", path), _join(path, "horizon_days")),
        measure=measure,
    )


_CLASSIFICATION_METRICS = ("auc", "pr_auc", "logloss")
_REGRESSION_METRICS = ("rmse", "mae")


def _training(r: _Reader, value: Any, label: Label | None) -> Training:
    path = "training"
    m = r.mapping(
        value,
        path,
        (
            "algorithm",
            "hyperparameters",
            "validation_fraction",
            "instance_type",
            "instance_count",
            "max_runtime_seconds",
            "spot",
            "max_wait_seconds",
            "gate",
        ),
    )
    if label is None:
        raise r.fail(path, "training needs a label section")
    d = Training()
    algorithm = r.choice(m.get("algorithm", "xgboost"), _join(path, "algorithm"), ("xgboost",))
    hp = m.get("hyperparameters", {}) or {}
    hp = r.mapping(hp, _join(path, "hyperparameters"), tuple(str(k) for k in hp) if isinstance(hp, Mapping) else ())
    for k, v in hp.items():
        hpath = _join(_join(path, "hyperparameters"), str(k))
        if not isinstance(v, int | float | str | bool):
            raise r.fail(hpath, f"must be a scalar, got {_kind(v)}")
        if k in _INTEGER_HYPERPARAMETERS:
            r.integer(v, hpath, minimum=_INTEGER_HYPERPARAMETERS[k])
        elif k in _NUMBER_HYPERPARAMETERS:
            r.number(v, hpath)
    vf = r.fraction(m.get("validation_fraction", d.validation_fraction), _join(path, "validation_fraction"))
    if not 0.0 < vf < 1.0:
        raise r.fail(_join(path, "validation_fraction"), "must be strictly between 0 and 1")
    instance_type = r.string(
        m.get("instance_type", d.instance_type), _join(path, "instance_type"), re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
    )
    spot = r.boolean(m.get("spot", False), _join(path, "spot"))
    max_runtime = r.integer(m.get("max_runtime_seconds", d.max_runtime_seconds), _join(path, "max_runtime_seconds"), 60)
    max_wait = m.get("max_wait_seconds")
    if max_wait is not None:
        max_wait = r.integer(max_wait, _join(path, "max_wait_seconds"), minimum=max_runtime)
    metrics = _CLASSIFICATION_METRICS if label.is_classification else _REGRESSION_METRICS
    default_metric = metrics[0]
    gpath = _join(path, "gate")
    gm = r.mapping(m.get("gate", {}) or {}, gpath, ("metric", "margin", "when_not_better"))
    gate = Gate(
        metric=r.choice(gm.get("metric", default_metric), _join(gpath, "metric"), metrics),
        margin=r.number(gm.get("margin", 0.0), _join(gpath, "margin"), minimum=0.0),
        when_not_better=r.choice(gm.get("when_not_better", "reject"), _join(gpath, "when_not_better"), GATE_POLICIES),
    )
    return Training(
        algorithm=algorithm,
        hyperparameters=dict(hp),
        validation_fraction=vf,
        instance_type=instance_type,
        instance_count=r.integer(m.get("instance_count", 1), _join(path, "instance_count"), minimum=1),
        max_runtime_seconds=max_runtime,
        spot=spot,
        max_wait_seconds=max_wait if spot else None,
        gate=gate,
    )


# --- Feature names: the rule in docs/features.md. spark_app.features names every feature it computes with these
# functions, and parse_contract checks the whole list (feature_names) for clashes before any job runs.


def window_feature(column: str, function: str, window: int, dataset: str | None = None) -> str:
    """An aggregate over a window, ``amount_sum_30d``; of an attribute of the joined events,
    ``products_category_distinct_90d``."""
    return f"{dataset}_{column}_{function}_{window}d" if dataset else f"{column}_{function}_{window}d"


def share_feature(dataset: str, share: Share, value: Any, window: int) -> str:
    """The share of a measure on one value of a reference column, ``products_category_books_amount_share_30d``. In
    the name each run of characters other than letters, digits and _ in the value is one _ (``home & garden``:
    ``home_garden``): Spark reads a dot in a column name as a struct field, XGBoost refuses ``[``, ``]`` and ``<``."""
    return f"{dataset}_{share.column}_{_NOT_NAME.sub('_', str(value)) or '_'}_{share.measure}_share_{window}d"


def attribute_feature(dataset: str, attribute: str, column_type: str, *, of_entity: bool) -> str:
    """A reference attribute of the entity itself (``customers_segment``) or of the entity's latest event
    (``products_category_last``); a date or time becomes days to the cutoff (``customers_signup_date_days``)."""
    name = f"{dataset}_{attribute}" if of_entity else f"{dataset}_{attribute}_last"
    return f"{name}_days" if column_type in DATED_TYPES else name


def sequence_features(sequence: SequenceFeatures) -> tuple[str, ...]:
    """The sequence features, in the order the job computes them."""
    k = sequence.short_window_days
    return (
        "days_since_last",
        "tenure_days",
        f"events_last_{k}d",
        f"events_prev_{k}d",
        "gap_days_mean",
        "gap_days_std",
        "gap_days_max",
    )


def text_features(text: TextFeatures) -> tuple[str, ...]:
    return tuple(f"{text.column}_{text.method}_{i}" for i in range(text.num_features))


def feature_names(features: Features, entity: str, references: Mapping[str, Contract]) -> tuple[str, ...]:
    """Every feature column the job writes, in its order: the dataset's own aggregates, then per join on another
    key its aggregates, shares and latest-event attributes, the sequence and text features, the entity's
    attributes. ``references`` holds the contract of every joined dataset."""
    windows = sorted(features.windows)
    names: list[str] = []
    for a in features.aggregations:
        names += [window_feature(a.column, fn, w) for w in windows for fn in a.functions]
    for j in features.joins:
        if j.key == entity:
            continue
        ref = references[j.dataset]
        for a in j.aggregations:
            names += [window_feature(a.column, fn, w, j.dataset) for w in windows for fn in a.functions]
        for s in j.shares:
            names += [share_feature(j.dataset, s, v, w) for w in windows for v in ref.column(s.column).allowed or ()]
        names += [attribute_feature(j.dataset, a, ref.column(a).type, of_entity=False) for a in j.attributes]
    if features.sequence is not None:
        names += sequence_features(features.sequence)
    if features.text is not None:
        names += text_features(features.text)
    for j in features.joins:
        if j.key == entity:
            ref = references[j.dataset]
            names += [attribute_feature(j.dataset, a, ref.column(a).type, of_entity=True) for a in j.attributes]
    return tuple(names)


def _check_output_names(
    r: _Reader, features: Features, label: Label | None, entity: str, references: Mapping[str, Contract]
) -> None:
    """No two columns of the feature tables share a name: the features, the entity, the cutoff, the label."""
    # Compared without case, as Spark compares column names.
    taken = {entity.lower(): "the entity column", CUTOFF: RESERVED_COLUMNS[CUTOFF]}
    for name in feature_names(features, entity, references):
        if name.lower() in taken:
            held = taken[name.lower()]
            what = "two features" if held == "a feature" else f"a feature and {held}"
            raise r.fail("features", f"{what} would be named {name!r} (the naming rule is in docs/features.md)")
        taken[name.lower()] = "a feature"
    if label is not None and label.name.lower() in taken:
        held = taken[label.name.lower()]
        raise r.fail("label.name", f"{label.name!r} is the name of {held}: give the label its own")


def parse_contract(
    document: Any, source: str = "<contract>", references: Mapping[str, Contract | None] | None = None
) -> Contract:
    """Check a parsed YAML document and build the Contract. ``references`` enables the cross-dataset join checks: it
    must name every joined dataset; one mapped to None has no contract at hand and its joins are not checked."""
    r = _Reader(source)
    m = r.mapping(document, "", _TOP)
    dataset = r.string(r.required(m, "dataset", ""), "dataset", DATASET_NAME)
    formats_raw = r.sequence(m.get("formats", list(FORMATS)), "formats")
    formats = tuple(r.choice(f, _join("formats", i), FORMATS) for i, f in enumerate(formats_raw))
    columns_raw = r.required(m, "columns", "")
    if not isinstance(columns_raw, Mapping) or not columns_raw:
        raise r.fail("columns", "must be a non-empty mapping of column name to spec")
    columns = tuple(_column(r, name, spec, _join("columns", str(name))) for name, spec in columns_raw.items())
    by_name = {c.name: c for c in columns}
    folded: dict[str, str] = {}
    for c in columns:
        other = folded.setdefault(c.name.lower(), c.name)
        if other != c.name:
            problem = f"{c.name!r} and {other!r} differ only in case: Spark, which ignores case, would take them as one"
            raise r.fail(_join("columns", c.name), problem)
    entity = r.string(r.required(m, "entity", ""), "entity")
    if entity not in by_name:
        raise r.fail("entity", f"{entity!r} is not one of the columns")
    timestamp = m.get("timestamp")
    if timestamp is not None:
        timestamp = r.string(timestamp, "timestamp")
        if timestamp not in by_name:
            raise r.fail("timestamp", f"{timestamp!r} is not one of the columns")
        if by_name[timestamp].type not in ("timestamp", "date"):
            raise r.fail(
                "timestamp", f"{timestamp!r} must be a timestamp or date column, it is {by_name[timestamp].type}"
            )
    label = _label(r, m["label"], by_name) if m.get("label") is not None else None
    features = (
        _features(r, m["features"], by_name, entity, references, dataset) if m.get("features") is not None else None
    )
    if (features is not None or label is not None) and timestamp is None:
        raise r.fail("timestamp", "is required when the contract has features or a label")
    if label is not None and features is None:
        raise r.fail("features", "is required when the contract has a label")
    if features is not None and label is None:
        # Without a label the dataset is a reference one: its batches are only curated, its features never computed.
        raise r.fail(
            "label", "is required when the contract has features (a contract without one is a reference dataset)"
        )
    if features is not None:
        # Without a reference contract the names of the attributes joined from it are unknown: the rest is checked
        # here, the whole list when the contract is loaded with all its references (load_contracts, the feature job).
        at_hand = {name: ref for name, ref in (references or {}).items() if ref is not None}
        known = replace(features, joins=tuple(j for j in features.joins if j.dataset in at_hand))
        _check_output_names(r, known, label, entity, at_hand)
    training = _training(r, m["training"], label) if m.get("training") is not None else None
    if label is not None and training is None:
        training = Training(gate=Gate(metric="auc" if label.is_classification else "rmse"))
    return Contract(
        dataset=dataset,
        description=str(m.get("description", "")),
        formats=formats,
        entity=entity,
        timestamp=timestamp,
        columns=columns,
        limits=_limits(r, m.get("limits"), formats),
        batching=_batching(r, m.get("batching")),
        features=features,
        label=label,
        training=training,
        source=source,
    )


def parse_contract_text(
    text: str | bytes, source: str = "<contract>", references: Mapping[str, Contract | None] | None = None
) -> Contract:
    """Parse YAML text into a Contract; YAML syntax errors become ContractError with the line."""
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise ContractError(source, where, f"is not valid YAML: {getattr(e, 'problem', None) or e}") from None
    if document is None:
        raise ContractError(source, "", "is empty")
    return parse_contract(document, source, references)


def load_contract(path: str | Path, references: Mapping[str, Contract | None] | None = None) -> Contract:
    """Read and check one contract file; the dataset name must equal the file name."""
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as e:
        raise ContractError(str(p), "", f"cannot be read: {e.strerror or e}") from None
    contract = parse_contract_text(text, str(p), references)
    if p.stem != contract.dataset:
        raise ContractError(str(p), "dataset", f"{contract.dataset!r} must equal the file name {p.stem!r}")
    return contract


def load_contracts(directory: str | Path) -> dict[str, Contract]:
    """Load every ``*.yaml`` in a directory, checking joins against the reference contracts found there."""
    d = Path(directory)
    files = sorted(d.glob("*.yaml"))
    if not files:
        raise ContractError(str(d), "", "holds no *.yaml contracts")
    plain = {f.stem: load_contract(f) for f in files}
    return {name: load_contract(f, references=plain) for name, f in zip(plain, files, strict=True)}


def load_contract_with_references(path: str | Path) -> tuple[Contract, tuple[str, ...]]:
    """Read one contract with the contracts of the datasets it joins found next to it, checked against each other as
    load_contracts does; also returns the joined datasets with no contract there, whose joins were not checked."""
    p = Path(path)
    plain = load_contract(p)
    joined = sorted({j.dataset for j in plain.features.joins}) if plain.features else []
    if not joined:
        return plain, ()
    files = {name: p.parent / f"{name}.yaml" for name in joined}
    references = {name: load_contract(f) if f.is_file() else None for name, f in files.items()}
    missing = tuple(name for name, ref in references.items() if ref is None)
    return load_contract(p, references), missing
