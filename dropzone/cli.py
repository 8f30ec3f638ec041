"""The ``dropzone`` command: one sub-command per module under ``dropzone.commands``.

Exit codes: 0 success, 1 the work found a problem (e.g. a file was quarantined), 2 usage or contract error.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from dropzone.contract import ContractError

# Sub-command name → module in dropzone.commands exposing add_parser(subparsers) and run(args) -> int.
COMMANDS = ("validate", "generate", "demo", "local", "status")


class UsageError(Exception):
    """Bad command-line input the user can fix; printed without a traceback, exit 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dropzone",
        description="Validate data files against their contract and run the dropzone pipeline, locally or on AWS.",
        epilog="Exit codes: 0 success, 1 the work found a problem, 2 usage or contract error.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = importlib.import_module(f"dropzone.commands.{name}")
        command = module.add_parser(sub)
        command.set_defaults(run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (ContractError, UsageError) as e:
        print(f"dropzone {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
