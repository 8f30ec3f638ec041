"""What the pipeline did, read from the ledger: files, batches, runs, training jobs and model decisions.

Works the same against AWS and against the local runtime (moto server): only the DynamoDB endpoint differs.
Everything is newest first. :func:`collect` returns plain dicts (the ``--json`` output); :func:`render` makes
the readable tables.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from dropzone.ledger import Ledger, deserialize

SECTIONS = ("files", "batches", "runs", "trainings", "leases")


@dataclass
class Status:
    files: list[dict[str, Any]] = field(default_factory=list)
    batches: list[dict[str, Any]] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    trainings: list[dict[str, Any]] = field(default_factory=list)
    leases: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SECTIONS} | {"summary": self.summary()}

    def summary(self) -> dict[str, dict[str, int]]:
        """Files per status per dataset."""
        counts: dict[str, dict[str, int]] = {}
        for f in self.files:
            per = counts.setdefault(str(f["dataset"]), {})
            per[str(f["status"])] = per.get(str(f["status"]), 0) + 1
        return counts


def _items(ledger: Ledger, dataset: str | None) -> Iterable[dict[str, Any]]:
    if dataset is not None:
        yield from ledger.query_dataset(dataset)
        return
    kwargs: dict[str, Any] = {"TableName": ledger.table_name, "ConsistentRead": True}
    while True:
        page = ledger.client.scan(**kwargs)
        for item in page.get("Items", []):
            yield deserialize(item)
        if "LastEvaluatedKey" not in page:
            return
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def _dataset(item: Mapping[str, Any]) -> str:
    return str(item.get("dataset") or str(item["pk"]).removeprefix("DATASET#"))


def _gate_value(item: Mapping[str, Any]) -> float | None:
    validation = (item.get("metrics") or {}).get("validation") or {}
    for name in ("auc", "rmse", "pr_auc", "logloss", "mae"):
        if validation.get(name) is not None:
            return float(validation[name])
    return None


def collect(ledger: Ledger, *, dataset: str | None = None) -> Status:
    """Read the ledger (one dataset with a Query, or the whole table) into newest-first sections."""
    status = Status()
    for item in _items(ledger, dataset):
        sk = str(item["sk"])
        name = _dataset(item)
        if sk.startswith("FILE#"):
            reasons = item.get("reasons") or []
            status.files.append(
                {
                    "dataset": name,
                    "status": item.get("status"),
                    "key": item.get("key"),
                    "version": item.get("version"),  # versionId or ETag: tells two versions of one key apart
                    "report_key": item.get("report_key"),  # reports/<dataset>/<path>/<version>.json
                    "size": item.get("size"),
                    "rows": item.get("rows"),
                    "bad_rows": item.get("bad_rows"),
                    "seen_at": item.get("seen_at"),
                    "batch_id": item.get("batch_id"),
                    "attempt": item.get("attempt"),
                    "reason": str(reasons[0]) if reasons else None,
                }
            )
        elif sk.startswith("BATCH#"):
            status.batches.append(
                {
                    "dataset": name,
                    "batch_id": item.get("batch_id") or sk.removeprefix("BATCH#"),
                    "status": item.get("status"),
                    "attempt": item.get("attempt"),
                    "files": len(item.get("files") or []),
                    "bytes": item.get("bytes"),
                    "job_run_id": item.get("job_run_id"),
                    "created_at": item.get("created_at"),
                    "finished_at": item.get("finished_at"),
                    "last_error": item.get("last_error"),
                }
            )
        elif sk.startswith("RUN#"):
            status.runs.append(
                {
                    "dataset": name,
                    "job_run_id": item.get("job_run_id") or sk.removeprefix("RUN#"),
                    "batch_id": item.get("batch_id"),
                    "attempt": item.get("attempt"),
                    "state": item.get("state"),
                    "duration_s": item.get("duration_s"),
                    "vcpu_hours": item.get("vcpu_hours"),
                    "memory_gb_hours": item.get("memory_gb_hours"),
                    "cost_usd": item.get("cost_usd"),
                    "finished_at": item.get("finished_at"),
                    "training_job": item.get("training_job"),
                    "training_skipped": item.get("training_skipped"),
                    "state_details": item.get("state_details") or None,
                }
            )
        elif sk.startswith("TRAINING#"):
            status.trainings.append(
                {
                    "dataset": name,
                    "name": item.get("name") or sk.removeprefix("TRAINING#"),
                    "run_id": item.get("run_id"),
                    "status": item.get("status"),
                    "decision": item.get("decision"),
                    "metric": _gate_value(item),
                    "decision_reason": item.get("decision_reason"),
                    "failure_reason": item.get("failure_reason"),
                    "model_package_arn": item.get("model_package_arn"),
                    "instances": item.get("instances"),
                    "billable_seconds": item.get("billable_seconds"),
                    "cost_usd": item.get("cost_usd"),
                    "cost_note": item.get("cost_note"),
                    "created_at": item.get("created_at"),
                    "finished_at": item.get("finished_at"),
                }
            )
        elif sk == "LEASE":
            expires = item.get("expires_at_lease")
            status.leases.append(
                {
                    "dataset": name,
                    "owner": item.get("owner"),
                    "acquired_at": item.get("acquired_at"),
                    "expires_at": datetime.fromtimestamp(int(expires), UTC).isoformat() if expires else None,
                }
            )
    status.files.sort(key=lambda r: str(r["seen_at"] or ""), reverse=True)
    status.batches.sort(key=lambda r: str(r["created_at"] or ""), reverse=True)
    status.runs.sort(key=lambda r: str(r["finished_at"] or ""), reverse=True)
    status.trainings.sort(key=lambda r: str(r["created_at"] or ""), reverse=True)
    return status


# ---- the readable form -----------------------------------------------------------------------------------


def _cell(value: Any, width: int = 40) -> str:
    if value is None or value == "":
        return "-"
    text = _number(value) if isinstance(value, float) else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _number(value: float) -> str:
    return f"{value:.4f}" if abs(value) < 1000 else f"{value:,.0f}"


def _table(title: str, columns: Sequence[tuple[str, str]], rows: Sequence[Mapping[str, Any]], total: int) -> str:
    if not rows:
        return f"{title}: none"
    cells = [[_cell(r.get(key)) for key, _ in columns] for r in rows]
    widths = [max(len(header), *(len(c[i]) for c in cells)) for i, (_, header) in enumerate(columns)]
    lines = [
        f"{title} ({total}, newest first)" if total == len(rows) else f"{title} ({len(rows)} of {total}, newest first)"
    ]
    lines.append("  ".join(header.ljust(w) for (_, header), w in zip(columns, widths, strict=True)).rstrip())
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def _short(rows: list[dict[str, Any]], keys: Sequence[str], length: int = 12) -> list[dict[str, Any]]:
    """Ids shortened for the terminal (the --json output keeps them whole)."""
    out = []
    for r in rows:
        copy = dict(r)
        for k in keys:
            if copy.get(k):
                copy[k] = str(copy[k])[:length]
        out.append(copy)
    return out


def render(status: Status, *, limit: int = 20) -> str:
    """The readable report: a summary line per dataset, then one table per section (``limit`` rows each)."""
    parts = []
    summary = status.summary()
    if summary:
        lines = ["Files by status"]
        for dataset, counts in sorted(summary.items()):
            lines.append(f"  {dataset}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
        parts.append("\n".join(lines))
    else:
        parts.append("The ledger holds no files yet.")
    parts.append(
        _table(
            "Runs",
            [
                ("dataset", "DATASET"),
                ("job_run_id", "JOB RUN"),
                ("state", "STATE"),
                ("attempt", "ATTEMPT"),
                ("duration_s", "SECONDS"),
                ("cost_usd", "COST USD"),
                ("finished_at", "FINISHED"),
                ("training_job", "TRAINING JOB"),
                ("training_skipped", "TRAINING SKIPPED"),
            ],
            status.runs[:limit],
            len(status.runs),
        )
    )
    parts.append(
        _table(
            "Models",
            [
                ("dataset", "DATASET"),
                ("name", "TRAINING JOB"),
                ("status", "STATUS"),
                ("metric", "METRIC"),
                ("decision", "DECISION"),
                ("billable_seconds", "BILLED S"),
                ("cost_usd", "COST USD"),
                ("created_at", "CREATED"),
                ("failure_reason", "FAILURE"),
            ],
            status.trainings[:limit],
            len(status.trainings),
        )
    )
    parts.append(
        _table(
            "Batches",
            [
                ("dataset", "DATASET"),
                ("batch_id", "BATCH"),
                ("status", "STATUS"),
                ("attempt", "ATTEMPT"),
                ("files", "FILES"),
                ("bytes", "BYTES"),
                ("created_at", "CREATED"),
                ("last_error", "LAST ERROR"),
            ],
            _short(status.batches[:limit], ("batch_id",)),
            len(status.batches),
        )
    )
    parts.append(
        _table(
            "Files",
            [
                ("dataset", "DATASET"),
                ("key", "KEY"),
                ("status", "STATUS"),
                ("rows", "ROWS"),
                ("bad_rows", "BAD"),
                ("seen_at", "SEEN"),
                ("batch_id", "BATCH"),
                ("reason", "REASON"),
            ],
            _short(status.files[:limit], ("batch_id",)),
            len(status.files),
        )
    )
    if status.leases:
        parts.append(
            _table(
                "Runs in flight (leases)",
                [("dataset", "DATASET"), ("owner", "BATCH"), ("acquired_at", "SINCE"), ("expires_at", "EXPIRES")],
                _short(status.leases, ("owner",)),
                len(status.leases),
            )
        )
    return "\n\n".join(parts)
