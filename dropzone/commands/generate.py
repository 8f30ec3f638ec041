"""`dropzone generate`: synthetic orders plus the products and customers reference files (see dropzone.generate)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from dropzone.cli import UsageError, cannot_write, date_arg, reader_may_leave
from dropzone.generate import generate


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "generate",
        help="write synthetic orders, products and customers CSV files that pass the contracts",
        description="Write DIR/orders/*.csv, DIR/products/products.csv and DIR/customers/customers.csv.",
    )
    p.add_argument("--rows", type=int, required=True, help="number of order events")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--seed", type=int, default=7, help="random seed (same seed and end date, same files)")
    p.add_argument("--files", type=int, default=5, help="number of chronological order files (default 5)")
    p.add_argument(
        "--end-date",
        type=date_arg,
        default=None,
        metavar="YYYY-MM-DD",
        help="events end before this date (default: today, UTC)",
    )
    return p


def run(args: argparse.Namespace) -> int:
    for flag, value, least in (("--rows", args.rows, 1), ("--files", args.files, 1), ("--seed", args.seed, 0)):
        if value < least:
            raise UsageError(f"{flag} must be at least {least}, got {value}")
    try:
        result = generate(args.out, args.rows, seed=args.seed, files=args.files, end_date=args.end_date)
    except ValueError as e:
        raise UsageError(str(e)) from None
    except OSError as e:  # e.g. --out names a file, or a folder this user cannot write
        raise UsageError(cannot_write("--out", args.out, e)) from None
    with reader_may_leave():  # `| head`: the files are written, the rest of the list is not wanted
        print(json.dumps(result, indent=2))
    return 0
