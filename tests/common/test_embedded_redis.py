"""The private redis-server that `just up` and the tests start when none is given."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from imagequeue_common.embedded_redis import EmbeddedRedis, answers, find_redis_server


def test_starts_answers_and_stops(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path, persistent=True)
    url = server.start()
    try:
        client = redis.Redis.from_url(url)
        assert client.ping()
        assert client.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        assert client.config_get("appendonly")["appendonly"] == "yes"
        client.close()
    finally:
        server.stop()
    assert not answers("127.0.0.1", server.port)
    server.stop()  # idempotent


def test_a_binary_is_found() -> None:
    assert Path(find_redis_server()).exists()


def test_a_taken_port_is_a_clear_error(tmp_path: Path) -> None:
    first = EmbeddedRedis(tmp_path / "a")
    first.start()
    try:
        second = EmbeddedRedis(tmp_path / "b", port=first.port)
        with pytest.raises(Exception, match="redis-server"):
            second.start(timeout_s=3)
    finally:
        first.stop()
