"""Run the CLI with stdout a pipe its reader has left, as `dropzone ... | head -1` once head has its line."""

from __future__ import annotations

import os
import subprocess
import sys


def to_a_closed_pipe(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """`dropzone ARGV` in a new interpreter, stdout a pipe nobody reads any more; stderr captured."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run(
            [sys.executable, "-m", "dropzone.cli", *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
