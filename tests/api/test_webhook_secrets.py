"""Each API key's webhook secret: made with the key (shown by the CLI once), rotated with a
grace period in which both sign, gone with the key; checked with the ``standardwebhooks``
verifier from PyPI."""

from __future__ import annotations

import argparse
import asyncio
import re
import time

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from redis.asyncio import Redis
from standardwebhooks import Webhook

from imagequeue_api.apikeys import ApiKeyStore
from imagequeue_api.app import create_app
from imagequeue_api.cli_keys import add_key_commands, run_key_command
from imagequeue_common.settings import Settings, replace
from imagequeue_common.webhook_signing import signed_headers

BODY = b'{"event":"completed"}'


async def cli(store: ApiKeyStore, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="imagequeue-api")
    add_key_commands(parser.add_subparsers(dest="command", required=True))
    return await run_key_command(parser.parse_args(argv), store)


def receiver_accepts(secret: str, signing: list[str]) -> bool:
    headers = signed_headers(signing, "msg_1", int(time.time()), BODY)
    try:
        Webhook(secret).verify(BODY, headers)
    except Exception:  # noqa: BLE001 - the verifier's refusal, whatever its type
        return False
    return True


async def test_a_key_is_made_with_its_secret_and_a_rotation_keeps_the_old_for_a_while(
    redis: Redis, queue_name: str
) -> None:
    store = ApiKeyStore(redis, queue_name)
    made = await store.create_key("alice", "regular")
    secrets = store.webhook_secrets
    first = await secrets.signing(made.record.key_id)
    assert first == [made.webhook_secret]
    now = time.time()
    new = await secrets.rotate(made.record.key_id, grace_s=3600, now=now)
    signing = await secrets.signing(made.record.key_id, now=now + 10)
    assert signing == [new, made.webhook_secret]
    # During the grace period a receiver holding either secret accepts every delivery.
    assert receiver_accepts(made.webhook_secret, signing)
    assert receiver_accepts(new, signing)
    # After it, only the new secret signs: the old one's holder refuses.
    later = await secrets.signing(made.record.key_id, now=now + 3601)
    assert later == [new]
    assert not receiver_accepts(made.webhook_secret, later)
    # Revoking the key takes its secrets with it.
    assert await store.revoke(made.record.key_id)
    assert await secrets.signing(made.record.key_id) == []
    with pytest.raises(KeyError):
        await secrets.rotate(made.record.key_id, grace_s=0)


async def test_concurrent_rotations_keep_a_secret_that_really_was_current(
    redis: Redis, queue_name: str
) -> None:
    store = ApiKeyStore(redis, queue_name)
    made = await store.create_key("bob", "bulk")
    key_id = made.record.key_id
    issued = await asyncio.gather(*(store.webhook_secrets.rotate(key_id, 60) for _ in range(5)))
    current, previous = await store.webhook_secrets.signing(key_id)
    # One order of the five: the last is current, the one before it is previous.
    assert current in issued
    assert previous in [made.webhook_secret, *issued]
    assert previous != current
    with pytest.raises(ValueError, match="grace period"):
        await store.webhook_secrets.rotate(key_id, -1)


async def test_the_cli_shows_the_secret_once_and_rotates_it(
    redis: Redis, queue_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ApiKeyStore(redis, queue_name)
    assert await cli(store, "keys", "create", "--user", "carol", "--tier", "premium") == 0
    out = capsys.readouterr().out
    key_id = re.search(r"key_id:\s+(\S+)", out)
    shown = re.search(r"webhook_secret:\s+(whsec_\S+)", out)
    assert key_id
    assert shown
    assert await store.webhook_secrets.signing(key_id.group(1)) == [shown.group(1)]
    assert await cli(store, "keys", "list") == 0
    assert shown.group(1) not in capsys.readouterr().out  # never listed
    assert await cli(store, "keys", "rotate-webhook-secret", key_id.group(1), "--grace", "60") == 0
    rotated = re.search(r"webhook_secret:\s+(whsec_\S+)", capsys.readouterr().out)
    assert rotated
    signing = await store.webhook_secrets.signing(key_id.group(1))
    assert signing == [rotated.group(1), shown.group(1)]
    assert await cli(store, "keys", "rotate-webhook-secret", "0123456789abcdef") == 1
    assert "no key with id" in capsys.readouterr().err


async def test_a_key_s_owner_rotates_its_secret_over_http(
    client: AsyncTestClient[Litestar], redis: Redis, api_settings: Settings
) -> None:
    store = ApiKeyStore(redis, api_settings.queue_name)
    made = await store.create_key("dana", "regular")
    headers = {"Authorization": f"Bearer {made.plaintext}"}
    before = time.time()
    answer = await client.post("/api/v1/webhook-secret/rotate", json={"graceSeconds": 120},
                               headers=headers)  # fmt: skip
    assert answer.status_code == 201, answer.text
    data = answer.json()["data"]
    assert data["webhookSecret"].startswith("whsec_")
    assert int(before) + 120 <= data["previousValidUntil"] <= time.time() + 120
    signing = await store.webhook_secrets.signing(made.record.key_id)
    assert signing == [data["webhookSecret"], made.webhook_secret]
    # Bad input changes nothing; no key, no rotation; the dev key has no secret.
    for body in ({"graceSeconds": -1}, {"graceSeconds": 10**9}, {"grace": 5}):
        refused = await client.post("/api/v1/webhook-secret/rotate", json=body, headers=headers)
        assert refused.status_code == 400, refused.text
    assert await store.webhook_secrets.signing(made.record.key_id) == signing
    assert (await client.post("/api/v1/webhook-secret/rotate", json={})).status_code == 401


async def test_the_dev_key_has_no_secret_to_rotate(api_settings: Settings, redis: Redis) -> None:
    del redis  # cleans this test's keys afterwards
    settings = replace(api_settings, api_dev_key="d" * 32)
    async with AsyncTestClient(create_app(settings)) as client:
        answer = await client.post("/api/v1/webhook-secret/rotate", json={},
                                   headers={"Authorization": f"Bearer {'d' * 32}"})  # fmt: skip
    assert answer.status_code == 409
    assert answer.json()["type"] == "/problems/no-webhook-secret"
