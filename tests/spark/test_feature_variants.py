"""compute_features with the other contract options: a regression label and Word2Vec text features."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from dropzone.contract import Label, load_contracts
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
