"""Fixtures of the stub AI server's own tests (the server itself: ``stub_ai`` in tests/conftest)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.support.stub import StubServer


@pytest.fixture
async def client(stub_ai: StubServer) -> AsyncIterator[httpx.AsyncClient]:
    """An async client of the stub (10 s timeout unless a test says otherwise)."""
    async with httpx.AsyncClient(base_url=stub_ai.url, timeout=10) as http:
        yield http
