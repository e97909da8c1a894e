"""Fixtures for tests that run real worker processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.procs import WorkerProcess


@pytest.fixture
def workers() -> Iterator[list[WorkerProcess]]:
    """Worker processes a test starts; every one is stopped at the end of the test."""
    started: list[WorkerProcess] = []
    yield started
    for proc in started:
        proc.stop()
