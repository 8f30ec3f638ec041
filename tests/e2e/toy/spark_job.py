"""Toy Spark entry point for the runtime's tests: reads the CSVs a JSON manifest lists, writes their row count.

Options that let the tests see what a run inherits from the runs before it in a warm driver: ``--show-state``
prints the session's shuffle partitions, time zone and persisted RDDs; ``--show-debugging`` whether pyspark
records the call site of each DataFrame call (a setting fixed when the driver starts); ``--set-time-zone`` and
``--cache`` leave such state behind; ``--lib`` prints ``toylib.VALUE`` from the run's --py-files; ``--exit-hard``
ends the process.
"""

import argparse
import json
import os
from pathlib import Path

from pyspark.sql import SparkSession

parser = argparse.ArgumentParser()
parser.add_argument("--manifest", required=True)
parser.add_argument("--out", required=True)
parser.add_argument("--fail", default="")
parser.add_argument("--exit-hard", type=int, default=None)
parser.add_argument("--lib", action="store_true")
parser.add_argument("--show-state", action="store_true")
parser.add_argument("--set-time-zone", default="")
parser.add_argument("--cache", action="store_true")
parser.add_argument("--show-debugging", action="store_true")
args = parser.parse_args()
if args.fail:
    raise ValueError(args.fail)
if args.exit_hard is not None:
    print("[dropzone] exiting hard", flush=True)
    os._exit(args.exit_hard)
if args.lib:
    import toylib

    print(f"[dropzone] toylib {toylib.VALUE}", flush=True)
files = json.loads(Path(args.manifest).read_text())["files"]
spark = SparkSession.builder.getOrCreate()
if args.show_state:
    conf = spark.conf
    persisted = spark.sparkContext._jsc.getPersistentRDDs().size()
    print(
        f"[dropzone] partitions {conf.get('spark.sql.shuffle.partitions')}, "
        f"time zone {conf.get('spark.sql.session.timeZone')}, persisted {persisted}",
        flush=True,
    )
if args.show_debugging:
    from pyspark.errors.utils import is_debugging_enabled

    setting = spark.conf.get("spark.python.sql.dataFrameDebugging.enabled")
    print(f"[dropzone] dataframe debugging {setting}, in effect {is_debugging_enabled()}", flush=True)
if args.set_time_zone:
    spark.conf.set("spark.sql.session.timeZone", args.set_time_zone)
frame = spark.read.csv(files, header=True)
if args.cache:
    frame = frame.cache()
rows = frame.count()
print(f"[dropzone] counted {rows} rows", flush=True)
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
(out / "count.txt").write_text(str(rows))
(out / "_manifest.json").write_text(json.dumps({"rows": rows, "count": str(out / "count.txt")}))
spark.stop()
