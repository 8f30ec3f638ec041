"""compute_features with the other contract options: a regression label and Word2Vec text features."""

from __future__ import annotations

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
