"""Reliability suites: each test records its figures; they are printed at the end of the run (with or without -s)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from moto import mock_aws

FIGURES = pytest.StashKey[dict[str, dict[str, Any]]]()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Callable[[str, dict[str, Any]], None]:
    """``figures(suite, {...})`` keeps a suite's figures for the terminal summary."""
    table = request.config.stash.setdefault(FIGURES, {})

    def record(suite: str, values: dict[str, Any]) -> None:
        table[suite] = values

    return record


@pytest.fixture
def moto_stack(aws_env: None) -> Iterator[None]:
    with mock_aws():
        yield


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    table = config.stash.get(FIGURES, {})
    if not table:
        return
    terminalreporter.section("reliability figures")
    for suite, values in table.items():
        terminalreporter.write_line(f"{suite}:")
        for name, value in values.items():
            terminalreporter.write_line(f"    {name:<44} {value}")
