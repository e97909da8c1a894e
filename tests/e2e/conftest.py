"""A real headless Chromium (Debian's, driven by Playwright; no browser download).

The session installs the ``chromium`` package when it is missing (``tests.support.debian``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, async_playwright

from tests.support.debian import ensure_tool

CHROMIUM = "/usr/bin/chromium"


def ensure_chromium() -> str:
    """Debian's chromium, installed with apt-get if it is not there yet."""
    return ensure_tool(CHROMIUM, "chromium")


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium for the whole session."""
    path = ensure_chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=path, headless=True,
                                                    args=["--no-sandbox"])  # fmt: skip
        yield launched
        await launched.close()
