"""Toy Spark entry point for the runtime's tests: reads the CSVs a JSON manifest lists, writes their row count."""

import argparse
import json
from pathlib import Path

from pyspark.sql import SparkSession

parser = argparse.ArgumentParser()
parser.add_argument("--manifest", required=True)
parser.add_argument("--out", required=True)
parser.add_argument("--fail", default="")
args = parser.parse_args()
if args.fail:
    raise ValueError(args.fail)
files = json.loads(Path(args.manifest).read_text())["files"]
spark = SparkSession.builder.getOrCreate()
rows = spark.read.csv(files, header=True).count()
print(f"[dropzone] counted {rows} rows", flush=True)
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
(out / "count.txt").write_text(str(rows))
(out / "_manifest.json").write_text(json.dumps({"rows": rows, "count": str(out / "count.txt")}))
