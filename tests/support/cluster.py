"""A real Redis Cluster on loopback: three primaries (each with a replica if asked), slots
spread evenly.

Each node is a ``redis-server --cluster-enabled yes`` child with its own directory.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
from pathlib import Path
from typing import Any

import redis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from imagequeue_common.cluster import cluster_client, is_cluster_client, is_cluster_url
from tests.support.sentinel import Node, each_until

ON_CLUSTER = os.environ.get("TEST_REDIS_CLUSTER") == "1"
"""The suite runs on a private cluster (``just test-cluster``)."""


def _node_port(taken: set[int]) -> int:
    """A port whose bus port (+10000) is free too, both below the ephemeral range (Linux's
    default starts at 32768): a client's outgoing connection cannot take either between
    this choice and the node's start (seen: a bus port taken, the node aborting)."""
    while True:
        port = random.randrange(10_000, 22_000)
        pair = {port, port + BUS_OFFSET}
        if not pair & {p + d for p in taken for d in (0, BUS_OFFSET)} and all(
            _bindable(p) for p in pair
        ):
            return port


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


BUS_OFFSET = 10_000
"""The cluster bus listens on a node's port + 10000."""
NODE_TIMEOUT_MS = 1000
"""How long the other nodes wait before they call a primary failed (its replica then takes
over)."""


class ClusterSet:
    """Three primaries, each with ``replicas`` replicas; ``url`` for ``REDIS_URL`` (every
    node named)."""

    def __init__(self, root: Path, replicas: int = 0) -> None:
        self.nodes: list[Node] = []
        try:
            self._start(root, replicas)
        except BaseException:
            self.stop()  # no node outlives a failed start
            raise
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def _start(self, root: Path, replicas: int) -> None:
        for i in range(3 * (1 + replicas)):
            port, folder = _node_port({n.port for n in self.nodes}), root / f"node-{i}"
            folder.mkdir(parents=True)
            args = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
                    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--save", "",
                    "--appendonly", "no", "--maxmemory-policy", "noeviction",
                    "--logfile", str(folder / "redis.log")]  # fmt: skip
            self.nodes.append(Node(args, port, folder / "redis.log"))
        for node in self.nodes:
            node.wait_answers()
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-replicas", str(replicas), "--cluster-yes"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if created.returncode != 0:
            raise AssertionError(f"redis-cli --cluster create failed: {created.stdout[-1000:]}")
        self._wait_ok()

    def _wait_ok(self) -> None:
        each_until(self.nodes, lambda c: c.cluster("INFO").get("cluster_state") == "ok", 30,
                   "the cluster did not reach cluster_state:ok")  # fmt: skip
        # every replica has its primary's data before anything is written
        each_until(self.nodes, _synced, 30, "a replica did not finish its first sync")

    def primary_of(self, key: str) -> Node:
        """The node that serves ``key``'s slot now (as the live nodes see it)."""
        for node in self.nodes:
            if node.proc.poll() is not None:
                continue
            with node.client() as client:
                slot = int(client.cluster("KEYSLOT", key))
                for start, end, primary, *_ in client.execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        return next(n for n in self.nodes if n.port == int(primary[1]))
        raise AssertionError("no live node to ask")

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()


def _synced(client: redis.Redis) -> bool:
    info = client.info("replication")
    return info["role"] == "master" or info.get("master_link_status") == "up"


def raw_client(url: str) -> Redis:
    """A client of ``url`` (plain or cluster) whose replies stay ``bytes``."""
    if is_cluster_url(url):
        return cluster_client(url, decode_responses=False)
    return Redis.from_url(url)


async def command_calls(redis: Redis, command: str) -> int:
    """How often the server (every primary, on a cluster) has run ``command``."""
    stat = f"cmdstat_{command.lower()}"
    if is_cluster_client(redis):
        per_node = await redis.info("commandstats", target_nodes=RedisCluster.PRIMARIES)
        return sum(int(info.get(stat, {}).get("calls", 0)) for info in per_node.values())
    return int((await redis.info("commandstats")).get(stat, {}).get("calls", 0))


async def every_client(redis: Redis) -> list[dict[str, Any]]:
    """``CLIENT LIST`` of the server (of every primary, on a cluster)."""
    if not is_cluster_client(redis):
        return list(await redis.client_list())
    per_node: dict[str, list[dict[str, Any]]] = await redis.client_list(  # type: ignore[assignment]
        target_nodes=RedisCluster.PRIMARIES
    )
    return [c for clients in per_node.values() for c in clients]
