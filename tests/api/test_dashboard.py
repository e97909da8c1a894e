"""The dashboard's pages and actions (Litestar's test client, real Redis and SQLite)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from imagequeue_api.app import create_app
from imagequeue_common.contracts import CharacterRef, JobState, PoseRef
from imagequeue_common.generation import add_image_generation_job
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.queue.ledger import FinishOp, JobLedger
from imagequeue_common.settings import Settings, replace
from tests.support.procs import wait_until

Client = AsyncTestClient[Litestar]
ADMIN = ("admin", "admin-password-1")
VIEWER = ("watcher", "viewer-password-1")
BASE = "/admin/queues"


@pytest.fixture
def dash_settings(api_settings: Settings) -> Settings:
    return replace(api_settings, admin_password=ADMIN[1], admin_readonly_username=VIEWER[0],
                   admin_readonly_password=VIEWER[1])  # fmt: skip


@pytest.fixture
async def dash(dash_settings: Settings, redis: object) -> AsyncIterator[Client]:
    del redis
    async with AsyncTestClient(create_app(dash_settings)) as client:
        yield client


async def login(client: Client, who: tuple[str, str]) -> str:
    """Log in; returns the page's CSRF token."""
    answer = await client.post(f"{BASE}/login", data={"username": who[0], "password": who[1]},
                               follow_redirects=False)  # fmt: skip
    assert answer.status_code == 303, answer.text
    page = await client.get(BASE)
    token = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert token is not None
    return token.group(1)


async def queue(broker: EngineBroker, n: int, user: str = "alice") -> list[str]:
    return [
        await add_image_generation_job(broker, CharacterRef(id=f"c{i}", name=f"Char {i}"),
                                       PoseRef(id="pose-standing", name="Standing"), user)
        for i in range(n)
    ]  # fmt: skip


async def test_off_without_a_password(api_settings: Settings, redis: object) -> None:
    async with AsyncTestClient(create_app(api_settings)) as client:
        answer = await client.get(BASE)
        assert answer.status_code == 404
        assert "ADMIN_PASSWORD" in answer.text
        assert (await client.get(f"{BASE}/jobs?state=failed")).status_code == 404


async def test_login_required_and_wrong_password(dash: Client) -> None:
    for path in ("", "/jobs?state=waiting", "/jobs/x", "/api/overview"):
        answer = await dash.get(f"{BASE}{path}")
        assert answer.status_code == 401
        assert 'name="password"' in answer.text  # the login form, not a blank error
    wrong = await dash.post(f"{BASE}/login", data={"username": "admin", "password": "nope"})
    assert wrong.status_code == 401
    assert "Wrong username or password" in wrong.text
    assert (await dash.post(f"{BASE}/actions/pause", data={"csrf": "x"})).status_code == 401


async def test_overview_counts_match_the_engine(
    dash: Client, broker: EngineBroker, ledger: JobLedger
) -> None:
    await queue(broker, 3)
    await login(dash, ADMIN)
    page = await dash.get(BASE)
    assert page.status_code == 200
    assert re.search(r'data-count="waiting">3<', page.text)
    live = (await dash.get(f"{BASE}/api/overview")).json()
    stats = await ledger.stats()
    assert live["counts"] == {s.value: getattr(stats, s.value) for s in JobState}
    assert len(live["minutes"]) == 60
    assert live["paused"] is False


async def test_the_overview_shows_the_busiest_users_to_admins(
    dash: Client, broker: EngineBroker, ledger: JobLedger
) -> None:
    await queue(broker, 4, user="flooder")
    await queue(broker, 1, user="quiet-one")
    await ledger.claim("w", 2)  # the flooder's first and quiet-one's only job: one turn each
    await login(dash, ADMIN)
    page = (await dash.get(BASE)).text
    rows = re.findall(r'jobs\?q=([\w-]+)">[\w-]+</a></td><td>(\d+)</td><td>(\d+)</td>', page)
    assert rows == [("flooder", "3", "1"), ("quiet-one", "0", "1")]
    live = (await dash.get(f"{BASE}/api/overview")).json()
    assert (live["users_waiting"], live["users_active"]) == (1, 2)
    assert "flooder" in live["users_html"]
    await dash.post(
        f"{BASE}/logout", data={"csrf": re.findall(r'name="csrf" value="([^"]+)"', page)[0]}
    )
    await login(dash, VIEWER)
    for text in ((await dash.get(BASE)).text, (await dash.get(f"{BASE}/api/overview")).text):
        assert "flooder" not in text  # user ids are for admins only
        assert "(admins only)" in text


async def test_lists_search_and_job_page(dash: Client, broker: EngineBroker) -> None:
    ids = await queue(broker, 3, user="bob")
    await login(dash, ADMIN)
    listed = (await dash.get(f"{BASE}/jobs?state=waiting")).text
    assert [listed.index(i) for i in ids] == sorted(listed.index(i) for i in ids)  # claim order
    found = (await dash.get(f"{BASE}/jobs?q=bob")).text
    assert all(i in found for i in ids)
    by_character = (await dash.get(f"{BASE}/jobs?q=c1")).text
    assert ids[1] in by_character
    assert ids[0] not in by_character
    page = (await dash.get(f"{BASE}/jobs/{ids[0]}")).text
    assert "Char 0" in page
    assert "waiting" in page
    assert (await dash.get(f"{BASE}/jobs/nope")).status_code == 404


async def test_a_viewer_looks_but_cannot_act(dash: Client, broker: EngineBroker) -> None:
    [job_id] = await queue(broker, 1)
    token = await login(dash, VIEWER)
    assert (await dash.get(f"{BASE}/jobs/{job_id}")).status_code == 200
    page = (await dash.get(f"{BASE}/jobs/{job_id}")).text
    assert "/cancel" not in page  # no action buttons for a viewer
    assert "alice" not in page  # user ids are shown to admins only
    assert "alice" not in (await dash.get(f"{BASE}/jobs?state=waiting")).text
    refused = await dash.post(f"{BASE}/jobs/{job_id}/cancel", data={"csrf": token})
    assert refused.status_code == 403
    assert (await dash.post(f"{BASE}/actions/pause", data={"csrf": token})).status_code == 403


async def test_csrf_and_cross_site_posts_are_refused(
    dash: Client, broker: EngineBroker, ledger: JobLedger
) -> None:
    [job_id] = await queue(broker, 1)
    token = await login(dash, ADMIN)
    assert (await dash.post(f"{BASE}/jobs/{job_id}/cancel", data={})).status_code == 403
    assert (
        await dash.post(f"{BASE}/jobs/{job_id}/cancel", data={"csrf": "forged"})
    ).status_code == 403
    cross = await dash.post(f"{BASE}/jobs/{job_id}/cancel", data={"csrf": token},
                            headers={"Origin": "https://evil.example"})  # fmt: skip
    assert cross.status_code == 403
    assert (await ledger.get_job(job_id)).state == JobState.WAITING  # nothing happened


async def test_actions(dash: Client, broker: EngineBroker, ledger: JobLedger) -> None:
    ids = await queue(broker, 4)
    token = await login(dash, ADMIN)
    claimed = (await ledger.claim("w", 2)).jobs
    failed, done = claimed
    await ledger.finish([FinishOp(failed.job_id, failed.token, "failed", "", "boom"),
                         FinishOp(done.job_id, done.token, "completed", "{}")])  # fmt: skip

    async def act(path: str) -> str:
        answer = await dash.post(f"{BASE}{path}", data={"csrf": token}, follow_redirects=False)
        assert answer.status_code == 303, answer.text
        return str(answer.headers["location"])

    assert "notice=" in await act(f"/jobs/{failed.job_id}/retry")
    assert (await ledger.get_job(failed.job_id)).state == JobState.WAITING
    await ledger.enqueue("later", "imagequeue.generate_image", '{"args": [{}]}', delay_ms=600_000)
    await act("/jobs/later/promote")
    assert (await ledger.get_job("later")).state == JobState.WAITING
    await act(f"/jobs/{ids[3]}/cancel")
    assert (await ledger.get_job(ids[3])).state == JobState.CANCELLED
    await act(f"/jobs/{ids[3]}/remove")
    assert (await dash.get(f"{BASE}/jobs/{ids[3]}")).status_code == 404
    await act("/actions/pause")
    assert (await ledger.stats()).paused is True
    await act("/actions/resume")
    assert (await ledger.stats()).paused is False
    clean = await dash.post(f"{BASE}/actions/clean",
                            data={"csrf": token, "which": "completed", "age": "0"})  # fmt: skip
    assert "Removed 1 completed" in clean.text
    assert (await ledger.stats()).completed == 0


async def test_deadlines_and_the_expired_list(
    dash: Client, broker: EngineBroker, ledger: JobLedger
) -> None:
    aria, pose = CharacterRef(id="aria", name="Aria"), PoseRef(id="pose-standing", name="Standing")
    late = await add_image_generation_job(broker, aria, pose, "u", start_deadline_s=0.02)
    kept = await add_image_generation_job(
        broker, CharacterRef(id="bo", name="Bo"), pose, "u", start_deadline_s=3600
    )
    start_by = (await ledger.get_job(late)).start_by
    assert start_by is not None

    async def expired() -> bool:
        await ledger.recover_stalled()  # the heartbeat's sweep
        return (await ledger.get_job(late)).state == JobState.EXPIRED

    await wait_until(expired, 5, "the late job to expire")
    await login(dash, ADMIN)
    overview = (await dash.get(BASE)).text
    assert re.search(r'data-count="expired">1<', overview)
    listed = (await dash.get(f"{BASE}/jobs?state=expired")).text
    assert late in listed
    assert kept not in listed
    waiting = (await dash.get(f"{BASE}/jobs?state=waiting")).text
    assert re.search(r"start by in (59|60) min", waiting)
    page = (await dash.get(f"{BASE}/jobs/{late}")).text
    assert re.search(r'id="job-start-by">[^<]*\(missed: it never ran\)', page)
    live = (await dash.get(f"{BASE}/api/overview")).json()
    assert live["counts"]["expired"] == 1
