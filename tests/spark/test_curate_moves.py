"""The curated table when a re-delivered key moves to another ``event_date`` (hand-written expectations).

Each test merges hand-built batches with ``spark_app.curate.curate`` and checks the rows of the table and its
partition folders. Rows are ``(order_id, event_date, amount, _batch_id)``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from dropzone.contract import Contract, load_contracts
from spark_app import curate as curate_module
from spark_app.curate import CurateResult
from tests.spark.conftest import curate_rows

pytestmark = pytest.mark.spark

CONTRACTS = Path(__file__).resolve().parents[2] / "contracts"


@pytest.fixture(scope="module")
def orders() -> Contract:
    return load_contracts(CONTRACTS)["orders"]


def _merge(
    spark: SparkSession,
    contract: Contract,
    root: Path,
    batch_id: str,
    rows: list[tuple[str, str, float]],
    files: list[int] | None = None,
) -> CurateResult:
    """Curate a batch of orders given as (order_id, order_ts ISO, amount), from file ``files[i]`` of the batch
    (default: all from file 0); other columns are fixed."""
    full = [(oid, "C000001", ts, "P00001", amount, 1, False, None) for oid, ts, amount in rows]
    return curate_rows(spark, contract, root, batch_id, full, files)


def _table(spark: SparkSession, root: Path) -> list[tuple[str, str, float, str]]:
    rows = spark.read.parquet(str(root / "orders")).collect()
    return sorted((r.order_id, r.event_date.isoformat(), r.amount, r._batch_id) for r in rows)


def _dates(root: Path) -> list[str]:
    return sorted(p.name for p in (root / "orders").iterdir() if p.is_dir())


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_the_only_row_of_a_date_moves(spark: SparkSession, orders: Contract, tmp_path: Path) -> None:
    # The case of docs/ingest.md: O000001 is the only order of 2026-10-01, then re-sent for 2026-10-02.
    _merge(
        spark,
        orders,
        tmp_path,
        "b1",
        [("O000001", "2026-10-01T10:00:00", 10.0), ("O000009", "2026-09-30T08:00:00", 9.0)],
    )
    untouched = _files(tmp_path / "orders" / "event_date=2026-09-30")

    result = _merge(spark, orders, tmp_path, "b2", [("O000001", "2026-10-02T09:00:00", 11.0)])

    assert result.replaced_rows == 1
    assert result.partitions == ["2026-10-02"]
    assert _dates(tmp_path) == ["event_date=2026-09-30", "event_date=2026-10-02"]
    assert _table(spark, tmp_path) == [
        ("O000001", "2026-10-02", 11.0, "b2"),
        ("O000009", "2026-09-30", 9.0, "b1"),
    ]
    # A partition the batch does not touch is not rewritten.
    assert _files(tmp_path / "orders" / "event_date=2026-09-30") == untouched


def test_a_duplicate_dropped_within_the_batch_touches_no_date(
    spark: SparkSession, orders: Contract, tmp_path: Path
) -> None:
    # O000001 twice in one batch on two dates: the later file wins, and the date of the copy it drops is neither
    # written nor reported as touched.
    result = _merge(
        spark,
        orders,
        tmp_path,
        "b1",
        [("O000001", "2026-10-01T10:00:00", 10.0), ("O000001", "2026-10-03T10:00:00", 12.0)],
        files=[0, 1],
    )

    assert (result.rows_in, result.duplicate_rows, result.rows_written) == (2, 1, 1)
    assert result.partitions == ["2026-10-03"]
    assert _dates(tmp_path) == ["event_date=2026-10-03"]
    assert _table(spark, tmp_path) == [("O000001", "2026-10-03", 12.0, "b1")]


def test_a_date_that_keeps_other_rows(spark: SparkSession, orders: Contract, tmp_path: Path) -> None:
    _merge(
        spark,
        orders,
        tmp_path,
        "b1",
        [("O000001", "2026-10-01T10:00:00", 10.0), ("O000003", "2026-10-01T11:00:00", 30.0)],
    )

    result = _merge(spark, orders, tmp_path, "b2", [("O000001", "2026-10-02T09:00:00", 11.0)])

    assert result.replaced_rows == 1
    assert _dates(tmp_path) == ["event_date=2026-10-01", "event_date=2026-10-02"]
    assert _table(spark, tmp_path) == [
        ("O000001", "2026-10-02", 11.0, "b2"),
        ("O000003", "2026-10-01", 30.0, "b1"),
    ]


def test_rerunning_the_batch_leaves_the_table_as_one_run(spark: SparkSession, orders: Contract, tmp_path: Path) -> None:
    _merge(
        spark,
        orders,
        tmp_path,
        "b1",
        [("O000001", "2026-10-01T10:00:00", 10.0), ("O000002", "2026-10-03T10:00:00", 20.0)],
    )
    batch = [("O000001", "2026-10-02T09:00:00", 11.0), ("O000002", "2026-10-03T12:00:00", 21.0)]
    _merge(spark, orders, tmp_path, "b2", batch)
    once = _table(spark, tmp_path)

    _merge(spark, orders, tmp_path, "b2", batch)

    assert once == [("O000001", "2026-10-02", 11.0, "b2"), ("O000002", "2026-10-03", 21.0, "b2")]
    assert _table(spark, tmp_path) == once
    assert _dates(tmp_path) == ["event_date=2026-10-02", "event_date=2026-10-03"]


def test_a_failure_before_the_emptied_partition_is_deleted_loses_nothing(
    spark: SparkSession, orders: Contract, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _merge(spark, orders, tmp_path, "b1", [("O000001", "2026-10-01T10:00:00", 10.0)])
    batch = [("O000001", "2026-10-02T09:00:00", 11.0)]

    def crash(*_: object) -> None:
        raise RuntimeError("job killed")

    monkeypatch.setattr(curate_module, "_delete_folder", crash)
    with pytest.raises(RuntimeError, match="job killed"):
        _merge(spark, orders, tmp_path, "b2", batch)
    # The new row is written before anything is deleted: the key is there twice, never missing.
    assert _table(spark, tmp_path) == [("O000001", "2026-10-01", 10.0, "b1"), ("O000001", "2026-10-02", 11.0, "b2")]

    monkeypatch.undo()
    _merge(spark, orders, tmp_path, "b2", batch)

    assert _dates(tmp_path) == ["event_date=2026-10-02"]
    assert _table(spark, tmp_path) == [("O000001", "2026-10-02", 11.0, "b2")]


def test_a_key_that_moves_back(spark: SparkSession, orders: Contract, tmp_path: Path) -> None:
    _merge(spark, orders, tmp_path, "b1", [("O000001", "2026-10-01T10:00:00", 10.0)])
    _merge(
        spark,
        orders,
        tmp_path,
        "b2",
        [("O000001", "2026-10-02T09:00:00", 11.0), ("O000004", "2026-10-01T12:00:00", 40.0)],
    )
    assert _table(spark, tmp_path) == [("O000001", "2026-10-02", 11.0, "b2"), ("O000004", "2026-10-01", 40.0, "b2")]

    result = _merge(spark, orders, tmp_path, "b3", [("O000001", "2026-10-01T08:00:00", 12.0)])

    assert result.replaced_rows == 1
    assert _dates(tmp_path) == ["event_date=2026-10-01"]
    assert _table(spark, tmp_path) == [("O000001", "2026-10-01", 12.0, "b3"), ("O000004", "2026-10-01", 40.0, "b2")]


@pytest.mark.parametrize("shuffle_partitions", ["2", "8"])
def test_each_date_is_one_file_whatever_the_write_tasks(
    spark: SparkSession, orders: Contract, tmp_path: Path, shuffle_partitions: str
) -> None:
    # Five dates written by up to min(5, spark.sql.shuffle.partitions) tasks: every row of a date goes to one of them.
    batch = [(f"O00000{i}", f"2026-10-0{1 + i % 5}T{10 + i}:00:00", float(i)) for i in range(1, 10)]
    previous = spark.conf.get("spark.sql.shuffle.partitions")
    spark.conf.set("spark.sql.shuffle.partitions", shuffle_partitions)
    try:
        result = _merge(spark, orders, tmp_path, "b1", batch)
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", previous)
    dates = [f"event_date=2026-10-0{d}" for d in range(1, 6)]
    assert _dates(tmp_path) == dates
    assert result.partitions == [f"2026-10-0{d}" for d in range(1, 6)]
    for folder in dates:
        data = [n for n in _files(tmp_path / "orders" / folder) if n.endswith(".parquet")]
        assert len(data) == 1, (folder, data)
    assert len(_table(spark, tmp_path)) == 9
