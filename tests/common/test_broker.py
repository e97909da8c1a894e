"""The broker's client side: kicks, labels, the seed's helpers, bad input refused."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from redis.asyncio import Redis
from taskiq.exceptions import SendTaskError
from taskiq.message import TaskiqMessage

from imagequeue_common.contracts import CharacterRef, JobState, PoseRef, Priority
from imagequeue_common.errors import DuplicateJobError, InvalidJobError
from imagequeue_common.generation import add_image_generation_job, get_queue_stats
from imagequeue_common.queue.broker import EngineBroker
from imagequeue_common.queue.formatter import MsgspecFormatter
from tests.support.tasks import RECORD

ARIA = CharacterRef(id="693db123", name="Aria Voss")
POSE = PoseRef(id="p1", name="Standing")


async def count_keys(redis: Redis, queue: str) -> int:
    return len([k async for k in redis.scan_iter(match=f"*{{{queue}}}*")])


async def test_add_image_generation_job_queues_with_priority(broker: EngineBroker) -> None:
    job_id = await add_image_generation_job(broker, ARIA, POSE, "user-1", "high")
    assert job_id.startswith("img-693db123-")
    job = await broker.ledger.get_job(job_id)
    assert (job.state, job.priority, job.user) == (JobState.WAITING, Priority.HIGH, "user-1")
    args = msgspec.json.decode(job.payload)["args"][0]
    assert args == {"character_id": "693db123", "character_name": "Aria Voss", "pose_id": "p1",
                    "pose_name": "Standing", "user_id": "user-1", "quality": "hq"}  # fmt: skip


async def test_get_queue_stats_has_the_seeds_shape(broker: EngineBroker) -> None:
    await add_image_generation_job(broker, ARIA, POSE, "u", "low")
    assert await get_queue_stats(broker) == {
        "waiting": 1, "active": 0, "completed": 0, "failed": 0, "delayed": 0, "total": 1,
    }  # fmt: skip


async def test_unknown_priority_is_refused_by_the_helper(
    broker: EngineBroker, redis: Redis, queue_name: str
) -> None:
    with pytest.raises(InvalidJobError, match="unknown priority 'urgent'"):
        await add_image_generation_job(broker, ARIA, POSE, "u", "urgent")
    assert await count_keys(redis, queue_name) == 0


@pytest.mark.parametrize(
    ("labels", "kwargs", "message"),
    [
        ({"priority": "urgent"}, {}, "unknown priority 'urgent'"),
        ({"delay": -5}, {}, "delay must be 0 to 1000000000 seconds, got '-5'"),
        ({"delay": "inf"}, {}, "delay must be 0 to 1000000000 seconds"),
        ({"start_deadline": "soon"}, {}, "start_deadline must be a number of seconds"),
        ({"start_deadline": -1}, {}, "start_deadline must be 0 to"),
        ({"dedup_key": "k" * 65}, {}, "label dedup_key must be at most 64 characters"),
        ({"max_attempts": "many"}, {}, "must be a whole number"),
        ({}, {"value": object()}, "not JSON-serialisable"),
    ],
)
async def test_a_bad_kick_is_refused_and_writes_nothing(
    broker: EngineBroker,
    redis: Redis,
    queue_name: str,
    labels: dict[str, Any],
    kwargs: dict[str, Any],
    message: str,
) -> None:
    task = broker.find_task(RECORD)
    assert task is not None
    with pytest.raises(SendTaskError) as caught:
        await task.kicker().with_labels(**labels).kiq(**kwargs)
    assert isinstance(caught.value.__cause__, InvalidJobError)
    assert message in str(caught.value.__cause__)
    assert await count_keys(redis, queue_name) == 0


async def test_delay_label_makes_a_delayed_job(broker: EngineBroker) -> None:
    task = broker.find_task(RECORD)
    assert task is not None
    sent = await task.kicker().with_labels(delay=30).kiq()
    job = await broker.ledger.get_job(sent.task_id)
    assert job.state is JobState.DELAYED
    assert job.due_at is not None
    assert 29_900 <= job.due_at - job.created_at <= 30_100


@pytest.mark.parametrize(
    ("character", "user"),
    [
        (CharacterRef(id="../../etc", name="x"), "u"),
        (CharacterRef(id="ok", name=""), "u"),
        (ARIA, ""),
    ],
)
async def test_bad_payload_fields_are_refused(
    broker: EngineBroker, redis: Redis, queue_name: str, character: CharacterRef, user: str
) -> None:
    with pytest.raises(InvalidJobError):
        await add_image_generation_job(broker, character, POSE, user)
    assert await count_keys(redis, queue_name) == 0


async def test_a_taken_job_id_is_refused(broker: EngineBroker) -> None:
    await add_image_generation_job(broker, ARIA, POSE, "u", job_id="fixed-id")
    with pytest.raises(DuplicateJobError):
        await add_image_generation_job(broker, ARIA, POSE, "u", job_id="fixed-id")


def test_formatter_round_trip() -> None:
    formatter = MsgspecFormatter()
    message = TaskiqMessage(
        task_id="t",
        task_name="n",
        labels={"priority": "high", "timeout": "30", "urgent": "True", "any": "x"},
        labels_types={"priority": 3, "timeout": 2, "urgent": 5, "any": 1},
        args=[1, {"a": [1, 2]}],
        kwargs={"k": "v"},
    )
    sent = formatter.dumps(message)
    back = formatter.loads(sent.message)
    assert back.labels_types == {"timeout": 2, "urgent": 5}  # strings need no type
    back.parse_labels()
    message.parse_labels()
    assert back.model_dump(exclude={"labels_types"}) == message.model_dump(exclude={"labels_types"})
    assert back.labels == {"priority": "high", "timeout": 30, "urgent": True, "any": "x"}
