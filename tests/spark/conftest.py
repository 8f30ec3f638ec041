"""One local SparkSession for every Spark test: local[2], few shuffle partitions, no UI."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from dropzone.contract import Contract
from dropzone.local.localfs import file_system_conf
from spark_app.curate import CurateResult, curate
from spark_app.io import FILE_INDEX, SPARK_TYPES


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    session = (
        SparkSession.builder.master("local[2]")
        .appName("dropzone-tests")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.sql.adaptive.enabled", "true")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        .config("spark.sql.codegen.maxFields", "1000")  # as spark_app.job.build_session: the same generated code
        .config("spark.python.sql.dataFrameDebugging.enabled", "false")  # as spark_app.job.build_session
        .config("spark.driver.memory", "2g")  # as the local runtime's driver (dropzone.local.emr)
        .config("spark.sql.warehouse.dir", "/tmp/dropzone-spark-warehouse")
        .config(map=file_system_conf())  # as the local runtime's driver: local files without a process per file
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def assert_frames_equal(actual: DataFrame, expected: DataFrame) -> None:
    """Same schema and same rows in any order.

    pyspark.testing.assertDataFrameEqual imports pyspark.pandas, which fails with pandas 3 (pyspark 4.1.1:
    ``cannot import name 'DateOffset' from 'pandas.tseries.frequencies'``), so the tests compare frames here.
    """
    assert actual.schema == expected.schema, f"schemas differ:\n{actual.schema}\n{expected.schema}"
    key = repr
    assert sorted(actual.collect(), key=key) == sorted(expected.collect(), key=key)


@pytest.fixture(scope="session")
def frames_equal() -> Callable[[DataFrame, DataFrame], None]:
    return assert_frames_equal


@dataclass(frozen=True)
class PlanNode:
    name: str  # e.g. "Exchange", "BroadcastHashJoin", "BatchEvalPython"
    under_broadcast: bool  # inside the plan of a broadcast side (a small table), not on the main rows' path
    partitioning: str  # the output partitioning, e.g. "hashpartitioning(customer_id#12, 2)"


def plan_nodes(frame: DataFrame) -> list[PlanNode]:
    """Every node of the physical plan ``frame`` last executed, through adaptive query stages and the plans of the
    cached frames it reads. Run an action first: before one, adaptive stages are not planned yet."""

    def walk(node: Any, under_broadcast: bool) -> Iterator[PlanNode]:
        name = str(node.nodeName())
        yield PlanNode(name, under_broadcast, str(node.outputPartitioning().toString()))
        under_broadcast = under_broadcast or name == "BroadcastExchange"
        if name == "AdaptiveSparkPlan":
            children = [node.executedPlan()]
        elif name.endswith("QueryStage"):
            children = [node.plan()]
        elif name == "InMemoryTableScan":
            children = [node.relation().cachedPlan()]
        else:
            children = [node.children().apply(i) for i in range(node.children().size())]
        for child in children:
            yield from walk(child, under_broadcast)

    return list(walk(frame._jdf.queryExecution().executedPlan(), False))


def curate_rows(
    spark: SparkSession,
    contract: Contract,
    root: Path,
    batch_id: str,
    rows: Sequence[tuple[Any, ...]],
    files: list[int] | None = None,
) -> CurateResult:
    """``spark_app.curate.curate`` on a batch given as tuples of the contract's columns (its timestamp as ISO text or
    None), from file ``files[i]`` of the batch (default: all from file 0), into the curated root ``root``."""
    schema = T.StructType(
        [T.StructField(c.name, SPARK_TYPES[c.type]) for c in contract.columns]
        + [T.StructField(FILE_INDEX, T.LongType())]
    )
    names = [c.name for c in contract.columns]

    def value(name: str, v: Any) -> Any:
        return datetime.fromisoformat(v).replace(tzinfo=UTC) if name == contract.timestamp and v else v

    data = [
        (*(value(n, v) for n, v in zip(names, row, strict=True)), file)
        for row, file in zip(rows, files or [0] * len(rows), strict=True)
    ]
    return curate(spark, contract, spark.createDataFrame(data, schema), batch_id, str(root))
