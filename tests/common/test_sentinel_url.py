"""``REDIS_URL=redis+sentinel://…``: what it names, and a precise error for what it cannot."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from imagequeue_common.errors import QueueUnavailableError, SettingsError
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.queue.scripts import AUTO_ACKS, ReplicaAckError
from imagequeue_common.sentinel import SentinelTarget, parse_sentinel_url
from imagequeue_common.settings import Settings, load_settings, replace
from tests.support.tasks import RECORD, register_test_tasks


def test_a_full_sentinel_url() -> None:
    url = "redis+sentinel://app:s%40cret@10.0.0.1:26379,[::1]:26380/jobs/2?sentinel_password=x&ssl=true"
    assert parse_sentinel_url(url) == SentinelTarget(
        sentinels=(("10.0.0.1", 26379), ("::1", 26380)), master="jobs", db=2,
        username="app", password="s@cret", sentinel_password="x", ssl=True,  # noqa: S106
    )  # fmt: skip
    assert parse_sentinel_url("redis+sentinel://h:1/m") == SentinelTarget((("h", 1),), "m")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel:///m", "name at least one sentinel"),
        ("redis+sentinel://h/m", "'h' is not host:port"),
        ("redis+sentinel://h:0/m", "'h:0' is not host:port"),
        ("redis+sentinel://h:1", "the path is /master-name"),
        ("redis+sentinel://h:1/m/x", "the database must be a number"),
        ("redis+sentinel://h:1/m/0/1", "the path is /master-name"),
        ("redis+sentinel://h:1/m?colour=red", "unknown option(s) ['colour']"),
    ],
)
def test_a_bad_sentinel_url_says_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(SettingsError, match=None) as raised:
        load_settings({"REDIS_URL": url})
    assert says in str(raised.value)


def test_the_password_stays_out_of_the_message() -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings({"REDIS_URL": "redis+sentinel://u:hunter2@h:1"})
    assert "hunter2" not in str(raised.value)


def test_replica_acknowledgement_is_on_by_default_with_sentinel_only() -> None:
    assert load_settings({"REDIS_URL": "redis+sentinel://h:1/m"}).replicas_ack == 1
    assert load_settings({"REDIS_URL": "redis://h:1/0"}).replicas_ack == 0
    assert (
        load_settings({"REDIS_URL": "redis://h:1/0", "REDIS_MIN_REPLICAS_ACK": "2"}).replicas_ack
        == 2
    )
    with pytest.raises(SettingsError, match="REDIS_MIN_REPLICAS_ACK must be -1"):
        load_settings({"REDIS_MIN_REPLICAS_ACK": "-2"})


async def test_an_enqueue_no_replica_confirms_is_refused(redis: Redis, settings: Settings) -> None:
    # The suite's Redis (or each primary of its cluster) has no replica: WAIT 1 gets 0
    # within the 50 ms.
    strict = replace(settings, redis_min_replicas_ack=1, redis_replica_ack_ms=50)
    broker = EngineBroker(strict, strict.redis_url_or_default)
    register_test_tasks(broker)
    await broker.startup()
    try:
        with pytest.raises(QueueUnavailableError) as raised:
            await broker.submit(RECORD, "unconfirmed", [], {})
        assert isinstance(raised.value.__cause__, ReplicaAckError)
        assert "not confirmed by 1 replica(s) within 50 ms" in str(raised.value)
        # Refused is not "not written": the primary has it (a character route that
        # answers 503 removes its character, and the job then finds nobody to serve).
        assert await broker.ledger.get_job("unconfirmed")
    finally:
        await broker.shutdown()


def test_replica_acknowledgement_on_a_cluster_is_per_queue_by_default() -> None:
    cluster = "redis+cluster://h:1"
    assert load_settings({"REDIS_URL": cluster}).replicas_ack == AUTO_ACKS
    assert load_settings({"REDIS_URL": cluster, "REDIS_MIN_REPLICAS_ACK": "1"}).replicas_ack == 1
