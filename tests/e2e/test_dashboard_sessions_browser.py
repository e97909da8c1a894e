"""Dashboard sessions in a real headless Chromium against a running API: a cookie copied
before logout opens nothing after it, and a locked-out login says so."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect
from redis.asyncio import Redis

from imagequeue_common.settings import Settings, replace
from tests.support.api import ApiServer
from tests.support.dashboard import ADMIN, BASE, dashboard_server

pytestmark = pytest.mark.slow


@pytest.fixture
def api(settings: Settings, tmp_path: Path, redis: Redis) -> Iterator[ApiServer]:
    del redis  # cleans this test's keys afterwards
    stack = replace(settings, database_url=f"sqlite:///{tmp_path}/db.sqlite",
                    assets_dir=str(tmp_path / "assets"))  # fmt: skip
    server = dashboard_server(stack, tmp_path / "api.log")
    yield server
    server.stop()


@pytest.fixture
async def contexts(browser: Browser) -> AsyncIterator[list[BrowserContext]]:
    """Browser contexts a test opens (each its own cookie jar); all closed at the end."""
    opened: list[BrowserContext] = []
    yield opened
    for context in opened:
        await context.close()


async def new_page(browser: Browser, contexts: list[BrowserContext]) -> Page:
    context = await browser.new_context()
    contexts.append(context)
    return await context.new_page()


async def plant(page: Page, token: str) -> None:
    """Give ``page``'s browser the session cookie ``token`` (a copy taken elsewhere)."""
    await page.context.add_cookies(
        [{"name": "iq_admin", "value": token, "domain": "127.0.0.1", "path": "/admin"}]
    )


async def log_in(page: Page, api: ApiServer, password: str) -> None:
    await page.goto(f"{api.url}{BASE}/login")
    await page.fill("input[name=username]", ADMIN[0])
    await page.fill("input[name=password]", password)
    await page.click("button:has-text('Log in')")


async def test_a_cookie_copied_before_logout_lands_on_the_login_page(
    browser: Browser, contexts: list[BrowserContext], api: ApiServer
) -> None:
    page = await new_page(browser, contexts)
    await log_in(page, api, ADMIN[1])
    await expect(page.locator("#overview")).to_be_visible()
    [cookie] = [c for c in await page.context.cookies() if c.get("name") == "iq_admin"]
    assert cookie.get("httpOnly") is True
    assert cookie.get("sameSite") == "Strict"
    assert cookie.get("path") == "/admin"
    copied = cookie.get("value", "")

    # The copy works in another browser while the session lives...
    thief = await new_page(browser, contexts)
    await plant(thief, copied)
    await thief.goto(f"{api.url}{BASE}")
    await expect(thief.locator("#overview")).to_be_visible()

    await page.click("button:has-text('Log out')")
    await expect(page.locator("input[name=password]")).to_be_visible()
    await expect(page.locator(".notice")).to_contain_text("Logged out")

    # ...and not after the logout: the open page's next poll and a fresh load land on login.
    await expect(thief.locator("input[name=password]")).to_be_visible(timeout=15_000)
    replay = await new_page(browser, contexts)
    await plant(replay, copied)
    answer = await replay.goto(f"{api.url}{BASE}")
    assert answer is not None
    assert answer.status == 401
    await expect(replay.locator("input[name=password]")).to_be_visible()
    await expect(replay.locator("#overview")).to_have_count(0)


async def test_a_locked_out_login_shows_why(
    browser: Browser, contexts: list[BrowserContext], api: ApiServer
) -> None:
    page = await new_page(browser, contexts)
    for _ in range(4):
        await log_in(page, api, "not-the-password")
        await expect(page.locator(".problem")).to_contain_text("Wrong username or password")
    await log_in(page, api, "not-the-password")
    await expect(page.locator(".problem")).to_contain_text(
        "Too many failed logins for this username or from this address; try again in 15 min"
    )
    await log_in(page, api, ADMIN[1])  # right, but locked: the same page, no way in
    await expect(page.locator(".problem")).to_contain_text("Too many failed logins")
    await expect(page.locator("#overview")).to_have_count(0)
