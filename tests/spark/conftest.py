"""One local SparkSession for every Spark test: local[2], few shuffle partitions, no UI."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from pyspark.sql import DataFrame, SparkSession


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
        .config("spark.driver.memory", "1g")
        .config("spark.sql.warehouse.dir", "/tmp/dropzone-spark-warehouse")
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
