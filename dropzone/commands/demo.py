"""`dropzone demo` (make demo): `dropzone local run` on generated data of the demo size."""

from __future__ import annotations

import argparse
from typing import Any

from dropzone.commands.local import add_run_arguments, run_local


def add_parser(sub: Any) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        "demo",
        help="the whole pipeline locally on generated data: summary + HTML report",
        description="What `make demo` runs: the whole pipeline locally, as `dropzone local run` (same options, "
        "generated data unless --data). It prints a summary and writes an HTML report; exit 0 when a model was "
        "registered, 1 otherwise.",
    )
    add_run_arguments(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    return run_local(args)
