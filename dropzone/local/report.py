"""The local run's summary (text) and HTML report (matplotlib figures embedded as base64 PNGs)."""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

from dropzone.costs import prices_for, run_cost
from dropzone.local.run import RunResult

_FILE_DONE = ("ACCEPTED", "BATCHED", "DONE")


def _kind(item: dict[str, Any]) -> str:
    return str(item["sk"]).split("#", 1)[0]


def files_by_status(result: RunResult) -> dict[str, Counter[str]]:
    return {d: Counter(str(i.get("status")) for i in items if _kind(i) == "FILE") for d, items in result.ledger.items()}


def quarantined(result: RunResult) -> list[tuple[str, str, str]]:
    """(dataset, key, reasons) of every quarantined file."""
    found = []
    for dataset, items in result.ledger.items():
        for i in items:
            if _kind(i) == "FILE" and i.get("status") == "QUARANTINED":
                reasons = i.get("reasons") or []
                text = "; ".join(map(str, reasons)) if isinstance(reasons, list) else str(reasons)
                found.append((dataset, str(i.get("key")), text))
    return found


_SPLITS = ("train", "validation", "score")  # the feature run's outputs, in the order the summary names them


def run_costs(result: RunResult) -> list[dict[str, Any]]:
    """Each executed EMR job run with its cost at list prices (from its billedResourceUtilization)."""
    prices = prices_for("ARM64")
    rows = []
    for run in result.emr_runs:
        cost = run_cost(run.billed, prices)
        rows.append(
            {
                "job_run_id": run.job_run_id,
                "name": run.name,
                "state": run.state,
                "seconds": run.seconds,
                "cost_usd": cost.cost_usd,
                "vcpu_hours": cost.vcpu_hours,
                "memory_gb_hours": cost.memory_gb_hours,
                "details": run.details,
            }
        )
    return rows


def _label_balance(label: dict[str, Any]) -> str:
    """ "; label <name>: 31.2% positive" (classification) or "; label <name>: mean 12.5" (regression), from the
    manifest's label; empty when it has neither (no training rows)."""
    if label.get("positive_fraction") is not None:
        return f"; label {label.get('name')}: {float(label['positive_fraction']):.1%} positive"
    if label.get("mean") is not None:
        return f"; label {label.get('name')}: mean {float(label['mean']):.4g}"
    return ""


def usd(amount: float) -> str:
    """``$0.0139``; a cost below a cent keeps two significant digits (``$0.000032``: 1 s of ml.m5.large), not
    ``$0.0000``."""
    if 0 < abs(amount) < 0.01:
        return f"${amount:.{max(4, 1 - math.floor(math.log10(abs(amount))))}f}"
    return f"${amount:.4f}"


def _training_bill(item: dict[str, Any] | None) -> str:
    """ ", billed <seconds> s on <instances> = $<cost>" from a training job's ledger item, when it was recorded."""
    if not item or item.get("billable_seconds") is None:
        return ""
    cost = item.get("cost_usd")
    price = f"{usd(float(cost))} at list price" if cost is not None else str(item.get("cost_note") or "no price")
    return f", billed {int(item['billable_seconds'])} s on {item.get('instances')} = {price}"


def _metric_pairs(metrics: dict[str, float]) -> list[tuple[str, float, float | None]]:
    pairs = []
    for name, value in sorted(metrics.items()):
        if name.startswith("validation:"):
            metric = name.split(":", 1)[1]
            pairs.append((metric, value, metrics.get(f"baseline:{metric}")))
    return pairs


def _note_summary(note: dict[str, Any]) -> str:
    """A notification's whole one-line summary (the SNS subject is cut to 100 characters), from its JSON message."""
    try:
        return f"dropzone: {json.loads(note['message'])['summary']}"
    except (TypeError, ValueError, KeyError):
        return str(note["subject"])


def summary_lines(result: RunResult) -> list[str]:
    lines = ["", "summary"]
    for dataset, counts in files_by_status(result).items():
        if counts:
            lines.append(f"  files    | {dataset}: " + ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items())))
    for dataset, key, reasons in quarantined(result):
        lines.append(f"  quarant. | {dataset}: {key}: {reasons}")
    if result.duplicated_key:
        seen = sum(1 for items in result.ledger.values() for i in items if i.get("key") == result.duplicated_key)
        lines.append(f"  dedup    | {result.duplicated_key}: notified twice, {seen} ledger item")
    for dataset, items in result.ledger.items():
        for i in items:
            if _kind(i) == "BATCH":
                lines.append(
                    f"  batch    | {dataset} {str(i['sk'])[6:18]}…: {i.get('status')}, attempt {i.get('attempt')}, "
                    f"{len(i.get('files') or [])} files, run {i.get('job_run_id')}"
                )
    for row in run_costs(result):
        lines.append(
            f"  run      | {row['job_run_id']} {row['state']} in {row['seconds']:.1f}s, "
            f"billed {row['vcpu_hours']:.3f} vCPU-h + {row['memory_gb_hours']:.3f} GB-h = ${row['cost_usd']:.4f} "
            "at list price (ARM64 us-east-1)"
        )
    for manifest in result.feature_runs:
        name, curated = manifest.get("dataset"), manifest.get("curated")
        if curated:  # what the batch added to the curated table, and the rows the job dropped
            lines.append(
                f"  curated  | {name}: {curated.get('rows_written')} rows of {curated.get('rows_read')} read "
                f"({curated.get('bad_rows')} bad, {curated.get('duplicate_rows')} duplicate)"
            )
        if manifest.get("kind") == "curate_only":  # a reference dataset: no features of its own
            continue
        split_rows = manifest.get("row_counts") or {}
        rows = ", ".join(f"{split_rows[f'{s}_rows']} {s}" for s in _SPLITS if f"{s}_rows" in split_rows)
        columns = len(manifest.get("features") or [])
        lines.append(
            f"  features | {name} run={str(manifest.get('run_id'))[:8]}…: {columns} feature columns; rows: {rows}"
            f"{_label_balance(manifest.get('label') or {})}"
        )
    for dataset, items in result.ledger.items():
        for i in items:
            if _kind(i) == "RUN" and i.get("training_skipped"):
                lines.append(f"  training | {dataset}: none started: {i['training_skipped']}")
    billed = {str(i.get("name")): i for items in result.ledger.values() for i in items if _kind(i) == "TRAINING"}
    for job in result.training_jobs:
        lines.append(
            f"  training | {job.name}: {job.status} in {job.seconds:.1f}s{_training_bill(billed.get(job.name))} "
            f"{job.failure_reason}".rstrip()
        )
        for metric, value, baseline in _metric_pairs(job.metrics):
            base = f" vs baseline {baseline:.4f}" if baseline is not None else ""
            lines.append(f"  model    |   {metric} {value:.4f}{base}")
    if result.trainable == []:  # only reference contracts: joined by others, never trained on
        lines.append(
            "  training | none: no dataset with a label in the contracts (only reference data): nothing to train, "
            "no model to register"
        )
    for dataset in result.trainable or ():
        if not result.ledger.get(dataset):  # its contract is deployed, but no file of it came in
            lines.append(
                f"  training | {dataset}: none started: no {dataset} file was uploaded "
                f"(no {dataset}/ folder with files under --data)"
            )
    for group, packages in result.model_packages.items():
        if not packages and not any(group.endswith(f"-{dataset}") for dataset in result.ledger):
            continue  # a group of the template for a dataset this run never saw (own contracts: --contracts)
        states = ", ".join(f"v{p['version']} {p['status']}" for p in packages) or "no model registered"
        lines.append(f"  registry | {group}: {states}")
    for note in result.notifications:
        lines.append(f"  notified | {_note_summary(note)}")
    total = sum(r["cost_usd"] for r in run_costs(result))
    lines.append(f"  cost     | EMR Serverless ${total:.4f} for {len(result.emr_runs)} run(s) at list prices")
    priced = [float(i["cost_usd"]) for i in billed.values() if i.get("cost_usd") is not None]
    if billed:
        lines.append(
            f"  cost     | SageMaker training {usd(sum(priced))} for {len(priced)} job(s) at list prices"
            + (f" ({len(billed) - len(priced)} without a price)" if len(priced) < len(billed) else "")
        )
    stages = ", ".join(f"{name} {seconds:.1f}s" for name, seconds in result.clock.seconds.items())
    lines.append(f"  time     | {stages}; pipeline {result.pipeline_seconds:.1f}s")
    return lines


# --- HTML report --------------------------------------------------------------------------------------------


def _png(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode()


def _figures(result: RunResult) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figures: list[tuple[str, str]] = []
    counts = files_by_status(result)
    datasets = [d for d, c in counts.items() if c]
    if datasets:
        statuses = sorted({s for c in counts.values() for s in c})
        fig, ax = plt.subplots(figsize=(6, 3))
        bottom = [0] * len(datasets)
        for status in statuses:
            values = [counts[d].get(status, 0) for d in datasets]
            ax.bar(datasets, values, bottom=bottom, label=status.lower())
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        ax.set_ylabel("files")
        ax.legend()
        figures.append(("Validation outcomes", _png(fig)))
        plt.close(fig)
    for job in result.training_jobs:
        figures += _model_figures(result, job, plt)
    return figures


def _model_figures(result: RunResult, job: Any, plt: Any) -> list[tuple[str, str]]:
    import pandas as pd

    job_dir = result.out_dir / "work" / "training" / job.name
    metrics_file = job_dir / "output" / "data" / "metrics.json"
    figures: list[tuple[str, str]] = []
    if not metrics_file.is_file():
        return figures
    document = json.loads(metrics_file.read_text())
    train_dir = job_dir / "input" / "data" / "train"
    parquet = sorted(train_dir.rglob("*.parquet"))
    importance = document.get("feature_importance") or {}
    top = list(importance)[:6]
    if parquet and top:
        frame = pd.concat([pd.read_parquet(p, columns=[c for c in top]) for p in parquet[:20]])
        fig, axes = plt.subplots(2, 3, figsize=(9, 5))
        for ax, column in zip(axes.flat, top, strict=False):
            values = pd.to_numeric(frame[column], errors="coerce").dropna()
            ax.hist(values, bins=30)
            ax.set_title(column, fontsize=8)
        fig.tight_layout()
        figures.append((f"Feature distributions (top features, {job.name})", _png(fig)))
        plt.close(fig)
    if importance:
        names = list(importance)[:15][::-1]
        gains = [float(v[0] if isinstance(v, list) else v) for v in (importance[n] for n in names)]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.barh(names, gains)
        ax.set_xlabel("gain")
        figures.append((f"Feature importance ({job.name})", _png(fig)))
        plt.close(fig)
    curve = _roc(job_dir, document)
    if curve is not None:
        fpr, tpr = curve
        fig, ax = plt.subplots(figsize=(4, 4))
        auc = (document.get("validation") or {}).get("auc")
        ax.plot(fpr, tpr, label=f"model (AUC {auc:.3f})" if auc else "model")
        ax.plot([0, 1], [0, 1], linestyle="--", label="baseline (constant)")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend()
        figures.append((f"ROC on the validation channel ({job.name})", _png(fig)))
        plt.close(fig)
    return figures


def _roc(job_dir: Path, document: dict[str, Any]) -> tuple[Any, Any] | None:
    """ROC of the trained model on its validation channel, scored with the trainer's own preparation."""
    if document.get("task") != "classification":
        return None
    import importlib.util

    import pandas as pd
    import xgboost as xgb
    from sklearn.metrics import roc_curve

    script = job_dir / "code" / "train.py"
    model_file = job_dir / "model" / "xgboost-model"
    if not script.is_file() or not model_file.is_file():
        return None
    spec = importlib.util.spec_from_file_location("dropzone_local_report_train", script)
    if spec is None or spec.loader is None:
        return None
    trainer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trainer)
    data = job_dir / "input" / "data"
    train = pd.concat(pd.read_parquet(p) for p in sorted((data / "train").rglob("*.parquet")))
    valid = pd.concat(pd.read_parquet(p) for p in sorted((data / "validation").rglob("*.parquet")))
    features = list(document["features"])
    categories: dict[str, list[Any]] = {}
    trainer._prepare(train, features, categories)
    x_valid = trainer._prepare(valid, features, categories)
    booster = xgb.Booster()
    booster.load_model(bytearray(model_file.read_bytes()))
    best = int(document.get("best_iteration", 0))
    scores = booster.predict(xgb.DMatrix(x_valid, enable_categorical=True), iteration_range=(0, best + 1))
    labels = trainer._label_values(valid, document["label"], "classification")
    if len(set(labels.tolist())) < 2:  # one class only: no ROC curve (the gate says so in its reason)
        return None
    fpr, tpr, _ = roc_curve(labels, scores)
    return fpr, tpr


def write_report(result: RunResult, lines: list[str]) -> Path:
    """Write ``report.html`` under the run's output directory; returns its path."""
    try:
        figures = _figures(result)
        figure_error = ""
    except Exception as e:  # a plot must never hide the run's outcome: the text summary is still written
        figures = []
        figure_error = f"<p>figures could not be drawn: {html.escape(f'{type(e).__name__}: {e}')}</p>"
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>dropzone local run</title>",
        "<style>body{font-family:sans-serif;max-width:980px;margin:2em auto}pre{background:#f4f4f4;padding:1em;"
        "overflow-x:auto}img{max-width:100%}</style></head><body>",
        "<h1>dropzone local run</h1>",
        f"<p>Embedded AWS API {html.escape(result.endpoint_url)}, bucket {html.escape(result.data_bucket)}</p>",
        "<h2>Summary</h2><pre>" + html.escape("\n".join(lines).strip()) + "</pre>",
        figure_error,
    ]
    for title, png in figures:
        parts.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{png}'>")
    parts.append("</body></html>")
    path = result.out_dir / "report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
