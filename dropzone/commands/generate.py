"""`dropzone generate`: synthetic orders plus the products and customers reference files (see dropzone.generate)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dropzone import outdir
from dropzone.cli import UsageError, cannot_write, date_arg, reader_may_leave
from dropzone.generate import generate


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "generate",
        help="write synthetic orders, products and customers CSV files that pass the contracts",
        description="Write DIR/orders/*.csv, DIR/products/products.csv and DIR/customers/customers.csv, which pass "
        "the shipped contracts. DIR must be new, empty, or the output of an earlier `dropzone generate`, whose files "
        "are replaced (no stale orders-NNN.csv of a larger run stays next to the new ones); any other non-empty folder "
        "is refused, so no file of yours is replaced.",
    )
    p.add_argument("--rows", type=int, required=True, help="number of order events")
    p.add_argument(
        "--out", required=True, help="output directory: new, empty, or an earlier generate's (its files are replaced)"
    )
    p.add_argument("--seed", type=int, default=7, help="random seed (same seed and end date, same files)")
    p.add_argument("--files", type=int, default=5, help="number of chronological order files (default 5)")
    p.add_argument(
        "--end-date",
        type=date_arg,
        default=None,
        metavar="YYYY-MM-DD",
        help="events end before this date, today (UTC) at the latest: later ones would be in the future, which the "
        "orders contract quarantines (default: today)",
    )
    return p


MARKER = ".dropzone-generate"  # in every folder generate writes: files a later generate may replace
_OWN_FILES = ("orders/orders-*.csv", "products/products.csv", "customers/customers.csv")


def _prepare_out(out: Path) -> None:
    """Make ``out`` ready: a new or empty folder is marked as generate's; in the output of an earlier generate its
    files are removed (a smaller run would leave the larger one's last orders files next to its own), nothing else;
    any other non-empty folder is refused, as `dropzone local run --out` refuses one."""
    if outdir.holds_earlier_output(out, MARKER, "an earlier `dropzone generate`"):
        removed = outdir.remove(path for pattern in _OWN_FILES for path in sorted(out.glob(pattern)))
        if removed:
            print(
                f"dropzone generate: note: --out {out}: the earlier generate's {removed} file(s) replaced",
                file=sys.stderr,
            )
    outdir.mark(out, MARKER)  # a file given as --out: NotADirectoryError


def run(args: argparse.Namespace) -> int:
    for flag, value, least in (("--rows", args.rows, 1), ("--files", args.files, 1), ("--seed", args.seed, 0)):
        if value < least:
            raise UsageError(f"{flag} must be at least {least}, got {value}")
    today = datetime.now(UTC).date()
    if args.end_date is not None and args.end_date > today:
        raise UsageError(
            f"--end-date {args.end_date}: after today ({today}, UTC): the last orders would be in the future, which "
            "the orders contract quarantines (order_ts.future); give today or an earlier date"
        )
    out = Path(args.out)
    try:
        _prepare_out(out)
        result = generate(out, args.rows, seed=args.seed, files=args.files, end_date=args.end_date)
    except ValueError as e:
        raise UsageError(str(e)) from None
    except OSError as e:  # e.g. --out names a file, or a folder this user cannot write
        raise UsageError(cannot_write("--out", args.out, e)) from None
    with reader_may_leave():  # `| head`: the files are written, the rest of the list is not wanted
        print(json.dumps(result, indent=2))
    return 0
