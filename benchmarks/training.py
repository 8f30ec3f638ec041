"""Training figures: time and peak memory of training/train.py on feature tables the size of a real run.

The features look like the orders contract's (60 numeric window aggregates, two categorical attributes, a date)
with a label that depends on a few of them. Each size runs train.py in a fresh interpreter exactly as SageMaker
would (SM_* environment, Parquet channels), with the orders contract's hyperparameters; the child reports its
own peak RSS (VmHWM). Useful to choose ``training.instance_type`` and ``max_runtime_seconds``.

The peer, measured in the same run on the same files: bare XGBoost in a fresh interpreter (read both channels
with pyarrow, strings as pandas categories, ``xgb.train`` with the same parameters, rounds and early stopping),
i.e. the library's floor; the ratio says what train.py's checks, encoding, metrics and baseline cost on top.

    .venv/bin/python benchmarks/training.py [--rows 20000 100000] [--write-results]

Prints a markdown table; --write-results replaces the "Training" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dropzone.contract import load_contract

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
SECTION = "## Training (training/train.py, script mode)"
CHILD = r"""
import re, sys
import training.train as train
code = train.main()
status = open("/proc/self/status").read()
print("VmHWM", int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) // 1024)
sys.exit(code)
"""
# The peer: the same training with nothing but pyarrow, pandas and xgboost (the parameters train.py used).
BARE = r"""
import json, os, re, sys
import pandas as pd
import pyarrow.parquet as pq
import xgboost as xgb
job = json.loads(sys.argv[1])
def matrix(channel):
    frame = pq.read_table(os.environ[channel]).to_pandas()
    x = frame[job["features"]]
    x = x.astype({c: "category" for c in x.columns if not pd.api.types.is_numeric_dtype(x[c])})
    return xgb.DMatrix(x, label=frame[job["label"]], enable_categorical=True)
dtrain, dvalid = matrix("SM_CHANNEL_TRAIN"), matrix("SM_CHANNEL_VALIDATION")
booster = xgb.train(job["params"], dtrain, num_boost_round=job["num_round"], evals=[(dtrain, "train"),
    (dvalid, "validation")], early_stopping_rounds=job["early_stopping_rounds"], verbose_eval=False)
status = open("/proc/self/status").read()
print("VmHWM", int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) // 1024, "best", booster.best_iteration)
"""


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_child(argv: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run one child to its end: (result, wall seconds, CPU seconds of the child)."""
    cpu, start = _child_cpu(), time.perf_counter()
    result = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    return result, time.perf_counter() - start, _child_cpu() - cpu


def write_features(directory: Path, rows: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    columns: dict[str, object] = {"customer_id": [f"C{i:06d}" for i in range(rows)]}
    names = []
    for window in (30, 90, 365):
        for i in range(20):
            name = f"f{i:02d}_{window}d"
            columns[name] = rng.gamma(2.0, 10.0 * window / 30, rows)
            names.append(name)
    columns["segment"] = rng.choice(["consumer", "small_business", "corporate"], rows)
    columns["region"] = rng.choice(["north", "south", "east", "west"], rows)
    names += ["segment", "region"]
    score = (
        0.02 * np.asarray(columns["f00_30d"])
        - 0.01 * np.asarray(columns["f01_90d"])
        + np.where(np.asarray(columns["segment"]) == "corporate", 0.8, 0.0)
        - 0.3
    )
    columns["active_next_30d"] = (rng.random(rows) < 1 / (1 + np.exp(-score))).astype("int32")
    directory.mkdir(parents=True)
    pq.write_table(pa.table(columns), directory / "part-00000.parquet")
    return names


def measure(rows: int) -> dict[str, object]:
    contract = load_contract(ROOT / "contracts" / "orders.yaml")
    assert contract.training is not None
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        features = write_features(work / "train", rows, seed=1)
        write_features(work / "validation", max(1000, rows // 4), seed=2)
        hps = {
            **contract.training.hyperparameters,
            "label": "active_next_30d",
            "entity": "customer_id",
            "task": "classification",
            "features": ",".join(features),
        }
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "SM_CHANNEL_TRAIN": str(work / "train"),
            "SM_CHANNEL_VALIDATION": str(work / "validation"),
            "SM_MODEL_DIR": str(work / "model"),
            "SM_OUTPUT_DATA_DIR": str(work / "output" / "data"),
            "SM_OUTPUT_DIR": str(work / "output"),
            "SM_HPS": json.dumps(hps),
        }
        result, seconds, cpu = _run_child([sys.executable, "-c", CHILD], env)
        if result.returncode != 0:
            raise RuntimeError(f"train.py failed on {rows} rows: {result.stderr[-2000:]}")
        peak = int(re.search(r"VmHWM (\d+)", result.stdout).group(1))  # type: ignore[union-attr]
        metrics = json.loads((work / "output" / "data" / "metrics.json").read_text())
        model_bytes = (work / "model" / "xgboost-model").stat().st_size
        # the peer: the parameters train.py used (its metrics document lists them, eval_metric aside)
        params = {**metrics["hyperparameters"], "eval_metric": ["logloss", "auc"]}
        job = {
            "features": features,
            "label": hps["label"],
            "params": params,
            "num_round": int(hps["num_round"]),
            "early_stopping_rounds": int(hps["early_stopping_rounds"]),
        }
        bare, bare_seconds, bare_cpu = _run_child([sys.executable, "-c", BARE, json.dumps(job)], env)
        if bare.returncode != 0:
            raise RuntimeError(f"bare xgboost failed on {rows} rows: {bare.stderr[-2000:]}")
        bare_peak, bare_best = re.search(r"VmHWM (\d+) best (\d+)", bare.stdout).groups()  # type: ignore[union-attr]
    return {
        "rows": rows,
        "features": len(features),
        "seconds": seconds,
        "cpu": cpu,
        "bare_seconds": bare_seconds,
        "bare_cpu": bare_cpu,
        "bare_peak_mib": int(bare_peak),
        "bare_best_iteration": int(bare_best),
        "peak_mib": peak,
        "best_iteration": metrics["best_iteration"],
        "auc": metrics["validation"]["auc"],
        "baseline_auc": metrics["baseline"]["auc"],
        "model_kib": model_bytes // 1024,
    }


def table(results: list[dict[str, object]]) -> str:
    lines = [
        SECTION,
        "",
        "train.py in a fresh interpreter on a synthetic orders-like feature table (62 features, validation = a",
        "quarter of train, at least 1,000 rows), hyperparameters of contracts/orders.yaml (max_depth 5, eta 0.1,",
        "num_round 300, early stopping 20). Wall time includes interpreter start and Parquet reads; peak RSS is",
        f"the child's VmHWM; CPU s is the child's user + system time. Machine: {os.cpu_count()} cores shared with",
        "other work. Peer: bare XGBoost on the same files with the same parameters in a fresh interpreter",
        "(`bare`); `/ bare` is train.py's CPU time over the peer's, the fairer ratio on a shared machine.",
        "",
        "| train rows | features | seconds | CPU s | bare CPU s | CPU / bare | peak RSS MiB | bare peak RSS MiB "
        "| best iteration (bare) | AUC | baseline AUC | model KiB |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        lines.append(
            f"| {r['rows']:,} | {r['features']} | {r['seconds']:.1f} | {r['cpu']:.1f} | {r['bare_cpu']:.1f} "
            f"| {r['cpu'] / max(r['bare_cpu'], 1e-9):.2f}x | {r['peak_mib']} | {r['bare_peak_mib']} "
            f"| {r['best_iteration']} ({r['bare_best_iteration']}) | {r['auc']:.3f} | {r['baseline_auc']:.3f} "
            f"| {r['model_kib']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--write-results", action="store_true")
    args = parser.parse_args()
    results = [measure(rows) for rows in args.rows]
    text = table(results)
    print(text)
    if args.write_results:
        current = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n\n"
        # up to the next heading, or the start marker a section written between markers puts above its heading
        pattern = re.compile(re.escape(SECTION) + r".*?(?=\n## |\n<!-- [\w-]+:start -->|\Z)", re.S)
        if pattern.search(current):
            current = pattern.sub(lambda _: text.rstrip("\n") + "\n", current)
        else:
            current = current.rstrip("\n") + "\n\n" + text
        RESULTS.write_text(current if current.endswith("\n") else current + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
