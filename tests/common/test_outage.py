"""RedisOutage against real clients: one on the test Redis, one on a port nobody serves."""

from __future__ import annotations

import logging

import pytest
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError

from imagequeue_common.embedded_redis import free_port
from imagequeue_common.outage import RedisOutage
from imagequeue_common.redis_conn import command_client
from tests.support.procs import wait_until

log = logging.getLogger("test.outage")


def lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == log.name]


async def test_an_outage_is_one_line_and_its_end_another(
    redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=log.name)
    gone = command_client(f"redis://127.0.0.1:{free_port()}/0")
    outage = RedisOutage("claim", log, retry_s=0.1)
    for _ in range(3):
        with outage:
            await gone.ping()
        assert outage.down
        assert outage.failed_last
    with outage:
        await redis.ping()
    await gone.aclose()
    assert not outage.down
    assert not outage.failed_last
    first, last = lines(caplog)
    assert first.startswith("claim: Redis unreachable (ConnectionError: ")
    assert first.endswith("; retrying every 0.1 s")
    assert last.startswith("claim: Redis reachable again after ")
    assert last.endswith(" s (3 failed tries)")
    assert not any(r.exc_info for r in caplog.records)


async def test_a_refused_command_is_no_outage_and_other_errors_pass(
    redis: Redis, queue_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=log.name)
    key = f"test:{{{queue_name}}}:text"
    await redis.set(key, "not a number")
    outage = RedisOutage("finisher", log, retry_s=0.1)
    for _ in range(2):
        with outage:
            await redis.incr(key)  # Redis answers: ERR value is not an integer
        assert outage.failed_last
        assert not outage.down
    with pytest.raises(ValueError, match="a bug"), outage:
        raise ValueError("a bug")
    refused = lines(caplog)
    assert len(refused) == 2
    assert all(line.startswith("finisher: Redis refused the command") for line in refused)


async def test_the_probe_logs_the_end_without_another_round(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=log.name)
    gone = command_client(f"redis://127.0.0.1:{free_port()}/0")
    client = command_client(redis_url)
    outage = RedisOutage("api", log, retry_s=0.05, ping=client.ping)
    with pytest.raises(RedisConnectionError) as failed:
        await gone.ping()
    assert outage.noted(failed.value)
    assert outage.down

    async def back() -> bool:
        return not outage.down

    await wait_until(back, 10, "the probe to see Redis answer")
    await outage.close()
    await gone.aclose()
    await client.aclose()
    unreachable, reachable = lines(caplog)
    assert unreachable.startswith("api: Redis unreachable (ConnectionError: ")
    assert reachable.startswith("api: Redis reachable again after ")
