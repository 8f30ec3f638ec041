"""Inputs of the feature job: URIs (s3:// or local), the batch manifest, contracts, and raw files read with the
contract's schema (never ``inferSchema``).

Small files (manifest, contracts, a CSV header) are read in the driver with boto3 for ``s3://`` and plainly for
local paths; the data itself is read by Spark, which reads ``s3://`` natively on EMR.
"""

from __future__ import annotations

import hashlib
import json
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from py4j.protocol import Py4JJavaError
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from dropzone.contract import FORMATS, Contract, ContractError, format_of, parse_contract_text, read_suffixes
from dropzone.rules import INT64_RANGE, JSON_KINDS

CORRUPT = "_corrupt_record"
FILE_INDEX = "_file_index"
BAD_JSON_LINE = "_bad_json_line"  # JSON Lines: the line, when it is not one JSON object (the validator's row.json)
_JSON_KIND = "_json_kind_"  # + column: the JSON type of the value (string, number, bool, array, object), or null
_BLANK = " \t\r\x0b\x0c"  # what the validator's ``bytes.strip()`` strips from a line that is then blank
_JSON_SPACE = " \t\r"  # JSON's whitespace (less the newline, which ends the line)

SPARK_TYPES: dict[str, T.DataType] = {
    "string": T.StringType(),
    "int": T.LongType(),
    "double": T.DoubleType(),
    "bool": T.BooleanType(),
    "date": T.DateType(),
    "timestamp": T.TimestampType(),
}


class JobInputError(ValueError):
    """An argument, manifest or input file the job cannot use; the message names it and the problem."""


@dataclass(frozen=True)
class BatchFile:
    uri: str
    format: str
    key: str | None = None
    version: str | None = None
    size: int | None = None


@dataclass(frozen=True)
class Batch:
    dataset: str | None
    batch_id: str
    attempt: int
    files: tuple[BatchFile, ...]


def is_s3(uri: str) -> bool:
    return uri.startswith(("s3://", "s3a://"))


def local_path(uri: str) -> Path:
    return Path(urlparse(uri).path) if uri.startswith("file://") else Path(uri)


def join_uri(root: str, *parts: str) -> str:
    return "/".join([root.rstrip("/"), *(p.strip("/") for p in parts)])


def _s3_client() -> Any:
    import boto3  # on EMR and in the dev venv; imported lazily so local runs never need credentials

    return boto3.client("s3")


def read_bytes(uri: str, length: int | None = None) -> bytes:
    """Whole object (or its first ``length`` bytes) from s3:// or a local path / file:// URI."""
    if is_s3(uri):
        u = urlparse(uri)
        extra = {"Range": f"bytes=0-{length - 1}"} if length else {}
        try:
            body = _s3_client().get_object(Bucket=u.netloc, Key=u.path.lstrip("/"), **extra)["Body"]
        except Exception as e:
            raise JobInputError(f"{uri}: cannot be read: {e}") from None
        return bytes(body.read())
    path = local_path(uri)
    try:
        with path.open("rb") as f:
            return f.read(length) if length else f.read()
    except OSError as e:
        raise JobInputError(f"{uri}: cannot be read: {e.strerror or e}") from None


def write_text(uri: str, text: str) -> None:
    if is_s3(uri):
        u = urlparse(uri)
        _s3_client().put_object(
            Bucket=u.netloc, Key=u.path.lstrip("/"), Body=text.encode(), ContentType="application/json"
        )
        return
    path = local_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def spark_path(uri: str) -> str:
    """What Spark reads: s3:// stays (EMRFS), local paths become absolute file:// URIs."""
    if is_s3(uri):
        return uri
    # Not Path.as_uri(): Hadoop takes the path literally and would keep %-escapes such as run%3D1.
    return "file:" + str(local_path(uri).resolve())


# Hadoop reads a path with any of these characters as a glob pattern (FileSystem.globStatus), in Spark's readers on
# EMR (s3://) as locally: a file the validator accepted as orders[1].csv was then "not found" and its batch failed.
_GLOB = re.compile(r"([\\*?\[\]{}])")


def literal_path(path: str) -> str:
    """A path for Spark's readers that names exactly one file, whatever its name: each glob character escaped."""
    return _GLOB.sub(r"\\\1", path)


def file_format(uri: str) -> str:
    """The format a file's name says, as the validator reads it (dropzone.contract.FILE_SUFFIXES)."""
    fmt = format_of(uri.rsplit("/", 1)[-1])
    if fmt is None:
        raise JobInputError(f"{uri}: unknown file format (the name must end in {read_suffixes()})")
    return fmt


def batch_id_of(uris: list[str]) -> str:
    return hashlib.sha256("\n".join(sorted(uris)).encode()).hexdigest()[:32]


def parse_manifest(document: Any, source: str) -> Batch:
    """The orchestrator's batch object, or a plain JSON list of URIs (batch id = hash of the sorted URIs)."""
    if isinstance(document, list):
        if not document or not all(isinstance(u, str) and u for u in document):
            raise JobInputError(f"{source}: a list manifest must be a non-empty list of file URIs")
        return Batch(None, batch_id_of(document), 1, tuple(BatchFile(u, file_format(u)) for u in document))
    if not isinstance(document, dict):
        raise JobInputError(f"{source}: the manifest must be a JSON object or a list of URIs")
    files = document.get("files")
    if not isinstance(files, list) or not files:
        raise JobInputError(f"{source}: 'files' must be a non-empty list")
    parsed = []
    for i, f in enumerate(files):
        if not isinstance(f, dict) or not isinstance(f.get("uri"), str):
            raise JobInputError(f"{source}: files[{i}] must be an object with a 'uri'")
        fmt = f.get("format") or file_format(f["uri"])
        if fmt not in FORMATS:
            raise JobInputError(f"{source}: files[{i}].format {fmt!r} is not one of {', '.join(FORMATS)}")
        parsed.append(BatchFile(f["uri"], fmt, f.get("key"), f.get("version"), f.get("size")))
    uris = [f.uri for f in parsed]
    attempt = document.get("attempt", 1)
    if not isinstance(attempt, int) or isinstance(attempt, bool):
        raise JobInputError(f"{source}: 'attempt' must be an integer")
    return Batch(document.get("dataset"), str(document.get("batch_id") or batch_id_of(uris)), attempt, tuple(parsed))


def load_manifest(uri: str) -> Batch:
    try:
        document = json.loads(read_bytes(uri))
    except json.JSONDecodeError as e:
        raise JobInputError(f"{uri}: the manifest is not valid JSON: {e}") from None
    return parse_manifest(document, uri)


def load_job_contracts(contracts_uri: str, dataset: str) -> dict[str, Contract]:
    """The dataset's contract and those of the reference datasets it joins, checked against each other."""

    def text(name: str) -> bytes:
        return read_bytes(join_uri(contracts_uri, f"{name}.yaml"))

    plain = parse_contract_text(text(dataset), join_uri(contracts_uri, f"{dataset}.yaml"))
    refs = {j.dataset for j in plain.features.joins} if plain.features else set()
    references = {r: parse_contract_text(text(r), join_uri(contracts_uri, f"{r}.yaml")) for r in sorted(refs)}
    contract = parse_contract_text(text(dataset), join_uri(contracts_uri, f"{dataset}.yaml"), references)
    if contract.dataset != dataset:
        raise ContractError(contract.source, "dataset", f"{contract.dataset!r} does not match --dataset {dataset!r}")
    return {dataset: contract, **references}


def quoted(name: str) -> str:
    """A column name as a Spark SQL identifier (a header may name a column ``unit.price`` or ``a`b``)."""
    return "`" + name.replace("`", "``") + "`"


def _csv_head(uri: str, fmt: str) -> list[str]:
    """The column names of a CSV file's header line."""
    raw = read_bytes(uri, 1 << 16)
    if fmt == "csv.gz":
        raw = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(raw, 1 << 16)
    line = raw.split(b"\n", 1)[0].removesuffix(b"\r").decode("utf-8-sig", errors="replace")
    return [h.strip().strip('"') for h in line.split(",")] if line.strip() else []


def json_kind_column(name: str) -> str:
    """The column of ``read_batch`` holding the JSON type of contract column ``name`` (null outside JSON Lines)."""
    return _JSON_KIND + name


def _variant_kind(schema: Column) -> Column:
    """``schema_of_variant`` of a JSON value → its JSON type (dropzone.rules.JSON_KINDS); JSON null → null."""
    return (
        F.when(schema == "STRING", F.lit("string"))
        .when(schema == "BOOLEAN", F.lit("bool"))
        .when(schema.startswith("ARRAY"), F.lit("array"))
        .when(schema.startswith("OBJECT"), F.lit("object"))
        .when(schema != "VOID", F.lit("number"))  # BIGINT, DECIMAL(p,s) or DOUBLE: how parse_json keeps numbers
    )


def _json_value_text(string: Column, double: Column, schema: Column, kind: Column, column_type: str) -> Column:
    """A JSON value → the text the rules parse (dropzone.rules, ``parse``), null for null and for a JSON type the
    column does not take. ``string``/``double``: the variant read as a string / a double. Strings give their content,
    ``true``/``false`` their name, numbers the plain digits or decimal of their value (variant keeps the exact
    decimal up to 38 digits, else a double, printed as Java does: ``1.0E-7``, ``Infinity``); in an int column a
    whole double within 64 bits gives its digits."""
    text = string
    if column_type == "int":
        in_range = (double >= F.lit(float(INT64_RANGE[0]))) & (double < F.lit(float(INT64_RANGE[1])))
        whole = F.when(in_range, double.try_cast("bigint"))
        digits = F.when(whole.cast("double") == double, whole.cast("string"))
        text = F.when(schema == "DOUBLE", F.coalesce(digits, text)).otherwise(text)
    return F.when(kind.isin(list(JSON_KINDS[column_type])), text)


_SURROGATE_PAIR = r"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"  # Java regex: high then low half


def _read_json_lines(spark: SparkSession, contract: Contract, paths: list[str]) -> DataFrame:
    """JSON Lines by the validator's rule (docs/validation.md, "JSON Lines"): each line is a row; blank lines are
    skipped; a line that is not valid UTF-8, not JSON (RFC 8259: no NaN, no single quotes), not one object with
    nothing after it or with an escape of half a surrogate pair is a bad row (``BAD_JSON_LINE``); a repeated key
    keeps its last value. Each contract column comes as text plus its JSON type (``json_kind_column``), read from
    the line parsed as a variant: Spark's JSON reader would render ``17`` and ``"17"`` alike, take ``[{...}, {...}]``
    as two rows and ignore what follows an object. Built in steps, each value computed once (variant expressions
    are not shared by code generation)."""
    # parse_json refuses a repeated key unless this is set; json.loads (the validator) keeps the last value
    spark.conf.set("spark.sql.variant.allowDuplicateKeys", "true")
    lines = spark.read.option("lineSep", "\n").text(paths)  # the validator splits at \n only
    line = F.col("value")
    lines = lines.filter(F.btrim(line, F.lit(_BLANK)) != F.lit(""))
    # json.loads drops a UTF-8 BOM that starts the bytes of a line
    text = F.when(line.startswith("\ufeff"), F.substring(line, 2, 1 << 30)).otherwise(line)
    trimmed = F.btrim(text, F.lit(_JSON_SPACE))
    # Wrapped in [ ]: parse_json ignores what follows the first value, but inside an array that is a syntax error
    # (or a second element); an object line must also end with } (else "{...}] x" would pass).
    object_line = F.is_valid_utf8(line) & trimmed.startswith("{") & trimmed.endswith("}")
    # A ] of the line at depth 0 closes the wrapper early and hides what follows ('{...}] {}' parses as [{...}]).
    # Wrapped again with a last element, such a line still closes at the same place, before it: [{...}] without the
    # 0. Only lines holding a ] are parsed twice; each parse is a column of its own step (computed once per line).
    bracket = object_line & text.contains("]")
    # An escape of half a UTF-16 surrogate pair is no text (the validator's bad row; Spark's parser reads it as "?").
    # Found in the line: escaped backslashes dropped first (what follows one is text), then the escaped pairs.
    escapes = F.regexp_replace(F.regexp_replace(text, r"\\\\", ""), _SURROGATE_PAIR, "")
    lone = F.when(object_line & text.contains("\\u"), escapes.rlike(r"\\u[dD][89a-fA-F]"))
    rows = lines.select(
        F.when(object_line, F.try_parse_json(F.concat(F.lit("["), text, F.lit("]")))).alias("_wrapped"),
        F.when(bracket, F.try_parse_json(F.concat(F.lit("["), text, F.lit(",0]")))).alias("_closed"),
        bracket.alias("_bracket"),
        F.coalesce(lone, F.lit(False)).alias("_lone"),
        line.alias("_line"),
        F.col("_metadata.file_path").alias("_source_uri"),
    )
    closed = F.col("_closed")
    to_the_end = (F.try_variant_get(closed, "$[1]", "int") == F.lit(0)) & F.try_variant_get(
        closed, "$[2]", "variant"
    ).isNull()
    whole = ~F.col("_bracket") | F.coalesce(to_the_end, F.lit(False))
    one = (
        F.col("_wrapped").isNotNull()
        & F.try_variant_get(F.col("_wrapped"), "$[1]", "variant").isNull()
        & whole
        & ~F.col("_lone")
    )
    rows = rows.select(F.when(one, F.col("_wrapped")).alias("_wrapped"), "_line", "_source_uri")
    names = contract.column_names
    rows = rows.select(
        *[F.try_variant_get(F.col("_wrapped"), f"$[0].{name}", "variant").alias(f"_v_{name}") for name in names],
        F.when(F.col("_wrapped").isNull(), F.col("_line")).alias(BAD_JSON_LINE),
        "_source_uri",
    )
    value = {name: F.col(f"_v_{name}") for name in names}
    rows = rows.select(
        *[F.schema_of_variant(value[name]).alias(f"_s_{name}") for name in names],
        *[F.try_variant_get(value[name], "$", "string").alias(f"_t_{name}") for name in names],
        *[
            F.try_variant_get(value[c.name], "$", "double").alias(f"_d_{c.name}")
            for c in contract.columns
            if c.type == "int"
        ],
        BAD_JSON_LINE,
        "_source_uri",
    )
    rows = rows.select(
        *[_variant_kind(F.col(f"_s_{name}")).alias(json_kind_column(name)) for name in names],
        *[F.col(f"_{x}_{name}") for x in "std" for name in names if f"_{x}_{name}" in rows.columns],
        BAD_JSON_LINE,
        "_source_uri",
    )
    out = []
    for c in contract.columns:
        double = F.col(f"_d_{c.name}") if c.type == "int" else F.lit(None).cast("double")
        kind = F.col(json_kind_column(c.name))
        text = _json_value_text(F.col(f"_t_{c.name}"), double, F.col(f"_s_{c.name}"), kind, c.type)
        out += [text.alias(c.name), kind]
    return rows.select(*out, F.lit(None).cast("string").alias(CORRUPT), BAD_JSON_LINE, "_source_uri")


def _parquet_text(contract: Contract, raw: DataFrame) -> DataFrame:
    """The contract columns of Parquet files read under one schema, as text, plus ``_corrupt_record`` and the file."""
    types = dict(raw.dtypes)
    stamps = {c.name for c in contract.columns if c.type == "timestamp"}

    def value(c: str) -> Column:
        if c in stamps and types[c] == "bigint":
            return F.timestamp_micros(F.expr(f"(`{c}` - pmod(`{c}`, 1000)) div 1000"))
        if c in stamps and types[c] == "date":  # midnight UTC, as the validator reads a date there; as text a
            return F.col(c).cast("timestamp")  # date alone would fail the timestamp pattern
        return F.col(c)

    # Typed Parquet values rendered as text (session time zone UTC), so one rule compiler serves every format.
    return raw.select(
        *[value(c).cast("string").alias(c) for c in contract.column_names if c in types],
        F.lit(None).cast("string").alias(CORRUPT),
        F.col("_metadata.file_path").alias("_source_uri"),
    )


def _read_parquet(spark: SparkSession, contract: Contract, files: list[str], paths: list[str]) -> DataFrame:
    """Parquet files, each read with its own physical types. The validator checks each file on its own, so a batch
    may hold a double column as int64 in one file and double in another, a date column as text and as date, an
    optional column of Parquet's null type (all null) and of text. Spark reads a list of files under the schema of
    one of them and fails the read of any other whose type differs (FAILED_READ_FILE.PARQUET_COLUMN_DATA_TYPE_MISMATCH,
    on every retry), or reads it wrongly: microsecond timestamps under the bigint of a nanosecond file are taken for
    nanoseconds. ``files``: the files' paths as Hadoop names them, ``paths``: as Spark's reader takes them."""
    # Spark refuses Parquet timestamps in nanoseconds, pandas' default unit ("Illegal Parquet type: INT64
    # (TIMESTAMP(NANOS,...))"), unless it reads them as their int64 count: in a timestamp column of a file the
    # validator accepted, a bigint is such a count (it refuses plain integers there), floored to the microsecond as
    # the validator floors it.
    spark.conf.set("spark.sql.legacy.parquet.nanosAsLong", "true")
    try:
        # mergeSchema reads every footer in the one job that otherwise reads one (same plan, same scan) and refuses
        # two Spark types that differ (int and bigint too): Spark 4.1.1 merges equal types only, and a decimal of
        # one scale to the larger precision, neither of which changes a value's text (a file's millisecond and
        # microsecond timestamps are one type). Measured on this 2-core machine, the schema step of 1, 8 and 64 files
        # of one schema, without and with it: within the noise (8 files 275 against 291 ms, 64 files 1,164 against
        # 1,124 ms, medians of 5); one file is read as before.
        return _parquet_text(contract, spark.read.option("mergeSchema", len(paths) > 1).parquet(*paths))
    except Py4JJavaError as e:  # raised when the read is planned, before a row is read (found in a task that reads
        # several footers, the task fails first: an error in the log, retried up to spark.task.maxFailures)
        if not _is_condition(e, "CANNOT_MERGE_SCHEMAS"):
            raise
    # Types differ: the files grouped by the Parquet types of their contract columns (equal Parquet types are equal
    # Spark types), one read per group.
    groups: dict[tuple[str, ...], list[str]] = {}
    for types, path in zip(_parquet_types(spark, files, contract.column_names), paths, strict=True):
        groups.setdefault(types, []).append(path)
    frames = [_parquet_text(contract, spark.read.parquet(*group)) for group in groups.values()]
    df = frames[0]
    for other in frames[1:]:
        df = df.unionByName(other, allowMissingColumns=True)
    return df


def _parquet_types(spark: SparkSession, files: list[str], columns: Sequence[str]) -> list[tuple[str, ...]]:
    """The Parquet types of each file's ``columns`` (``optional int64 amount``), from its footer, read by the driver
    through Hadoop's file system (s3:// on EMR). Reading each file's schema as a DataFrame ran a Spark job per file:
    60 files of two types planned in 5.5-6.2 s, 2.2-2.4 s this way (the failed merged read included)."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    hadoop_path, input_file = jvm.org.apache.hadoop.fs.Path, jvm.org.apache.parquet.hadoop.util.HadoopInputFile
    open_reader = jvm.org.apache.parquet.hadoop.ParquetFileReader.open
    types = []
    for file in files:
        reader = open_reader(input_file.fromPath(hadoop_path(file), conf))
        try:
            schema = reader.getFooter().getFileMetaData().getSchema()
        finally:
            reader.close()
        types.append(tuple(str(schema.getType(c).toString()) for c in columns if schema.containsField(c)))
    return types


def _is_condition(error: Py4JJavaError, condition: str) -> bool:
    """Is ``error`` Spark's error of that condition (pyspark passes a SparkException through as Py4JJavaError)?"""
    java = error.java_exception
    return str(java.getClass().getName()) == "org.apache.spark.SparkException" and java.getCondition() == condition


def _read_group(spark: SparkSession, contract: Contract, fmt: str, uris: list[str], header: list[str]) -> DataFrame:
    """Every contract column as text (the validator's rules parse text) and, for JSON Lines, its JSON type; plus
    ``_corrupt_record`` (CSV), ``_bad_json_line`` (JSON Lines) and the file. ``header``: that of the group's CSV
    files."""
    paths = [literal_path(spark_path(u)) for u in uris]
    text = T.StringType()
    if fmt.startswith("csv"):
        # Columns by the file's own header (any order); columns outside the contract are dropped.
        schema = T.StructType([*[T.StructField(h, text, True) for h in header], T.StructField(CORRUPT, text, True)])
        # RFC 4180, as the validator reads CSV (pyarrow): a quoted value may hold newlines (multiLine; Spark splits
        # rows at every newline by default: the rest of the value became a row of its own, both dropped as bad) and
        # writes a quote as two ("" where Spark's default escape is a backslash). With multiLine a file is read by one
        # task, not split: the 8 generated files of 1M and 10M rows, read and checked, 4.8-4.9 s and 25.6 s against
        # 5.3-5.8 s and 28.6 s split (this 2-core machine, warm).
        # Line ends: the validator ends a row at LF or CRLF, both in one file (a CR alone is refused: guard.py). Spark
        # takes one line end per read: without lineSep the first line's, and CRLF then turns a CRLF inside a quoted
        # value into LF and runs an LF-ended row into the next. Read at LF (quoted values kept as they are), a
        # CRLF-ended row leaves its CR at the end of its last value, taken off below.
        df = (
            spark.read.schema(schema)
            .option("header", True)
            .option("multiLine", True)
            .option("lineSep", "\n")
            .option("escape", '"')
            .option("enforceSchema", True)
            .option("mode", "PERMISSIVE")
            .option("columnNameOfCorruptRecord", CORRUPT)
            .csv(paths)
        )
        df = _without_carriage_returns(df, header)
    elif fmt.startswith("jsonl"):
        return _read_json_lines(spark, contract, paths)
    else:
        df = _read_parquet(spark, contract, [spark_path(u) for u in uris], paths)
    if "_source_uri" not in df.columns:
        df = df.withColumn("_source_uri", F.col("_metadata.file_path"))
    for c in contract.column_names:
        if c not in df.columns:
            df = df.withColumn(c, F.lit(None).cast("string"))
    kinds = [F.lit(None).cast("string").alias(json_kind_column(c)) for c in contract.column_names]
    no_json = F.lit(None).cast("string").alias(BAD_JSON_LINE)
    return df.select(*contract.column_names, *kinds, CORRUPT, no_json, "_source_uri")


def _without_carriage_returns(df: DataFrame, header: list[str]) -> DataFrame:
    """A CSV frame read at LF, with the CR of each CRLF line end taken off. It ends the row's last value (an empty
    one: the value is the CR alone, read as null as an empty value is), and a blank CRLF line is a row whose first
    value is the CR alone, skipped as the validator skips blank lines. Neither can come from anything else: the
    validator refuses a CR that is not followed by LF, in a quoted value too. (A short row's last value may keep
    its CR: such a row is bad for its number of fields alone.) Only these two columns are looked at: checking every
    value cost 1M rows read and checked ~10% more."""
    blank = F.col(quoted(header[0])).eqNullSafe("\r")
    last = F.col(quoted(header[-1]))
    cut = F.nullif(last.substr(F.lit(1), F.length(last) - 1), F.lit(""))
    return df.filter(~blank).withColumn(header[-1], F.when(last.endswith("\r"), cut).otherwise(last))


def _hadoop_uri(spark: SparkSession, uri: str) -> str:
    """The form ``_metadata.file_path`` takes (Hadoop's escaped URI), to map rows back to manifest entries."""
    jvm = spark.sparkContext._jvm
    assert jvm is not None
    return str(jvm.org.apache.hadoop.fs.Path(spark_path(uri)).toUri().toString())


def read_batch(spark: SparkSession, contract: Contract, batch: Batch) -> DataFrame:
    """Every file of the batch: the contract's columns as text, ``_corrupt_record`` (non-null when a line could not
    be split into fields) and ``_file_index`` (position in the manifest: later files win on duplicate keys)."""
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for f in batch.files:
        if f.format not in contract.formats:
            raise JobInputError(f"{f.uri}: format {f.format} is not accepted by the {contract.dataset} contract")
        header = _csv_head(f.uri, f.format) if f.format.startswith("csv") else []
        if f.format.startswith("csv") and not header:
            raise JobInputError(f"{f.uri}: the CSV file has no header line")
        groups.setdefault((f.format, tuple(header)), []).append(f.uri)
    frames = [_read_group(spark, contract, fmt, uris, list(header)) for (fmt, header), uris in groups.items()]
    df = frames[0]
    for other in frames[1:]:
        df = df.unionByName(other)
    index = F.create_map(*[x for i, f in enumerate(batch.files) for x in (F.lit(_hadoop_uri(spark, f.uri)), F.lit(i))])
    return df.withColumn(FILE_INDEX, F.coalesce(index[F.col("_source_uri")], F.lit(-1))).drop("_source_uri")
