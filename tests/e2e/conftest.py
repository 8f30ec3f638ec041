"""Fixtures of the local runtime's tests: an embedded AWS API with the toy template deployed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from dropzone.local.server import EmbeddedAws, embedded_aws
from dropzone.local.stack import Stack, deploy

TOY_TEMPLATE = Path(__file__).parent / "toy" / "template.yaml"


@pytest.fixture
def aws() -> Iterator[EmbeddedAws]:
    with embedded_aws() as api:
        yield api


@pytest.fixture
def toy_stack(aws: EmbeddedAws) -> Stack:
    return deploy(aws, TOY_TEMPLATE, stack_name="toy")
