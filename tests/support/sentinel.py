"""A real Sentinel setup on loopback: a primary, two replicas and three sentinels.

Two replicas, so that after a failover the new primary still has one (an enqueue that
must be confirmed by a replica is refused while there is none).

Each is a ``redis-server`` child in a session of its own, with its own directory (the
sentinels rewrite their configuration files as they learn the topology).
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import redis

from imagequeue_common.embedded_redis import free_port

MASTER = "iqmaster"
DOWN_AFTER_MS = 1000
"""How long the sentinels wait before they call the primary down (the failover follows)."""


class Node:
    """One redis-server child (a data node or a sentinel)."""

    def __init__(self, args: list[str], port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.proc = subprocess.Popen(
            ["redis-server", *args], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, decode_responses=True)

    def wait_answers(self, timeout_s: float = 10) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"redis-server on {self.port} exited; see {self.log}")
            with contextlib.suppress(redis.RedisError), self.client() as client:
                if client.ping():
                    return
            time.sleep(0.05)
        raise AssertionError(f"redis-server on {self.port} did not answer; see {self.log}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def each_until(
    nodes: list[Node], check: Callable[[redis.Redis], bool], timeout_s: float, failure: str
) -> None:
    """Poll each node until ``check`` holds on it, all within ``timeout_s`` (else fail)."""
    deadline = time.monotonic() + timeout_s
    for node in nodes:
        with node.client() as client:
            while not check(client):
                if time.monotonic() > deadline:
                    raise AssertionError(failure)
                time.sleep(0.05)


def _knows_all(sentinel: redis.Redis) -> bool:
    replicas, peers = sentinel.sentinel_slaves(MASTER), sentinel.sentinel_sentinels(MASTER)
    return (
        isinstance(replicas, list)
        and isinstance(peers, list)
        and min(len(replicas), len(peers)) >= 2
    )


class SentinelSet:
    """Primary, two replicas, three sentinels (quorum 2); ``url`` for ``REDIS_URL``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.nodes: list[Node] = []
        self.primary = self._data("primary")
        self.replicas = [self._data(f"replica-{i}", replica_of=self.primary.port)
                         for i in range(2)]  # fmt: skip
        self.sentinels = [self._sentinel(i) for i in range(3)]
        for node in self.nodes:
            node.wait_answers()
        self._wait_replicas_in_sync()
        self._wait_sentinels_see_all()
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        self.url = f"redis+sentinel://{hosts}/{MASTER}/0"

    def _data(self, name: str, replica_of: int | None = None) -> Node:
        port, folder = free_port(), self.root / name
        folder.mkdir(parents=True)
        args = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
                "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
                "--maxmemory-policy", "noeviction",
                "--logfile", str(folder / "redis.log")]  # fmt: skip
        if replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(replica_of)]
        node = Node(args, port, folder / "redis.log")
        self.nodes.append(node)
        return node

    def _sentinel(self, i: int) -> Node:
        port, folder = free_port(), self.root / f"sentinel-{i}"
        folder.mkdir(parents=True)
        conf = folder / "sentinel.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {folder}\nlogfile {folder / 'sentinel.log'}\n"
            f"sentinel monitor {MASTER} 127.0.0.1 {self.primary.port} 2\n"
            f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER} 10000\n"
            f"sentinel parallel-syncs {MASTER} 1\n"
        )
        node = Node([str(conf), "--sentinel"], port, folder / "sentinel.log")
        self.nodes.append(node)
        return node

    def _wait_replicas_in_sync(self) -> None:
        each_until(self.replicas, lambda c: c.info("replication").get("master_link_status")
                   == "up", 20, "a replica did not sync with the primary")  # fmt: skip

    def _wait_sentinels_see_all(self) -> None:
        """Each sentinel knows both replicas and the two other sentinels (else it could
        not agree to a failover)."""
        each_until(self.sentinels, _knows_all, 30, "the sentinels did not discover each other")

    def master_port(self) -> int | None:
        """The port the sentinels name as master now (None: no answer)."""
        with contextlib.suppress(redis.RedisError), self.sentinels[0].client() as client:
            _, port = client.sentinel_get_master_addr_by_name(MASTER)
            return int(port)
        return None

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
