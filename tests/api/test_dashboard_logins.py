"""Dashboard login throttling over real HTTP against a real API process and Redis."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from imagequeue_common.settings import Settings
from tests.support.api import ApiServer
from tests.support.dashboard import ADMIN, BASE, VIEWER, dashboard_server, try_login
from tests.support.procs import wait_until

pytestmark = pytest.mark.slow
PER_ADDRESS = 12
WRONG = ("admin", "not-the-password")


@pytest.fixture
def api(stack: Settings, tmp_path: Path) -> Iterator[ApiServer]:
    server = dashboard_server(stack, tmp_path / "api.log",
                              admin_login_max_failures_per_address=PER_ADDRESS)  # fmt: skip
    yield server
    server.stop()


def from_address(address: str) -> dict[str, str]:
    # uvicorn takes X-Forwarded-For from loopback (FORWARDED_ALLOW_IPS): a proxy's client.
    return {"X-Forwarded-For": address}


def assert_locked(answer: httpx.Response) -> None:
    assert answer.status_code == 429, answer.text
    assert 840 <= int(answer.headers["retry-after"]) <= 900  # ADMIN_LOGIN_LOCKOUT_S: 15 min
    assert "Too many failed logins" in answer.text
    assert 'name="password"' in answer.text  # the login page, saying why
    assert "set-cookie" not in answer.headers


async def test_five_wrong_passwords_lock_the_username_right_or_wrong_alike(
    api: ApiServer,
) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
        for _ in range(4):
            answer = await try_login(client, WRONG)
            assert answer.status_code == 401
            assert "Wrong username or password" in answer.text
        assert_locked(await try_login(client, WRONG))  # the fifth locks, and says so
        wrong, right = await try_login(client, WRONG), await try_login(client, ADMIN)
        assert_locked(wrong)
        assert_locked(right)  # no oracle: the right password gets the same answer
        assert wrong.text == right.text
        # From another address too; but the other login is not locked out.
        assert_locked(await try_login(client, ADMIN, headers=from_address("10.1.1.1")))
        assert (await try_login(client, VIEWER)).status_code == 303
    log = api.log_path.read_text()
    assert "wrong password for 'admin' from 127.0.0.1; locked for 900 s" in log
    assert log.count("dashboard login: wrong password for 'admin' from 127.0.0.1") == 5
    assert WRONG[1] not in log
    assert ADMIN[1] not in log


async def test_an_address_is_locked_whatever_the_username(api: ApiServer) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
        attacker = from_address("10.2.2.2")
        codes = [(await try_login(client, (f"user-{i}", "guess"), attacker)).status_code
                 for i in range(PER_ADDRESS)]  # fmt: skip
        assert codes == [401] * (PER_ADDRESS - 1) + [429]
        assert_locked(await try_login(client, VIEWER, headers=attacker))
        assert_locked(await try_login(client, ("user-0", "guess"), headers=attacker))
        # Another address, and those usernames (one failure each) are fine.
        other = from_address("10.2.2.3")
        assert (await try_login(client, VIEWER, headers=other)).status_code == 303
        assert (await try_login(client, ("user-0", "guess"), other)).status_code == 401


async def test_a_right_password_clears_the_username_count(api: ApiServer) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
        # Spread over addresses so the address limit stays out of the way.
        for round_ in range(3):
            where = from_address(f"10.3.3.{round_}")
            codes = [(await try_login(client, WRONG, where)).status_code for _ in range(4)]
            assert codes == [401] * 4
            assert (await try_login(client, ADMIN, headers=where)).status_code == 303


async def test_a_lock_ends_after_the_lockout(stack: Settings, tmp_path: Path) -> None:
    api = dashboard_server(stack, tmp_path / "api.log", admin_login_max_failures=2,
                           admin_login_lockout_s=1.0)  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
            assert (await try_login(client, WRONG)).status_code == 401
            locked = await try_login(client, WRONG)
            assert locked.status_code == 429
            assert locked.headers["retry-after"] == "1"

            async def let_in() -> bool:
                answer = await try_login(client, ADMIN)
                return answer.status_code == 303

            await wait_until(let_in, 10, "the lockout to end", poll_s=0.1)
    finally:
        api.stop()


async def test_bad_forms_are_refused_before_anything_counts(api: ApiServer) -> None:
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
        long = await try_login(client, ("admin", "x" * 5000))
        assert long.status_code == 400
        odd = await client.post(
            f"{BASE}/login",
            content=b"username=%FF%FE&password=%00",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert odd.status_code in (400, 401)
        # Those did not use up the admin's tries.
        codes = [(await try_login(client, WRONG)).status_code for _ in range(5)]
        assert codes == [401] * 4 + [429]
