"""Output folders a command writes into and may later reuse.

A command marks every folder it writes with its own marker file. A later run of the same command may replace what
the earlier one wrote there, and only that; a non-empty folder without the marker is refused, so a file of the user's
is never replaced. `dropzone generate` and `dropzone local run`/`local up` use this, each with its own marker.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path


def holds_earlier_output(out: Path, marker: str, owner: str) -> bool:
    """True when ``out`` is a non-empty folder marked by an earlier run of ``owner`` (e.g. "an earlier run"); False
    when it is missing or empty. Any other non-empty folder is a ValueError naming it."""
    if not (out.is_dir() and any(out.iterdir())):
        return False
    if not (out / marker).is_file():
        raise ValueError(f"--out {out}: not empty and not the output of {owner}; choose a new or an empty folder")
    return True


def remove(paths: Iterable[Path]) -> int:
    """Delete each path that exists, a folder with all it holds; returns how many were deleted."""
    removed = 0
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed += 1
    return removed


def mark(out: Path, marker: str, content: str = "") -> None:
    """Create ``out`` when missing and write the marker that lets a later run of the same command reuse it. OSError
    when it cannot (a file given as the folder, no permission): the caller words it with `cli.cannot_write`."""
    if not out.exists():
        out.mkdir(parents=True)
    (out / marker).write_text(content)  # under a file given as the folder: NotADirectoryError
