"""A real headless Chromium (Debian's, driven by Playwright; no browser download).

The session installs the ``chromium`` package when it is missing (the test machines run as
root); without it the browser tests are skipped with the reason, or fail when ``CI`` is set.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import Browser, async_playwright

CHROMIUM = "/usr/bin/chromium"


def ensure_chromium() -> str:
    """Debian's chromium, installed with apt-get if it is not there yet."""
    if not os.path.exists(CHROMIUM) and shutil.which("apt-get") and os.geteuid() == 0:
        subprocess.run(["apt-get", "install", "-y", "-q", "chromium"], check=False,
                       capture_output=True, timeout=900)  # fmt: skip
    if not os.path.exists(CHROMIUM):
        reason = f"no {CHROMIUM} and it could not be installed with apt-get"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium for the whole session."""
    path = ensure_chromium()
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=path, headless=True,
                                                    args=["--no-sandbox"])  # fmt: skip
        yield launched
        await launched.close()
