"""The feature job: batch manifest → curated table → features → ``_manifest.json`` (written last)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pyspark import SparkConf, SparkContext, StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from dropzone.contract import Contract
from spark_app.curate import BATCH_ID, EVENT_DATE, CurateResult, curate, latest_partition, read_table, table_uri
from spark_app.features import CUTOFF, ROLE, Cutoffs, FeatureResult, compute_features
from spark_app.io import (
    Batch,
    JobInputError,
    join_uri,
    load_job_contracts,
    load_manifest,
    quoted,
    read_batch,
    spark_path,
    write_text,
)
from spark_app.rules import BAD, compile_rules, failure_count_columns, failure_counts

SPLIT_BUCKETS = 10_000
# Aggregate expressions per manifest-statistics query: the shipped orders contract has ~330, one query. Against
# queries of 64: 1M events, 6.8-7.0 s against 6.9-9.5 s; 20,000, 2.6-4.2 s against 5.0-5.5 s (same sessions).
STATS_CHUNK = 400


@dataclass(frozen=True)
class JobArgs:
    manifest: str
    contracts: str
    dataset: str
    curated: str
    features: str
    run_id: str
    as_of: date | None = None
    train_cutoffs: int = 1


def parse_args(argv: Sequence[str] | None = None) -> JobArgs:
    p = argparse.ArgumentParser(prog="spark_app", description="dropzone feature job (EMR Serverless entry point)")
    p.add_argument("--manifest", required=True, help="batch manifest URI (JSON object or list of file URIs)")
    p.add_argument("--contracts", required=True, help="directory URI holding <dataset>.yaml and its references")
    p.add_argument("--dataset", required=True)
    p.add_argument("--curated", required=True, help="curated tables root: <root>/<dataset>/event_date=...")
    p.add_argument("--features", required=True, help="features root: <root>/<dataset>/run=<run id>/")
    p.add_argument("--run-id", required=True)
    p.add_argument(
        "--as-of", type=date.fromisoformat, default=None, help="YYYY-MM-DD (default: day after the last event)"
    )
    p.add_argument("--train-cutoffs", type=int, default=1, help="training cutoffs, spaced by the horizon (default 1)")
    a = p.parse_args(argv)
    if a.train_cutoffs < 1:
        p.error("--train-cutoffs must be at least 1")
    return JobArgs(a.manifest, a.contracts, a.dataset, a.curated, a.features, a.run_id, a.as_of, a.train_cutoffs)


# pyspark records the Python call site of every DataFrame and Column call it makes (for error messages): a stack walk
# and four py4j round trips per call, thousands per run, "a non-trivial performance overhead" (the setting's own
# doc). Off unless the run sets it (--conf spark.python.sql.dataFrameDebugging.enabled=true to debug a failure).
# 20,000 orders, the job warm (issue #3): 16,000 round trips to the JVM instead of 41,500, 2.2 s of Python CPU
# instead of 4.7-5.7 s.
DATAFRAME_DEBUGGING = "spark.python.sql.dataFrameDebugging.enabled"


def build_session(app_name: str = "dropzone-features") -> SparkSession:
    """On EMR the master and resources come from the job run; only job-level behaviour is set here."""
    builder = SparkSession.builder
    if SparkContext._active_spark_context is None:  # else fixed already (the local drivers set it as EMR's here)
        SparkContext._ensure_initialized()  # the JVM, so that SparkConf() holds the run's own properties
        builder = builder.config(DATAFRAME_DEBUGGING, SparkConf().get(DATAFRAME_DEBUGGING, "false"))
    session = (
        builder.appName(app_name)
        .config("spark.sql.adaptive.enabled", "true")
        # The job persists frames whose plans hold shuffles (checked batch, features frame): without this AQE may
        # not coalesce their shuffle partitions, and every persisted shuffle runs spark.sql.shuffle.partitions tasks.
        .config("spark.sql.optimizer.canChangeCachedPlanOutputPartitioning", "true")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        # Listing the curated table's daily partitions (hundreds of folders) runs as a Spark job above 32 folders;
        # a few tasks of many folders each instead of one task per folder.
        .config("spark.sql.sources.parallelPartitionDiscovery.parallelism", "8")
        # The feature group-by's partial buffers hold more than 100 fields for the shipped contract (a mean is a sum
        # and a count, a standard deviation three); above this limit Spark runs a stage without generated code.
        # Spark splits the generated aggregate code per function, so the methods stay small. 10M events: the feature
        # stage 84.5 s with 1000 vs 90.9 s with the default 100 (issue #3).
        .config("spark.sql.codegen.maxFields", "1000")
        # The job caches the frames it reads more than once: the batch's rows to write (curate), the features (split
        # writes, statistics), the events when Word2Vec is fitted. Each is read back a few times, so compressing them
        # costs more than it saves: 10M events, the curate step 44.6-46.3 s uncompressed vs 52.6-55.9 s compressed,
        # same session (issue #3). Uncompressed, a worker's 1 GiB of input (batching.BYTES_PER_EXECUTOR_CORE x 4)
        # stays well inside its executor memory, and MEMORY_AND_DISK spills what does not fit.
        .config("spark.sql.inMemoryColumnarStorage.compressed", "false")
        .getOrCreate()
    )
    _quiet_metadata_probe(session)
    return session


# Reading one path, Spark first looks for a streaming sink's _spark_metadata folder under it (FileStreamSink
# .hasMetadata); for a file whose name holds glob characters, read through its escaped name (io.literal_path), that
# look fails and logs a WARN with a stack trace, though the read goes on and is right. The class moved in Spark 4.
_METADATA_PROBE_LOGGERS = (
    "org.apache.spark.sql.execution.streaming.sinks.FileStreamSink",
    "org.apache.spark.sql.execution.streaming.FileStreamSink",
)


def _quiet_metadata_probe(spark: SparkSession) -> None:
    """Only errors from the sink-metadata probe reach the run's log (no streaming sink is read here)."""
    log4j = spark.sparkContext._jvm.org.apache.logging.log4j  # type: ignore[union-attr]
    for name in _METADATA_PROBE_LOGGERS:
        log4j.core.config.Configurator.setLevel(name, log4j.Level.ERROR)


def run_dir(args: JobArgs) -> str:
    return join_uri(args.features, args.dataset, f"run={args.run_id}")


def _validate_and_curate(
    spark: SparkSession, contract: Contract, batch: Batch, curated_root: str
) -> tuple[RuleCounts, CurateResult]:
    """Merges the rows of the batch that pass every blocking row rule into the curated table; the rule counts are
    taken in the merge's counting pass (the batch is read and checked once)."""
    compiled = compile_rules(read_batch(spark, contract, batch), contract)
    curated = curate(
        spark, contract, compiled.frame, batch.batch_id, curated_root, bad=BAD, counts=failure_count_columns(compiled)
    )
    rows, bad, failures = failure_counts(curated.counts, compiled)
    blocking = {k: v for k, v in failures.items() if k in compiled.blocking}
    flagged = {k: v for k, v in failures.items() if k not in compiled.blocking}
    return RuleCounts(rows, bad, blocking, flagged), curated


@dataclass(frozen=True)
class RuleCounts:
    rows: int
    bad_rows: int
    failures: dict[str, int]  # blocking rule name -> rows failing it (a row can fail several)
    flagged: dict[str, int]  # non-blocking rules (e.g. text that starts like a spreadsheet formula)


def _feature_stats(
    spark: SparkSession, view: str, result: FeatureResult, label: str
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Per-feature null fraction/min/max/mean over the training rows of the features frame registered as ``view``,
    row counts per split, the label mean and the unknown-key counters (over the scoring rows: every event before the
    as-of date once), in one pass."""
    numeric = {"double", "bigint", "int"}
    train = f"{quoted(ROLE)} = 'train'"
    exprs = [f"count_if(`_split` = '{s}') AS `{s}_rows`" for s in ("train", "validation", "score")]
    exprs.append(f"avg(CASE WHEN {train} THEN CAST({quoted(label)} AS DOUBLE) END) AS `_label_mean`")
    exprs += [f"coalesce(sum(CASE WHEN NOT ({train}) THEN {quoted(c)} END), 0) AS {quoted(c)}" for c in result.counters]
    for f in result.features:
        value = f"CASE WHEN {train} THEN {quoted(f.name)} END"
        exprs.append(
            f"avg(CASE WHEN {train} THEN CAST({quoted(f.name)} IS NULL AS DOUBLE) END) AS {quoted(f.name + '__null')}"
        )
        if f.type in numeric:
            exprs.append(f"CAST(min({value}) AS DOUBLE) AS {quoted(f.name + '__min')}")
            exprs.append(f"CAST(max({value}) AS DOUBLE) AS {quoted(f.name + '__max')}")
            exprs.append(f"avg(CAST({value} AS DOUBLE)) AS {quoted(f.name + '__mean')}")
    # SQL text: ~330 expressions built as Column objects cost ~4,500 py4j calls, about 1 s of a 20,000-order run.
    # A contract with many more features gets several queries over the persisted frame (each reads the cache).
    row: dict[str, Any] = {}
    for i in range(0, len(exprs), STATS_CHUNK):
        query = f"SELECT {', '.join(exprs[i : i + STATS_CHUNK])} FROM {view}"  # noqa: S608 - column names only, each quoted
        row.update(spark.sql(query).collect()[0].asDict())
    stats = {}
    for f in result.features:
        stats[f.name] = {
            "name": f.name,
            "type": f.type,
            "description": f.description,
            "null_fraction": row[f"{f.name}__null"],
            "min": row.get(f"{f.name}__min"),
            "max": row.get(f"{f.name}__max"),
            "mean": row.get(f"{f.name}__mean"),
        }
    overall = {k: row[k] for k in ("train_rows", "validation_rows", "score_rows", "_label_mean", *result.counters)}
    return stats, overall


def build_features(
    spark: SparkSession, args: JobArgs, contracts: dict[str, Contract]
) -> tuple[dict[str, Any], FeatureResult | None]:
    """Compute and write train/validation/score for the dataset from its curated table; returns manifest fields."""
    contract = contracts[args.dataset]
    assert contract.label is not None
    assert contract.training is not None
    assert contract.timestamp is not None
    events = read_table(spark, table_uri(args.curated, contract.dataset))
    if events is None:
        raise JobInputError(f"{table_uri(args.curated, contract.dataset)}: the curated table is empty")
    as_of = args.as_of
    if as_of is None:
        last = latest_partition(events)
        if last is None:
            raise JobInputError(
                f"{table_uri(args.curated, contract.dataset)}: the curated table holds no event with a timestamp "
                f"({contract.timestamp} is empty in every row): the cutoffs and windows need dated events"
            )
        as_of = last + timedelta(days=1)
    cutoffs = Cutoffs.for_as_of(as_of, contract.label.horizon_days, args.train_cutoffs)
    references = {}
    for d in sorted({j.dataset for j in contract.features.joins} if contract.features else set()):
        references[d] = read_table(spark, table_uri(args.curated, d))
    # Events on or after the score cutoff are never used (features and labels end there): prune partitions.
    events = events.filter(F.col(EVENT_DATE) < F.lit(as_of)).drop(BATCH_ID)
    # Word2Vec is fitted before the main pass: keep the events for the passes that follow (TF-IDF needs no pass of
    # its own: its weights come from counts the main pass takes).
    text = contract.features.text if contract.features is not None else None
    if text is not None and text.method == "word2vec":
        events = events.persist(StorageLevel.MEMORY_AND_DISK)
    result = compute_features(contract, events, references, contracts, cutoffs)
    vf = contract.training.validation_fraction
    bucket = F.pmod(F.xxhash64(F.col(contract.entity)), F.lit(SPLIT_BUCKETS))
    split = (
        F.when(F.col(ROLE) == "score", "score")
        .when(bucket < F.lit(round(vf * SPLIT_BUCKETS)), "validation")
        .otherwise("train")
    )
    frame = result.frame.withColumn("_split", split)
    if result.cached is None:  # else the frame is already read from a cache (see compute_features)
        frame = frame.persist()
    out = run_dir(args)
    outputs = {}
    feature_cols = [f.name for f in result.features]
    # The splits and the statistics are queried as SQL text over a view of the frame: a select of a list of columns
    # costs two py4j round trips per column (the column, then its place in a Java list), ~1,000 for the three splits.
    view = "_dropzone_features"
    frame.createOrReplaceTempView(view)
    try:
        for name in ("train", "validation", "score"):
            cols = [contract.entity, CUTOFF, *feature_cols] + ([contract.label.name] if name != "score" else [])
            listed = ", ".join(quoted(c) for c in cols)
            part = spark.sql(f"SELECT {listed} FROM {view} WHERE `_split` = '{name}'")  # noqa: S608 - quoted names
            uri = join_uri(out, name)
            part.write.mode("overwrite").parquet(spark_path(uri))
            outputs[name] = uri
        stats, overall = _feature_stats(spark, view, result, contract.label.name)
    finally:
        spark.catalog.dropTempView(view)
    frame.unpersist()
    if result.cached is not None:
        result.cached.unpersist()
    events.unpersist()
    label_info: dict[str, Any] = {"name": contract.label.name, "kind": contract.label.kind}
    if contract.label.is_classification:
        label_info["positive_fraction"] = overall["_label_mean"]
    else:
        label_info["mean"] = overall["_label_mean"]
    fields = {
        "entity": contract.entity,
        "label": label_info,
        "features": [stats[f] for f in feature_cols],
        "outputs": outputs,
        "cutoffs": {"train": [c.isoformat() for c in cutoffs.train], "score": cutoffs.score.isoformat()},
        "as_of": as_of.isoformat(),
        "horizon_days": contract.label.horizon_days,
        "validation_fraction": vf,
        "row_counts": {k: int(overall[k]) for k in ("train_rows", "validation_rows", "score_rows")},
        "unknown_join_keys": {c.removeprefix("_unknown_"): int(overall[c]) for c in result.counters},
        "missing_references": result.missing_references,
        "text_fit_rows": result.text_fit_rows,
    }
    return fields, result


def run(spark: SparkSession, args: JobArgs) -> dict[str, Any]:
    """The whole job; returns the manifest it wrote."""
    started = time.monotonic()
    started_at = datetime.now(UTC)
    batch = load_manifest(args.manifest)
    if batch.dataset is not None and batch.dataset != args.dataset:
        raise JobInputError(f"{args.manifest}: manifest dataset {batch.dataset!r} is not --dataset {args.dataset!r}")
    contracts = load_job_contracts(args.contracts, args.dataset)
    contract = contracts[args.dataset]
    rule_counts, curated = _validate_and_curate(spark, contract, batch, args.curated)
    manifest: dict[str, Any] = {
        "run_id": args.run_id,
        "dataset": args.dataset,
        "batch_id": batch.batch_id,
        "attempt": batch.attempt,
        "started_at": started_at.isoformat(),
        "inputs": [
            {"uri": f.uri, "format": f.format, "key": f.key, "version": f.version, "size": f.size} for f in batch.files
        ],
        "curated": {
            "table": curated.table_uri,
            "rows_read": rule_counts.rows,
            "bad_rows": rule_counts.bad_rows,
            "rule_failures": rule_counts.failures,
            "flagged": rule_counts.flagged,
            "duplicate_rows": curated.duplicate_rows,
            "replaced_rows": curated.replaced_rows,
            "rows_written": curated.rows_written,
            "partitions": len(curated.partitions),
            "first_partition": curated.partitions[0] if curated.partitions else None,
            "last_partition": curated.partitions[-1] if curated.partitions else None,
        },
        "bad_rows": rule_counts.bad_rows,
        "kind": "curate_only" if contract.is_reference else "features",
        "spark_version": spark.version,
    }
    if not contract.is_reference:
        fields, _ = build_features(spark, args, contracts)
        manifest.update(fields)
    else:
        manifest.update({"features": [], "outputs": {}})
    manifest["elapsed_s"] = round(time.monotonic() - started, 3)
    write_text(join_uri(run_dir(args), "_manifest.json"), json.dumps(manifest, indent=2, default=str))
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    spark = build_session()
    try:
        manifest = run(spark, args)
    finally:
        spark.stop()
    print(json.dumps({k: manifest[k] for k in ("run_id", "dataset", "bad_rows", "elapsed_s")}))
    return 0
