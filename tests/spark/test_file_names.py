"""File and folder names with characters Hadoop takes for a glob pattern ([ ] { } * ? \\): the job reads each file
the manifest names, by its name alone, maps its rows back to their place in the manifest, and finds the curated table
under such a folder again."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyspark.sql import SparkSession

from spark_app.curate import read_table, table_uri
from tests.spark.test_feature_job import HEADER, _write, load_refs, run_job

pytestmark = pytest.mark.spark


def test_glob_characters_in_file_and_folder_names(spark: SparkSession, tmp_path: Path) -> None:
    """orders[1].csv was accepted by the validator, then "not found" by Spark ([1] is a character class), and the
    batch failed with every other file in it. The later file of the manifest re-delivers O0000001 with another amount:
    it wins only if the rows of both files are traced back to their files."""
    root = tmp_path / "runs [1] {a,b}"
    load_refs(spark, root)
    first = _write(
        root / "in" / "orders[1].csv",
        [
            HEADER,
            "O0000001,C000001,2026-01-10T00:00:00Z,P00001,10.0,1,false,",
            "O0000002,C000001,2026-01-11T00:00:00Z,P00001,20.0,1,false,",
        ],
    )
    second = _write(
        root / "in" / "o{2} *?\\.csv",
        [HEADER, "O0000001,C000001,2026-01-10T00:00:00Z,P00001,99.0,1,false,"],
    )
    # The file the pattern orders[1].csv matches: each file must be read once, as itself.
    third = _write(root / "in" / "orders1.csv", [HEADER, "O0000003,C000002,2026-01-12T00:00:00Z,P00001,5.0,1,false,"])
    manifest = run_job(spark, root, "orders", [first, second, third], "o1", as_of="2026-02-01")
    assert manifest["curated"]["rows_read"] == 4
    assert (manifest["curated"]["duplicate_rows"], manifest["curated"]["rows_written"]) == (1, 3)

    # A second batch merges into the table found under the same folder: O0000002 is replaced there.
    fourth = _write(root / "in" / "o[4].csv", [HEADER, "O0000002,C000001,2026-01-11T00:00:00Z,P00001,21.0,1,false,"])
    again = run_job(spark, root, "orders", [fourth], "o2", as_of="2026-02-01")
    assert again["curated"]["replaced_rows"] == 1

    table = read_table(spark, table_uri(str(root / "curated"), "orders"))
    assert table is not None
    amounts = {r["order_id"]: r["amount"] for r in table.select("order_id", "amount").collect()}
    assert amounts == {"O0000001": 99.0, "O0000002": 21.0, "O0000003": 5.0}
