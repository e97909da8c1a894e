"""What the API shows of a job's end: ``lastError`` as a user may read it."""

from __future__ import annotations

import asyncio
import time

from litestar import Litestar
from litestar.testing import AsyncTestClient

from imagequeue_common.errors import RetryableJobError
from imagequeue_common.queue.ledger import FinishOp, JobLedger
from imagequeue_common.queue.retry import TRACEBACK_MARK, RetryPolicy
from tests.api.conftest import MakeKey
from tests.api.test_routes import create

Client = AsyncTestClient[Litestar]


def fail(message: str) -> None:
    raise RetryableJobError(message)


def raised(message: str) -> RetryableJobError:
    """The error as a task leaves it: raised, so it carries a traceback and a location."""
    try:
        fail(message)
    except RetryableJobError as exc:
        return exc
    raise AssertionError("fail() returned")


async def test_last_error_of_a_dead_letter_says_it_gave_up_and_hides_internals(
    client: Client, ledger: JobLedger, make_key: MakeKey
) -> None:
    alice = await make_key("alice")
    job_id = (await create(client, alice))["imageJob"]["id"]
    claimed = await ledger.claim("test-worker", 1)
    [job] = claimed.jobs
    assert job.job_id == job_id
    # The worker's own policy decides the end of its last allowed run.
    outcome = RetryPolicy().decide(
        attempts=job.max_attempts, max_attempts=job.max_attempts, error=raised("upstream 502")
    )
    assert TRACEBACK_MARK in outcome.detail
    assert ".py:" in outcome.detail
    assert await ledger.finish([FinishOp(job_id, job.token, outcome.kind, error=outcome.error,
                                         detail=outcome.detail)])  # fmt: skip
    answer = await client.get(f"/api/v1/generations/{job_id}", headers=alice)
    read = answer.json()["data"]
    assert read["state"] == "failed"
    n = job.max_attempts
    assert read["lastError"] == f"RetryableJobError: upstream 502 (gave up after {n} attempts)"


async def test_a_job_taken_back_from_a_dead_worker_shows_its_stall(
    client: Client, ledger: JobLedger, make_key: MakeKey
) -> None:
    # A worker claims the job and dies (it never renews the lease); another worker's beat
    # takes the job back once the lease ran out. The API says so: one stall, no attempt used.
    alice = await make_key("alice")
    job_id = (await create(client, alice))["imageJob"]["id"]
    assert [j.job_id for j in (await ledger.claim("dead-worker", 1)).jobs] == [job_id]
    deadline = time.monotonic() + ledger.settings.lease_ms / 1000 * 5
    while (read := (await client.get(f"/api/v1/generations/{job_id}", headers=alice))
           .json()["data"])["state"] != "waiting":  # fmt: skip
        assert time.monotonic() < deadline, read
        await ledger.recover_stalled()
        await asyncio.sleep(0.1)
    assert (read["stalls"], read["attempts"]) == (1, 0)
