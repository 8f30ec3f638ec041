"""The ``dropzone`` command: one sub-command per module under ``dropzone.commands``.

Exit codes: 0 success, 1 the work found a problem (e.g. a file was quarantined), 2 usage or contract error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any

from dropzone.contract import ContractError

# Sub-command name → module in dropzone.commands exposing add_parser(subparsers) and run(args) -> int.
COMMANDS = ("validate", "generate", "demo", "local", "status")


class UsageError(Exception):
    """Bad command-line input the user can fix; printed without a traceback, exit 2."""


class CommandParser(argparse.ArgumentParser):
    """A sub-command's parser: it refuses arguments it does not know itself, so the error shows its usage.

    argparse hands a sub-command's unknown arguments back to the top-level parser, whose error would show
    ``usage: dropzone [-h] COMMAND ...`` instead of the usage of the command that was mistyped.
    """

    def parse_known_args(self, args: Iterable[str] | None = None, namespace: Any = None) -> tuple[Any, list[str]]:
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras


@contextmanager
def reader_may_leave() -> Iterator[None]:
    """Print to stdout in the block for a reader that may stop reading (``dropzone ... | head -1``): a closed pipe
    ends the output quietly instead of with a BrokenPipeError traceback. As Python's signal docs advise, stdout then
    points at devnull, so later prints and the flush at exit do not fail again; the command goes on and its exit
    code still says what the work found."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def say(text: str) -> None:
    """Print one line (or several) now, for a reader that may leave (:func:`reader_may_leave`)."""
    with reader_may_leave():
        print(text, flush=True)


def cannot_write(flag: str, path: object, error: OSError) -> str:
    """The one-line error for an output folder that cannot be created or written (``--out``)."""
    where = f" ({error.filename})" if error.filename else ""
    return f"{flag} {path}: cannot write there: {error.strerror or error}{where}"


def date_arg(text: str) -> date:
    """The type of a date flag: a bad value is an argparse error naming the flag and the format."""
    try:
        return datetime.strptime(text, "%Y-%m-%d").date()
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (YYYY-MM-DD)") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dropzone",
        description="Validate data files against their contract and run the dropzone pipeline, locally or on AWS.",
        epilog="Exit codes: 0 success, 1 the work found a problem, 2 usage or contract error.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=CommandParser)
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
        command = " ".join([args.command, *([args.action] if getattr(args, "action", None) else [])])
        print(f"dropzone {command}: error: {e}", file=sys.stderr)  # as argparse names it: `dropzone local up`
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # python -m dropzone.cli
    from dropzone import cli  # the module the commands import, not this __main__ copy: their UsageError is its

    sys.exit(cli.main())
