"""The feature job end to end on hand-built batches, with hand-computed expectations.

as-of 2026-03-01 and a 30-day horizon give the training cutoff 2026-01-30 and the scoring cutoff 2026-03-01.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pyspark.ml.feature import IDF, HashingTF, NGram, RegexTokenizer
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, Row, SparkSession
from pyspark.sql import functions as F

from spark_app.curate import read_table, table_uri
from spark_app.features import Cutoffs, compute_features
from spark_app.io import load_job_contracts
from spark_app.job import parse_args, run
from tests.spark.conftest import plan_nodes

pytestmark = pytest.mark.spark

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
AS_OF = "2026-03-01"
HEADER = "order_id,customer_id,order_ts,product_id,amount,quantity,returned,review_text"

# C000001: O1 exactly 30 days before the training cutoff, O2 one day inside, O3 one second outside the 30-day
# window, O4 in the label window. C000002: one event, an unknown product, no customer record.
# C000003: first event after the training cutoff. C000004: one event with an empty review.
ORDERS_1 = [
    "O0000001,C000001,2025-12-31T00:00:00Z,P00001,10.0,1,false,poor broken refund",
    "O0000002,C000001,2026-01-01T00:00:00Z,P00002,20.0,2,true,great love",
    "O0000003,C000001,2025-12-30T23:59:59Z,P00001,40.0,1,,",
    "O0000005,C000002,2026-01-10T12:00:00Z,P99999,5.0,1,false,",
]
ORDERS_2 = [
    "O0000004,C000001,2026-02-05T00:00:00Z,P00002,1000.0,1,false,",
    "O0000006,C000003,2026-02-10T00:00:00Z,P00001,7.5,3,false,great",
    'O0000007,C000004,2026-01-20T00:00:00Z,P00001,3.0,1,false,""',
    # bad rows: each breaks one rule
    "O0000008,C000001,not-a-time,P00001,1.0,1,false,",
    "O0000009,C000001,2026-01-05T00:00:00Z,P00001,-1.0,1,false,",
    "BAD,C000001,2026-01-05T00:00:00Z,P00001,1.0,1,false,",
    "O0000010,C000001,2026-01-05T00:00:00Z,P00001,1.0,0,false,",
    # a duplicate of O0000002 delivered again (same row): kept once
    "O0000002,C000001,2026-01-01T00:00:00Z,P00002,20.0,2,true,great love",
]
PRODUCTS = ["product_id,category,list_price,launched", "P00001,books,10.0,2020-01-01", "P00002,toys,20.0,"]
CUSTOMERS = [
    "customer_id,segment,region,signup_date,newsletter",
    "C000001,corporate,north,2025-12-01,true",
    "C000003,consumer,west,2026-01-01,",
    "C000004,consumer,east,2026-01-01,false",
]


def _write(path: Path, lines: list[str]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def run_job(
    spark: SparkSession, root: Path, dataset: str, files: list[str], run_id: str, **extra: str
) -> dict[str, Any]:
    manifest = _write(root / "manifests" / f"{run_id}.json", [json.dumps(files)])
    argv = ["--manifest", manifest, "--contracts", str(CONTRACTS), "--dataset", dataset]
    argv += ["--curated", str(root / "curated")]
    argv += ["--features", str(root / "features"), "--run-id", run_id]
    for k, v in extra.items():
        argv += [f"--{k.replace('_', '-')}", v]
    return run(spark, parse_args(argv))


def load_refs(spark: SparkSession, root: Path) -> None:
    run_job(spark, root, "products", [_write(root / "in" / "products.csv", PRODUCTS)], "p1")
    run_job(spark, root, "customers", [_write(root / "in" / "customers.csv", CUSTOMERS)], "c1")


@pytest.fixture(scope="module")
def job(spark: SparkSession, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("job")
    load_refs(spark, root)
    files = [
        _write(root / "in" / "orders-1.csv", [HEADER, *ORDERS_1]),
        _write(root / "in" / "orders-2.csv", [HEADER, *ORDERS_2]),
    ]
    manifest = run_job(spark, root, "orders", files, "o1", as_of=AS_OF)
    return {"root": root, "files": files, "manifest": manifest}


def features_of(spark: SparkSession, manifest: dict[str, Any], split: str) -> dict[str, Row]:
    rows = spark.read.parquet(manifest["outputs"][split]).collect()
    return {r["customer_id"]: r for r in rows}


def training_rows(spark: SparkSession, manifest: dict[str, Any]) -> dict[str, Row]:
    return {**features_of(spark, manifest, "train"), **features_of(spark, manifest, "validation")}


def test_cutoffs_and_population(spark: SparkSession, job: dict[str, Any]) -> None:
    m = job["manifest"]
    assert m["cutoffs"] == {"train": ["2026-01-30"], "score": "2026-03-01"}
    assert m["horizon_days"] == 30
    train = training_rows(spark, m)
    # C000003's first order is after the training cutoff: not in the training population, but scored.
    assert sorted(train) == ["C000001", "C000002", "C000004"]
    assert sorted(features_of(spark, m, "score")) == ["C000001", "C000002", "C000003", "C000004"]
    assert m["row_counts"]["train_rows"] + m["row_counts"]["validation_rows"] == 3
    assert m["row_counts"]["score_rows"] == 4


def test_window_boundaries(spark: SparkSession, job: dict[str, Any]) -> None:
    c1 = training_rows(spark, job["manifest"])["C000001"]
    # 30-day window [2025-12-31T00:00, 2026-01-30): O1 (exactly 30 days before) and O2 in, O3 (1 s earlier) out.
    assert c1["order_id_count_30d"] == 2
    assert c1["amount_sum_30d"] == 30.0
    assert c1["amount_mean_30d"] == 15.0
    assert c1["amount_min_30d"] == 10.0
    assert c1["amount_max_30d"] == 20.0
    assert c1["amount_stddev_30d"] == pytest.approx(math.sqrt(50.0))
    assert c1["quantity_sum_30d"] == 3.0
    assert c1["order_id_count_90d"] == 3
    assert c1["amount_sum_90d"] == 70.0
    assert c1["amount_p50_90d"] == 20.0
    assert c1["product_id_distinct_30d"] == 2
    assert c1["product_id_distinct_90d"] == 2
    # returned: false, true in 30 days; the missing value of O3 is ignored in the 90-day rate.
    assert c1["returned_rate_30d"] == 0.5
    assert c1["returned_rate_90d"] == 0.5


def test_join_features(spark: SparkSession, job: dict[str, Any]) -> None:
    train = training_rows(spark, job["manifest"])
    c1 = train["C000001"]
    assert c1["products_category_distinct_30d"] == 2
    assert c1["products_category_books_amount_share_30d"] == pytest.approx(10 / 30)
    assert c1["products_category_toys_amount_share_30d"] == pytest.approx(20 / 30)
    assert c1["products_category_books_amount_share_90d"] == pytest.approx(50 / 70)
    assert c1["products_category_grocery_amount_share_90d"] == 0.0
    assert c1["customers_segment"] == "corporate"
    assert c1["customers_region"] == "north"
    assert c1["customers_signup_date_days"] == 60.0  # 2025-12-01 → 2026-01-30


def test_unknown_join_keys_are_counted_not_fatal(spark: SparkSession, job: dict[str, Any]) -> None:
    m = job["manifest"]
    c2 = training_rows(spark, m)["C000002"]
    assert c2["products_category_distinct_90d"] == 0  # its only product is unknown
    assert c2["customers_segment"] is None  # no customer record
    # P99999 (one event before the as-of date) and C000002 (one scored entity) are unknown.
    assert m["unknown_join_keys"] == {"products": 1, "customers": 1}
    assert m["missing_references"] == []


def test_sequence_features_and_single_event_entity(spark: SparkSession, job: dict[str, Any]) -> None:
    train = training_rows(spark, job["manifest"])
    c1, c2 = train["C000001"], train["C000002"]
    assert c1["days_since_last"] == 29.0
    assert c1["tenure_days"] == pytest.approx(30 + 1 / 86400)
    one_second = 1 / 86400
    assert c1["gap_days_mean"] == pytest.approx((1 + one_second) / 2)
    assert c1["gap_days_max"] == pytest.approx(1.0)
    assert c1["gap_days_std"] == pytest.approx(math.sqrt(((1 - one_second) / 2) ** 2 * 2))
    assert c1["events_last_7d"] == 0
    assert c2["days_since_last"] == 19.5
    # One event: no gaps, so the gap statistics are null (not NaN, not 0).
    assert c2["gap_days_mean"] is None
    assert c2["gap_days_std"] is None
    assert c2["gap_days_max"] is None
    assert c2["amount_stddev_30d"] is None


def test_text_features(spark: SparkSession, job: dict[str, Any]) -> None:
    train = training_rows(spark, job["manifest"])
    names = [f"review_text_tfidf_{i}" for i in range(8)]
    assert all(train["C000001"][n] is not None for n in names)
    assert all(train["C000002"][n] is None for n in names)  # no review at all
    assert all(train["C000004"][n] is None for n in names)  # only an empty review
    assert job["manifest"]["text_fit_rows"] == 2  # the two non-empty reviews before the training cutoff


def test_text_features_are_mllib_tfidf_means(spark: SparkSession, job: dict[str, Any]) -> None:
    """Oracle: MLlib's own pipeline (tokens and bigrams, HashingTF, IDF fitted on the texts before the training
    cutoff, then each text's TF-IDF vector) averaged per entity over the 365-day window before each cutoff."""
    events = spark.read.parquet(str(job["root"] / "curated" / "orders"))
    texts = events.filter(F.length(F.trim(F.col("review_text"))) > 0)
    words = RegexTokenizer(inputCol="review_text", outputCol="w", pattern="[^\\p{L}\\p{N}']+").transform(texts)
    terms = NGram(n=2, inputCol="w", outputCol="g").transform(words).withColumn("terms", F.concat("w", "g"))
    tf = HashingTF(numFeatures=8, inputCol="terms", outputCol="tf").transform(terms)
    idf = IDF(inputCol="tf", outputCol="v").fit(tf.filter(F.col("order_ts") < F.lit("2026-01-30").cast("timestamp")))
    vectors = idf.transform(tf).select("customer_id", "order_ts", vector_to_array("v").alias("v")).collect()

    def expected(entity: str, cutoff: datetime) -> list[float]:
        start = cutoff - timedelta(days=365)
        vs = [r["v"] for r in vectors if r["customer_id"] == entity and start <= r["order_ts"] < cutoff]
        return [sum(v[i] for v in vs) / len(vs) for i in range(8)]

    names = [f"review_text_tfidf_{i}" for i in range(8)]
    train, score = training_rows(spark, job["manifest"]), features_of(spark, job["manifest"], "score")
    c1_train = expected("C000001", datetime(2026, 1, 30))
    assert any(x != 0 for x in c1_train)  # some bucket has a term of one text only: a non-zero weight
    assert [train["C000001"][n] for n in names] == pytest.approx(c1_train)
    assert [score["C000001"][n] for n in names] == pytest.approx(expected("C000001", datetime(2026, 3, 1)))
    # C000003's text is after the training cutoff: weighed by the IDF fitted before it, never part of that fit.
    assert [score["C000003"][n] for n in names] == pytest.approx(expected("C000003", datetime(2026, 3, 1)))


def test_label(spark: SparkSession, job: dict[str, Any]) -> None:
    m = job["manifest"]
    train = training_rows(spark, m)
    assert train["C000001"]["active_next_30d"] == 1  # O4 on 2026-02-05 is in [2026-01-30, 2026-03-01)
    assert train["C000002"]["active_next_30d"] == 0
    assert train["C000004"]["active_next_30d"] == 0
    expected = {"name": "active_next_30d", "kind": "active_in_horizon", "positive_fraction": pytest.approx(1 / 3)}
    assert m["label"] == expected
    assert "active_next_30d" not in spark.read.parquet(m["outputs"]["score"]).columns


def test_bad_rows_dropped_and_counted(spark: SparkSession, job: dict[str, Any]) -> None:
    m = job["manifest"]
    assert m["bad_rows"] == 4
    # the validator's rule names (dropzone.rules): each bad row breaks exactly one rule
    assert m["curated"]["rule_failures"] == {
        "order_ts.parse": 1,
        "amount.min": 1,
        "order_id.regex": 1,
        "quantity.min": 1,
    }
    assert m["curated"]["duplicate_rows"] == 1
    assert m["curated"]["rows_read"] == 12
    table = spark.read.parquet(str(job["root"] / "curated" / "orders"))
    ids = sorted(r[0] for r in table.select("order_id").collect())
    assert ids == ["O0000001", "O0000002", "O0000003", "O0000004", "O0000005", "O0000006", "O0000007"]


def test_manifest_for_the_trainer(job: dict[str, Any]) -> None:
    m = job["manifest"]
    written = json.loads(Path(m["outputs"]["train"]).parent.joinpath("_manifest.json").read_text())
    assert written["run_id"] == "o1"
    assert written["entity"] == "customer_id"
    assert written["spark_version"].startswith("4.1")
    assert written["elapsed_s"] > 0
    by_name = {f["name"]: f for f in written["features"]}
    count = by_name["order_id_count_30d"]
    # training rows: C000001 (2), C000002 (1), C000004 (1)
    assert (count["min"], count["max"], count["mean"], count["null_fraction"]) == (1.0, 2.0, pytest.approx(4 / 3), 0.0)
    assert by_name["gap_days_mean"]["null_fraction"] == pytest.approx(2 / 3)
    assert by_name["customers_segment"]["type"] == "string"
    assert all(f["description"] for f in written["features"])


def test_rerun_leaves_the_curated_table_as_one_run(
    spark: SparkSession, job: dict[str, Any], frames_equal: Callable[[DataFrame, DataFrame], None]
) -> None:
    table = str(job["root"] / "curated" / "orders")
    before = spark.read.parquet(table).localCheckpoint()
    again = run_job(spark, job["root"], "orders", job["files"], "o1-again", as_of=AS_OF)
    after = spark.read.parquet(table)
    frames_equal(after, before)
    assert after.count() == 7
    assert again["curated"]["rows_written"] == 7  # the previous attempt's rows were replaced, not duplicated


def test_leakage_events_after_the_cutoff_change_no_feature(
    spark: SparkSession, job: dict[str, Any], tmp_path: Path, frames_equal: Callable[[DataFrame, DataFrame], None]
) -> None:
    shutil.copytree(job["root"] / "curated", tmp_path / "curated")
    late = _write(
        tmp_path / "in" / "late.csv",
        [
            HEADER,
            "O0000020,C000002,2026-01-30T00:00:00Z,P00002,99.0,5,true,worst late refund",
            "O0000021,C000004,2026-02-27T00:00:00Z,P00001,50.0,1,false,great great",
        ],
    )
    m = run_job(spark, tmp_path, "orders", [late], "late", as_of=AS_OF)
    features = [f["name"] for f in job["manifest"]["features"]]
    cols = ["customer_id", *features]
    old = spark.read.parquet(job["manifest"]["outputs"]["train"], job["manifest"]["outputs"]["validation"])
    new = spark.read.parquet(m["outputs"]["train"], m["outputs"]["validation"])
    frames_equal(new.select(*cols), old.select(*cols))
    # ... while the labels see them: C000002 ordered exactly at the cutoff, C000004 inside the horizon.
    labels = {r["customer_id"]: r["active_next_30d"] for r in new.collect()}
    assert labels == {"C000001": 1, "C000002": 1, "C000004": 1}


def test_the_feature_pass_shuffles_the_events_once_and_runs_no_python(spark: SparkSession, job: dict[str, Any]) -> None:
    """The issue's plan rules, on the shipped contract's whole feature pass (joins, text, sequence, percentiles,
    distinct counts, label): one shuffle of the events, by entity, for everything windowed and aggregated (the
    reference tables are shuffled apart, on their way to a broadcast); no Python UDF anywhere."""
    contracts = load_job_contracts(str(CONTRACTS), "orders")
    curated = job["root"] / "curated"
    events = read_table(spark, table_uri(str(curated), "orders"))
    assert events is not None
    references = {d: read_table(spark, table_uri(str(curated), d)) for d in ("products", "customers")}
    cutoffs = Cutoffs.for_as_of(datetime.fromisoformat(AS_OF).date(), 30)
    result = compute_features(contracts["orders"], events, references, contracts, cutoffs)
    assert result.frame.count() == 4 + 3  # scored (every customer) + the training population

    nodes = plan_nodes(result.frame)
    shuffles = [n for n in nodes if n.name == "Exchange" and not n.under_broadcast]
    assert len(shuffles) == 1, shuffles
    assert shuffles[0].partitioning.startswith("hashpartitioning(customer_id#")
    assert [n.name for n in nodes if n.name == "BroadcastExchange"] == ["BroadcastExchange"] * 2  # both references
    assert {"Window", "Generate", "HashAggregate"} <= {n.name for n in nodes}
    assert [n.name for n in nodes if "Python" in n.name or "Arrow" in n.name] == []

    # Spark, not a hint, decides what is small: with broadcasts turned off the references are joined by shuffles
    # (as a reference table above the threshold would be) and every feature is the same.
    expected = [r.asDict() for r in sorted(result.frame.collect())]
    names = ("spark.sql.autoBroadcastJoinThreshold", "spark.sql.adaptive.autoBroadcastJoinThreshold")
    before = {name: spark.conf.get(name, None) for name in names}
    try:
        for name in names:
            spark.conf.set(name, "-1")
        unhinted = compute_features(contracts["orders"], events, references, contracts, cutoffs)
        assert [n.name for n in plan_nodes(unhinted.frame) if "Broadcast" in n.name] == []
        got = [r.asDict() for r in sorted(unhinted.frame.collect())]
        assert len(got) == len(expected) == 7
        for row, want in zip(got, expected, strict=True):  # sums may add in another order: approx for floats
            assert row == pytest.approx(want)
    finally:
        for name, value in before.items():
            spark.conf.unset(name) if value is None else spark.conf.set(name, value)


def _typed(line: str) -> dict[str, Any]:
    """One CSV line of the fixtures as a typed record (what a JSON Lines or Parquet producer would write)."""
    order_id, customer_id, ts, product_id, amount, quantity, returned, text = line.split(",", 7)
    return {
        "order_id": order_id,
        "customer_id": customer_id,
        "order_ts": datetime.fromisoformat(ts.replace("Z", "+00:00")),
        "product_id": product_id,
        "amount": float(amount),
        "quantity": int(quantity),
        "returned": {"true": True, "false": False}.get(returned),
        "review_text": text.strip('"') or None,
    }


def test_json_lines_and_parquet_files_give_what_the_same_rows_in_csv_give(
    spark: SparkSession, tmp_path: Path, frames_equal: Callable[[DataFrame, DataFrame], None]
) -> None:
    """One batch of a JSON Lines (gzip) file and a typed Parquet file: the rows are read with the contract's columns
    and checked by the same rules as CSV, so the counts and every feature equal those of the rows as CSV. The JSON
    Lines file is named ``.ndjson.gz``, a name the validator accepts (the job once refused it)."""
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    second = [line for line in ORDERS_2 if "not-a-time" not in line]  # Parquet's timestamps cannot hold it
    csv_root, mixed_root = tmp_path / "csv", tmp_path / "mixed"
    for root in (csv_root, mixed_root):
        load_refs(spark, root)
    as_csv = run_job(
        spark,
        csv_root,
        "orders",
        [_write(csv_root / "in" / "a.csv", [HEADER, *ORDERS_1]), _write(csv_root / "in" / "b.csv", [HEADER, *second])],
        "o1",
        as_of=AS_OF,
    )
    jsonl = mixed_root / "in" / "a.ndjson.gz"
    records = [{**r, "order_ts": r["order_ts"].strftime("%Y-%m-%dT%H:%M:%SZ")} for r in map(_typed, ORDERS_1)]
    jsonl.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode()))
    parquet = mixed_root / "in" / "b.parquet"
    pq.write_table(pa.Table.from_pylist([_typed(line) for line in second]), parquet)
    mixed = run_job(spark, mixed_root, "orders", [str(jsonl), str(parquet)], "o1", as_of=AS_OF)

    assert [f["format"] for f in mixed["inputs"]] == ["jsonl.gz", "parquet"]
    counts = ("rows_read", "bad_rows", "rule_failures", "duplicate_rows", "rows_written")
    assert {k: mixed["curated"][k] for k in counts} == {k: as_csv["curated"][k] for k in counts}
    assert (mixed["curated"]["rows_read"], mixed["curated"]["bad_rows"]) == (11, 3)  # BAD id, amount -1, quantity 0
    assert mixed["features"] == as_csv["features"]  # names, types and statistics
    for split in ("train", "validation", "score"):
        frames_equal(spark.read.parquet(mixed["outputs"][split]), spark.read.parquet(as_csv["outputs"][split]))
