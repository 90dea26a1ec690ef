"""The fault suite's fixtures: a scenario run on a fresh vhost, the figures written at the end."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

import figures
from broker import RabbitNode
from oracle import FaultRun


@pytest.fixture
def run(request: pytest.FixtureRequest, rabbit: RabbitNode, workdir: Path) -> Iterator[FaultRun]:
    """A scenario named after its test, on a vhost of its own; its traffic stopped if the test fails midway."""
    scenario = FaultRun(request.node.name.removeprefix("test_"), workdir, rabbit, rabbit.new_vhost(),
                        order=request.function.__code__.co_firstlineno)
    try:
        yield scenario
    finally:
        scenario.abandon()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Keep this run's figures; with --figures, rewrite the table in docs/guarantees.md."""
    figures.save()
    if figures.BOOK and session.config.getoption("--figures"):
        figures.update_doc()
