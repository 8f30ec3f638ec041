"""`dropzone generate` (being built: see the open issues)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> argparse.ArgumentParser:
    return sub.add_parser("generate", help="(not built yet)")


def run(args: argparse.Namespace) -> int:
    print("dropzone generate is not built yet")
    return 2
