"""A real Redis Cluster on loopback: three primaries, no replicas, slots spread evenly.

Each node is a ``redis-server --cluster-enabled yes`` child with its own directory; the
cluster bus listens on the node's port + 10000, so the ports are taken below 50000.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from imagequeue_common.embedded_redis import free_port
from tests.support.sentinel import Node, each_until

ON_CLUSTER = os.environ.get("TEST_REDIS_CLUSTER") == "1"
"""The suite runs on a private cluster (``just test-cluster``)."""


def _low_port() -> int:
    while (port := free_port()) >= 50000 or port < 1024:
        pass
    return port


class ClusterSet:
    """Three primaries; ``url`` for ``REDIS_URL`` (every node named)."""

    def __init__(self, root: Path, nodes: int = 3) -> None:
        self.nodes: list[Node] = []
        for i in range(nodes):
            port, folder = _low_port(), root / f"node-{i}"
            folder.mkdir(parents=True)
            args = ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
                    "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                    "--save", "", "--appendonly", "no", "--maxmemory-policy", "noeviction",
                    "--logfile", str(folder / "redis.log")]  # fmt: skip
            self.nodes.append(Node(args, port, folder / "redis.log"))
        for node in self.nodes:
            node.wait_answers()
        created = subprocess.run(
            ["redis-cli", "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-yes"], capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        if created.returncode != 0:
            self.stop()
            raise AssertionError(f"redis-cli --cluster create failed: {created.stdout[-1000:]}")
        self._wait_ok()
        self.url = "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def _wait_ok(self) -> None:
        each_until(self.nodes, lambda c: c.cluster("INFO").get("cluster_state") == "ok", 30,
                   "the cluster did not reach cluster_state:ok")  # fmt: skip

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
