"""`dropzone validate`: check files against a contract before (or without) uploading them.

The contract is read with the reference contracts its joins name, from its folder, and checked against them as at
deploy; a reference not there is a note on stderr (those joins are not checked), not an error.

Exit 0 when every file is accepted, 1 when any is quarantined, 2 on a usage or contract error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dropzone.cli import UsageError, reader_may_leave
from dropzone.contract import load_contract_with_references
from dropzone.validation import ValidationReport, validate_path
from dropzone.validation.guard import human_size

SHOWN_SAMPLES = 5


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "validate",
        help="validate files against a dataset contract (CSV, JSON Lines, Parquet; gzip)",
        description="Validate each FILE against the contract, as the ingest function does when a file lands.",
    )
    p.add_argument("--contract", required=True, help="contract file, e.g. contracts/orders.yaml")
    p.add_argument("--json", action="store_true", help="print the reports as JSON (a list, one per file)")
    p.add_argument("files", nargs="+", metavar="FILE", help="files to validate")
    return p


def _table(report: ValidationReport) -> str:
    d = report.to_dict()
    lines = [
        f"{report.name}: {report.decision}",
        f"  format {report.format}   rows {report.rows_read}   bad {report.bad_rows} ({report.bad_fraction:.2%})"
        f"   read {human_size(report.bytes_read)}   {report.duration_s:.2f} s",
    ]
    if report.reasons:
        lines.append("  reasons:")
        lines += [f"    - {reason}" for reason in report.reasons]
    if report.rule_counts:
        width = max(len(name) for name in report.rule_counts)
        lines.append(f"  {'rule'.ljust(width + 2)}  rows")
        for name, count in d["rule_counts"].items():
            note = "  (flagged, not bad)" if name in report.flagged else ""
            lines.append(f"    {name.ljust(width)}  {count}{note}")
    if report.samples:
        lines.append(f"  first bad rows (of {len(report.samples)} sampled):")
        for sample in report.samples[:SHOWN_SAMPLES]:
            columns = {rule.split(".")[0] for rule in sample["rules"]}
            values = sample.get("values") or {}
            shown = {k: v for k, v in values.items() if k in columns} or sample.get("detail")
            text = json.dumps(shown, default=str)[:160]
            lines.append(f"    row {sample['row']}: {', '.join(sample['rules'])}  {text}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    contract, unchecked = load_contract_with_references(args.contract)
    if unchecked:
        files, datasets = ", ".join(f"{d}.yaml" for d in unchecked), ", ".join(unchecked)
        note = f"{Path(args.contract).parent} holds no {files}, so the joins on {datasets} were not checked"
        print(f"dropzone validate: note: {note}", file=sys.stderr)
    paths = [Path(f) for f in args.files]
    for p in paths:
        if not p.exists():
            raise UsageError(f"no such file: {p}")
        if not p.is_file():
            raise UsageError(f"not a file: {p}")
    reports = [validate_path(p, contract) for p in paths]
    with reader_may_leave():  # `| head`: the rest is not wanted
        if args.json:
            print(json.dumps([r.to_dict() for r in reports], indent=2, default=str))
        else:
            print("\n\n".join(_table(r) for r in reports))
            accepted = sum(r.accepted for r in reports)
            print(f"\n{accepted} of {len(reports)} file(s) accepted, {len(reports) - accepted} quarantined")
    return 0 if all(r.accepted for r in reports) else 1
