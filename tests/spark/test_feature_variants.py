"""compute_features with the other contract options: a regression label, Word2Vec text features, gaps per cutoff,
exact percentiles per window, aggregates and latest values of joined attributes, and too little text for TF-IDF."""

from __future__ import annotations

import math
import random
from dataclasses import replace
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from dropzone.contract import Aggregation, Contract, Join, Label, Share, load_contracts
from spark_app.features import Cutoffs, compute_features

pytestmark = pytest.mark.spark

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"
COLUMNS = "order_id string, customer_id string, order_ts timestamp, product_id string, amount double, "
COLUMNS += "quantity bigint, returned boolean, review_text string"


def test_sum_in_horizon_label_and_word2vec(spark: SparkSession) -> None:
    contracts = load_contracts(CONTRACTS)
    orders = contracts["orders"]
    assert orders.features is not None
    assert orders.features.text is not None
    text = replace(orders.features.text, method="word2vec", num_features=3)
    contract = replace(
        orders,
        label=Label(kind="sum_in_horizon", name="spend_next_30d", horizon_days=30, measure="amount"),
        features=replace(orders.features, joins=(), text=text),
    )
    rows = [
        ("O1", "C000001", datetime(2026, 1, 10), "P00001", 10.0, 1, False, "great quality love"),
        ("O2", "C000001", datetime(2026, 1, 20), "P00001", 20.0, 1, False, "late broken refund"),
        ("O3", "C000001", datetime(2026, 1, 30), "P00001", 5.0, 1, False, None),  # at the cutoff: label only
        ("O4", "C000001", datetime(2026, 2, 28, 23, 59), "P00001", 7.0, 1, False, None),  # last minute of the horizon
        ("O5", "C000001", datetime(2026, 3, 1), "P00001", 100.0, 1, False, None),  # after the horizon
        ("O6", "C000002", datetime(2026, 1, 5), "P00001", 3.0, 1, True, "ok"),
    ]
    events = spark.createDataFrame(rows, COLUMNS)
    result = compute_features(contract, events, {}, contracts, Cutoffs((date(2026, 1, 30),), date(2026, 3, 2)))
    train = {r["customer_id"]: r for r in result.frame.filter("_role = 'train'").collect()}
    assert train["C000001"]["spend_next_30d"] == 12.0  # 5 + 7: O5 is outside [2026-01-30, 2026-03-01)
    assert train["C000002"]["spend_next_30d"] == 0.0
    names = [f.name for f in result.features if f.name.startswith("review_text_")]
    assert names == ["review_text_word2vec_0", "review_text_word2vec_1", "review_text_word2vec_2"]
    assert all(train["C000001"][n] is not None for n in names)
    assert result.text_fit_rows == 3
    score = {r["customer_id"]: r for r in result.frame.filter("_role = 'score'").collect()}
    assert score["C000001"]["spend_next_30d"] is None  # no label at the scoring cutoff
    assert score["C000001"]["order_id_count_30d"] == 2  # O4 and O5 in [2026-01-31, 2026-03-02)


def test_gaps_per_cutoff_use_only_earlier_events(spark: SparkSession) -> None:
    """Gap statistics of each cutoff see only the events before it (two training cutoffs and a scoring cutoff)."""
    contracts = load_contracts(CONTRACTS)
    orders = contracts["orders"]
    assert orders.features is not None
    contract = replace(orders, features=replace(orders.features, joins=(), text=None))
    days = [1, 3, 10, 20]  # January 2026: gaps 2, 7, 10 days
    rows = [
        (f"O{d}", "C000001", datetime(2026, 1, d), "P00001" if d < 10 else "P00002", 1.0, 1, False, None) for d in days
    ]
    events = spark.createDataFrame(rows, COLUMNS)
    cutoffs = Cutoffs((date(2026, 1, 5), date(2026, 1, 15)), date(2026, 1, 25))
    result = compute_features(contract, events, {}, contracts, cutoffs)
    by_cutoff = {r["cutoff"]: r for r in result.frame.collect()}
    first, second, score = by_cutoff[date(2026, 1, 5)], by_cutoff[date(2026, 1, 15)], by_cutoff[date(2026, 1, 25)]
    assert (first["gap_days_mean"], first["gap_days_max"], first["gap_days_std"]) == (2.0, 2.0, None)
    assert (second["gap_days_mean"], second["gap_days_max"]) == (4.5, 7.0)
    assert second["gap_days_std"] == pytest.approx(math.sqrt(12.5))  # gaps 2 and 7
    assert (score["gap_days_mean"], score["gap_days_max"]) == (pytest.approx(19 / 3), 10.0)
    assert (first["product_id_distinct_30d"], second["product_id_distinct_30d"]) == (1, 2)
    assert first["active_next_30d"] == 1
    assert score["active_next_30d"] is None


def _only(*aggregations: Aggregation) -> tuple[dict[str, Contract], Contract]:
    """The shipped contracts, and orders with only these windowed aggregations as features."""
    contracts = load_contracts(CONTRACTS)
    orders = contracts["orders"]
    assert orders.features is not None
    features = replace(orders.features, joins=(), text=None, sequence=None, aggregations=aggregations)
    return contracts, replace(orders, features=features)


def test_exact_percentiles_by_nearest_rank_per_window(spark: SparkSession) -> None:
    """pK is the ceil(K * n / 100)-th smallest value of the window (never interpolated), nulls ignored, each window
    its own values."""
    contracts, contract = _only(Aggregation("amount", ("p50", "p70", "p90")))
    cutoff = datetime(2026, 2, 1)
    # C000001, 30-day window: 1..10 (10 exactly 30 days before the cutoff, so inside), in an order unrelated to their
    # times, and a null amount. 90 days: also 100 (one second outside 30 days) and 0.5. 365 days: also 1000.
    in_30 = [(7, 1), (3, 2), (9, 3), (1, 4), (4, 5), (2, 6), (8, 7), (5, 8), (6, 9)]
    rows = [(f"O{v}", "C000001", cutoff - timedelta(days=d), "P1", float(v), 1, False, None) for v, d in in_30]
    rows += [
        ("O10", "C000001", cutoff - timedelta(days=30), "P1", 10.0, 1, False, None),
        ("O11", "C000001", cutoff - timedelta(days=12), "P1", None, 1, False, None),
        ("O12", "C000001", cutoff - timedelta(days=30, seconds=1), "P1", 100.0, 1, False, None),
        ("O13", "C000001", cutoff - timedelta(days=60), "P1", 0.5, 1, False, None),
        ("O14", "C000001", cutoff - timedelta(days=200), "P1", 1000.0, 1, False, None),
        ("O15", "C000002", cutoff - timedelta(days=100), "P1", 42.0, 1, False, None),  # 365-day window only
    ]
    events = spark.createDataFrame(rows, COLUMNS)
    result = compute_features(contract, events, {}, contracts, Cutoffs((cutoff.date(),), date(2026, 3, 3)))
    got = {(r["customer_id"], r["_role"]): r for r in result.frame.collect()}
    c1, c2 = got[("C000001", "train")], got[("C000002", "train")]
    # 30 days: 1..10 -> 5th, 7th, 9th.
    assert (c1["amount_p50_30d"], c1["amount_p70_30d"], c1["amount_p90_30d"]) == (5.0, 7.0, 9.0)
    # 90 days: 0.5, 1..10, 100 (n = 12) -> 6th, 9th (ceil 8.4), 11th (ceil 10.8).
    assert (c1["amount_p50_90d"], c1["amount_p70_90d"], c1["amount_p90_90d"]) == (5.0, 8.0, 10.0)
    # 365 days: 0.5, 1..10, 100, 1000 (n = 13) -> 7th (ceil 6.5), 10th (ceil 9.1), 12th (ceil 11.7).
    assert (c1["amount_p50_365d"], c1["amount_p70_365d"], c1["amount_p90_365d"]) == (6.0, 9.0, 100.0)
    assert (c2["amount_p50_30d"], c2["amount_p90_90d"], c2["amount_p50_365d"], c2["amount_p90_365d"]) == (
        None,
        None,
        42.0,
        42.0,
    )
    # Scoring cutoff 2026-03-03: 30 days hold nothing, 90 days (from 2025-12-03) hold 1..10, 100 and 0.5.
    s1 = got[("C000001", "score")]
    assert (s1["amount_p50_30d"], s1["amount_p90_90d"], s1["amount_p90_365d"]) == (None, 10.0, 100.0)
    descriptions = {f.name: f.description for f in result.features}
    assert (
        descriptions["amount_p70_90d"] == "70th percentile (exact, nearest rank) of amount over [cutoff - 90d, cutoff)"
    )


def test_percentile_rank_is_counted_in_integers(spark: SparkSession) -> None:
    """0.28 * 25 is 7.000000000000001 in floating point: p28 of 25 values must still be the 7th, not the 8th."""
    contracts, contract = _only(Aggregation("amount", ("p28", "p1", "p99")))
    cutoff = datetime(2026, 2, 1)
    # 25 values 10, 20, ..., 250 on the 25 days before the cutoff, the largest first.
    rows = [(f"O{d}", "C000001", cutoff - timedelta(days=d), "P1", 10.0 * d, 1, False, None) for d in range(1, 26)]
    result = compute_features(contract, spark.createDataFrame(rows, COLUMNS), {}, contracts, Cutoffs((), cutoff.date()))
    row = result.frame.collect()[0]
    assert (row["amount_p28_30d"], row["amount_p1_30d"], row["amount_p99_30d"]) == (70.0, 10.0, 250.0)


def test_percentiles_match_sql_percentile_disc(spark: SparkSession) -> None:
    """On pseudo-random amounts with ties and nulls, over a training and a scoring cutoff, every window's percentiles
    equal Spark's own percentile_disc (SQL's discrete percentile: the nearest rank) computed with one filtered
    group-by per cutoff and window."""
    ks = (5, 25, 50, 75, 90, 99)
    contracts, contract = _only(Aggregation("amount", tuple(f"p{k}" for k in ks)))
    cutoffs = Cutoffs((date(2026, 1, 2),), date(2026, 2, 1))
    end = datetime(2026, 2, 1)
    rng = random.Random(7)
    rows = []
    for c in range(1, 7):
        for i in range(rng.randint(1, 60)):
            amount = None if rng.random() < 0.1 else float(rng.randint(1, 15))
            age = timedelta(days=rng.randint(0, 400), seconds=rng.randint(0, 2) * 43_200)  # some at midnight
            rows.append((f"O{c}-{i}", f"C{c:06d}", end - age, "P1", amount, 1, False, None))
    events = spark.createDataFrame(rows, COLUMNS)
    result = compute_features(contract, events, {}, contracts, cutoffs)
    got = {(r["customer_id"], r["cutoff"]): r for r in result.frame.collect()}
    checked = 0
    for cutoff in (*cutoffs.train, cutoffs.score):
        at = datetime.combine(cutoff, datetime.min.time())
        for w in (30, 90, 365):
            inside = events.filter((F.col("order_ts") >= F.lit(at - timedelta(days=w))) & (F.col("order_ts") < at))
            disc = [F.expr(f"percentile_disc({k / 100}) WITHIN GROUP (ORDER BY amount)").alias(f"p{k}") for k in ks]
            for r in inside.groupBy("customer_id").agg(*disc).collect():
                mine = got[(r["customer_id"], cutoff)]
                for k in ks:
                    assert mine[f"amount_p{k}_{w}d"] == r[f"p{k}"], (r["customer_id"], cutoff, w, k)
                    checked += r[f"p{k}"] is not None
    assert checked > 100


def test_distinct_counts_are_exact_per_window_and_cutoff(spark: SparkSession) -> None:
    """A value counts once in a window when any of its events before the cutoff is in it; events on or after the
    cutoff and null values count for nothing."""
    contracts, contract = _only(Aggregation("product_id", ("distinct",)))
    cutoff = datetime(2026, 2, 1)
    placed = [
        ("P1", 1),  # three times in 30 days: one value
        ("P1", 5),
        ("P1", 29),
        ("P2", 30),  # exactly 30 days before: inside the 30-day window
        ("P3", 40),  # latest before the cutoff 40 days back, earlier ones too: 90 and 365 days
        ("P3", 200),
        ("P4", 200),  # 365 days only
        ("P5", 400),  # no window
        (None, 3),  # null: never a value
    ]
    rows = [(f"O{i}", "C000001", cutoff - timedelta(days=d), p, 1.0, 1, False, None) for i, (p, d) in enumerate(placed)]
    # On and after the training cutoff (its label window): new P6 and a repeat of P4, seen only by the scoring cutoff.
    rows += [("O90", "C000001", cutoff, "P6", 1.0, 1, False, None)]
    rows += [("O91", "C000001", cutoff + timedelta(days=10), "P4", 1.0, 1, False, None)]
    events = spark.createDataFrame(rows, COLUMNS)
    result = compute_features(contract, events, {}, contracts, Cutoffs((cutoff.date(),), date(2026, 2, 21)))
    got = {r["_role"]: r for r in result.frame.collect()}
    train, score = got["train"], got["score"]
    assert [train[f"product_id_distinct_{w}d"] for w in (30, 90, 365)] == [2, 3, 4]  # P1 P2 | +P3 | +P4
    # Scoring cutoff 2026-02-21. 30 days (from 2026-01-22): P1 (5 and 1 days before the first cutoff), P6, P4 (its
    # repeat). 90 days: also P2 and P3 (2025-12-23). 365 days: the same five; P5 (2024-12-28) is still outside.
    assert [score[f"product_id_distinct_{w}d"] for w in (30, 90, 365)] == [3, 5, 5]
    description = {f.name: f.description for f in result.features}["product_id_distinct_90d"]
    assert description == "number of distinct product_id over [cutoff - 90d, cutoff)"


def test_aggregates_and_latest_values_of_joined_attributes(spark: SparkSession) -> None:
    """An event join's numeric attribute aggregated per window like the dataset's own columns (percentile, mean, sum,
    max), its attributes taken from the entity's latest event before each cutoff (null when that event's key is
    unknown; a date as days to the cutoff), and a boolean attribute of an entity join as 0/1."""
    contracts = load_contracts(CONTRACTS)
    orders = contracts["orders"]
    assert orders.features is not None
    joins = (
        Join(
            dataset="products",
            key="product_id",
            attributes=("category", "list_price", "launched"),
            aggregations=(
                Aggregation("list_price", ("p50", "mean", "sum", "max")),
                Aggregation("category", ("count",)),
            ),
        ),
        Join(dataset="customers", key="customer_id", attributes=("newsletter",)),
    )
    features = replace(orders.features, joins=joins, aggregations=(), text=None, sequence=None)
    contract = replace(orders, features=features)
    rows = [
        ("O1", "C000001", datetime(2025, 12, 1), "P00002", 1.0, 1, False, None),  # 62 days before the cutoff
        ("O2", "C000001", datetime(2026, 1, 10), "P00001", 1.0, 1, False, None),
        ("O3", "C000001", datetime(2026, 1, 20), "P00002", 1.0, 1, False, None),
        ("O4", "C000001", datetime(2026, 1, 25), "P00009", 1.0, 1, False, None),  # unknown product, the latest
        ("O5", "C000001", datetime(2026, 2, 10), "P00001", 1.0, 1, False, None),  # after the training cutoff
        ("O6", "C000002", datetime(2026, 1, 5), "P00002", 1.0, 1, False, None),
    ]
    products = spark.createDataFrame(
        [("P00001", "books", 10.0, date(2020, 1, 1)), ("P00002", "toys", 30.0, None)],
        "product_id string, category string, list_price double, launched date",
    )
    customers = spark.createDataFrame(
        [("C000001", "corporate", "north", date(2025, 1, 1), True), ("C000002", "consumer", "west", None, None)],
        "customer_id string, segment string, region string, signup_date date, newsletter boolean",
    )
    references = {"products": products, "customers": customers}
    cutoffs = Cutoffs((date(2026, 2, 1),), date(2026, 3, 1))
    result = compute_features(contract, spark.createDataFrame(rows, COLUMNS), references, contracts, cutoffs)
    got = {(r["customer_id"], r["_role"]): r for r in result.frame.collect()}
    c1, c2, s1 = got[("C000001", "train")], got[("C000002", "train")], got[("C000001", "score")]
    # 30 days before 2026-02-01: prices 10 and 30 (O4's product is unknown: no price) -> p50 is the 1st of 2.
    price = "products_list_price_{}_{}d"
    assert [c1[price.format(f, 30)] for f in ("p50", "mean", "sum", "max")] == [10.0, 20.0, 40.0, 30.0]
    # 90 days: 30, 10, 30 -> p50 is the 2nd of 3.
    assert [c1[price.format(f, 90)] for f in ("p50", "sum")] == [30.0, 70.0]
    assert c1[price.format("mean", 90)] == pytest.approx(70 / 3)
    assert (c1["products_category_count_30d"], c1["products_category_count_90d"]) == (2, 3)
    # The latest event before the cutoff has an unknown product: its attributes are null, not an earlier event's.
    assert (c1["products_category_last"], c1["products_list_price_last"], c1["products_launched_last_days"]) == (
        None,
        None,
        None,
    )
    assert c1["_unknown_products"] == 1
    assert (c2["products_category_last"], c2["products_list_price_last"]) == ("toys", 30.0)
    # Scoring cutoff 2026-03-01: O5 is now the latest event. 90 days back is 2025-12-01, O1 exactly: inside.
    assert (s1["products_category_last"], s1["products_list_price_last"]) == ("books", 10.0)
    assert s1["products_launched_last_days"] == 2251.0  # 2020-01-01 -> 2026-03-01
    assert [s1[price.format(f, 30)] for f in ("p50", "sum")] == [10.0, 10.0]  # O5 only
    assert [s1[price.format(f, 90)] for f in ("p50", "sum")] == [10.0, 80.0]  # 10, 10, 30, 30 -> the 2nd of 4
    assert (c1["customers_newsletter"], c2["customers_newsletter"]) == (1, None)
    types = {f.name: f.type for f in result.features}
    assert (types["products_launched_last_days"], types["customers_newsletter"], types[price.format("p50", 30)]) == (
        "double",
        "int",
        "double",
    )


def test_tfidf_features_need_two_fitted_texts(spark: SparkSession) -> None:
    """MLlib's IDF needs at least two documents: with one non-empty text before the first cutoff every TF-IDF feature
    is null (not a weight from a single document); a second text there gives them values."""
    contracts = load_contracts(CONTRACTS)
    orders = contracts["orders"]
    assert orders.features is not None
    contract = replace(orders, features=replace(orders.features, joins=(), sequence=None))
    rows = [
        ("O1", "C000001", datetime(2026, 1, 10), "P00001", 1.0, 1, False, "great quality"),
        ("O2", "C000001", datetime(2026, 1, 20), "P00001", 1.0, 1, False, "  "),  # blank: not a document
        ("O3", "C000002", datetime(2026, 2, 5), "P00001", 1.0, 1, False, "broken on arrival"),  # after the cutoff
    ]
    cutoffs = Cutoffs((date(2026, 2, 1),), date(2026, 3, 1))
    one = compute_features(contract, spark.createDataFrame(rows, COLUMNS), {}, contracts, cutoffs)
    names = [f.name for f in one.features if f.name.startswith("review_text_tfidf_")]
    assert len(names) == 8
    assert one.text_fit_rows == 1
    assert all(r[n] is None for r in one.frame.collect() for n in names)
    rows.append(("O4", "C000002", datetime(2026, 1, 31), "P00001", 1.0, 1, False, "late and broken"))
    two = compute_features(contract, spark.createDataFrame(rows, COLUMNS), {}, contracts, cutoffs)
    assert two.text_fit_rows == 2
    c1 = {r["_role"]: r for r in two.frame.filter("customer_id = 'C000001'").collect()}["train"]
    assert any(c1[n] is not None and c1[n] > 0 for n in names)


def test_shares_of_values_that_are_not_names(spark: SparkSession) -> None:
    """A share's value is part of its feature's name: characters other than letters, digits and _ become _, so a
    reference value such as "home & garden" or "kids.toys" names a column Spark can select and XGBoost accepts."""
    contracts = load_contracts(CONTRACTS)
    products = contracts["products"]
    category = replace(products.column("category"), allowed=("home & garden", "kids.toys", "<10 EUR"))
    columns = tuple(category if c.name == "category" else c for c in products.columns)
    contracts = {**contracts, "products": replace(products, columns=columns)}
    orders = contracts["orders"]
    assert orders.features is not None
    share = Join(dataset="products", key="product_id", shares=(Share("category", "amount"),))
    features = replace(orders.features, windows=(30,), joins=(share,), aggregations=(), text=None, sequence=None)
    contract = replace(orders, features=features)
    rows = [
        ("O1", "C000001", datetime(2026, 1, 10), "P00001", 30.0, 1, False, None),
        ("O2", "C000001", datetime(2026, 1, 20), "P00002", 10.0, 1, False, None),
    ]
    products_rows = spark.createDataFrame(
        [("P00001", "home & garden", 10.0, None), ("P00002", "kids.toys", 30.0, None)],
        "product_id string, category string, list_price double, launched date",
    )
    cutoffs = Cutoffs((date(2026, 2, 1),), date(2026, 3, 1))
    result = compute_features(
        contract, spark.createDataFrame(rows, COLUMNS), {"products": products_rows}, contracts, cutoffs
    )

    names = [f.name for f in result.features]
    assert names == [
        "products_category_home_garden_amount_share_30d",
        "products_category_kids_toys_amount_share_30d",
        "products_category__10_EUR_amount_share_30d",
    ]
    (train,) = [r for r in result.frame.collect() if r["_role"] == "train"]
    assert [train[n] for n in names] == [0.75, 0.25, 0.0]


def test_events_timed_by_day(spark: SparkSession) -> None:
    """A contract may time its events with a date column: each event is at midnight UTC of its day, so an event
    exactly 30 days before the cutoff is in the 30-day window and gaps are whole days."""
    contracts = load_contracts(CONTRACTS)
    orders = contracts["orders"]
    assert orders.features is not None
    columns = tuple(replace(c, type="date") if c.name == "order_ts" else c for c in orders.columns)
    features = replace(
        orders.features, windows=(30,), aggregations=(Aggregation("amount", ("sum",)),), joins=(), text=None
    )
    contract = replace(orders, columns=columns, features=features)
    rows = [
        ("O1", "C000001", date(2026, 1, 1), "P00001", 1.0, 1, False, None),  # 31 days before the cutoff: outside
        ("O2", "C000001", date(2026, 1, 2), "P00001", 10.0, 1, False, None),  # exactly 30 days before: inside
        ("O3", "C000001", date(2026, 1, 30), "P00001", 100.0, 1, False, None),
        ("O4", "C000001", date(2026, 2, 1), "P00001", 1000.0, 1, False, None),  # on the cutoff: the label's
    ]
    events = spark.createDataFrame(rows, COLUMNS.replace("order_ts timestamp", "order_ts date"))
    result = compute_features(contract, events, {}, contracts, Cutoffs((date(2026, 2, 1),), date(2026, 3, 1)))

    (train,) = [r for r in result.frame.collect() if r["_role"] == "train"]
    assert train["amount_sum_30d"] == 110.0
    assert (train["days_since_last"], train["tenure_days"]) == (2.0, 31.0)
    assert (train["events_last_7d"], train["events_prev_7d"]) == (1, 0)
    assert (train["gap_days_mean"], train["gap_days_max"]) == (14.5, 28.0)  # gaps of 1 and 28 days
    assert train["active_next_30d"] == 1


def test_latest_attribute_of_events_on_the_same_day_does_not_depend_on_row_order(spark: SparkSession) -> None:
    """Events timed by day tie when an entity has several on its latest day: the attributes via another key are then
    those of the event with the greatest join key among them (docs/features.md), all from that one event, whatever
    order the rows arrive in, so a re-run with the files listed in another order gives the same features."""
    contracts = load_contracts(CONTRACTS)
    orders = contracts["orders"]
    assert orders.features is not None
    columns = tuple(replace(c, type="date") if c.name == "order_ts" else c for c in orders.columns)
    join = Join(dataset="products", key="product_id", attributes=("category", "list_price"))
    features = replace(orders.features, windows=(30,), aggregations=(), joins=(join,), text=None, sequence=None)
    contract = replace(orders, columns=columns, features=features)
    rows = [
        ("O1", "C000001", date(2026, 1, 5), "P00003", 1.0, 1, False, None),  # an earlier day: never the latest
        ("O2", "C000001", date(2026, 1, 20), "P00001", 1.0, 1, False, None),  # books, 30.0
        ("O3", "C000001", date(2026, 1, 20), "P00002", 1.0, 1, False, None),  # toys, 10.0
    ]
    products = spark.createDataFrame(
        [("P00001", "books", 30.0, None), ("P00002", "toys", 10.0, None), ("P00003", "sports", 99.0, None)],
        "product_id string, category string, list_price double, launched date",
    )
    schema = COLUMNS.replace("order_ts timestamp", "order_ts date")
    cutoffs = Cutoffs((date(2026, 2, 1),), date(2026, 3, 1))
    seen = set()
    for order in (rows, rows[::-1], [rows[1], rows[0], rows[2]], [rows[2], rows[0], rows[1]]):
        events = spark.createDataFrame(order, schema).coalesce(1)
        result = compute_features(contract, events, {"products": products}, contracts, cutoffs)
        (train,) = [r for r in result.frame.collect() if r["_role"] == "train"]
        seen.add((train["products_category_last"], train["products_list_price_last"]))
    # P00002 > P00001: both attributes of O3's product, not the greatest of each (which would be toys and 30.0).
    assert seen == {("toys", 10.0)}


def test_features_of_a_reference_not_curated_yet_are_null_not_zero(spark: SparkSession) -> None:
    """Until the products table has been curated its counts, sums, distinct counts, percentiles and shares are
    unknown: null, as the manifest's missing_references says, not the 0 that aggregates of all-null attributes give
    (a model would read 0 as "no spend on books")."""
    contracts = load_contracts(CONTRACTS)
    orders = contracts["orders"]
    assert orders.features is not None
    join = Join(
        dataset="products",
        key="product_id",
        attributes=("category",),
        aggregations=(Aggregation("category", ("count", "distinct")), Aggregation("list_price", ("sum", "p50"))),
        shares=(Share("category", "amount"),),
    )
    own = (Aggregation("amount", ("count", "sum")),)
    features = replace(orders.features, windows=(30,), joins=(join,), aggregations=own, text=None, sequence=None)
    contract = replace(orders, features=features)
    rows = [
        ("O1", "C000001", datetime(2026, 1, 10), "P00001", 30.0, 1, False, None),
        ("O2", "C000001", datetime(2026, 1, 20), "P00002", 10.0, 1, False, None),
    ]
    cutoffs = Cutoffs((date(2026, 2, 1),), date(2026, 3, 1))
    result = compute_features(contract, spark.createDataFrame(rows, COLUMNS), {}, contracts, cutoffs)

    assert result.missing_references == ["products"]
    (train,) = [r for r in result.frame.collect() if r["_role"] == "train"]
    joined = [f.name for f in result.features if f.name.startswith("products_")]
    assert len(joined) == 13  # count, distinct; sum, p50; a share for each of the 8 categories; the latest category
    assert {n: train[n] for n in joined} == dict.fromkeys(joined)
    # The dataset's own aggregates are computed as ever.
    assert (train["amount_count_30d"], train["amount_sum_30d"]) == (2, 40.0)
    types = {f.name: f.type for f in result.features}
    assert (types["products_category_count_30d"], types["products_list_price_p50_30d"]) == ("bigint", "double")
