"""The peers our benchmarks run beside us (``bench/peers/``): Fastify + BullMQ doing our
``POST /api/v1/characters`` route's work (``api.js``), installed from the npm registry by
the benchmark itself (``npm ci`` into ``bench/peers/node_modules`` on first use, from the
committed lockfile), on the same kind of private Redis and SQLite as ours."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from bench.procs import stop, wait_for_line
from imagequeue_api.apikeys import ApiKeyStore
from imagequeue_common.embedded_redis import EmbeddedRedis, free_port
from imagequeue_common.redis_conn import command_client
from imagequeue_common.store import open_store

PEERS = Path(__file__).resolve().parent / "peers"
LUA_DIR = Path(__file__).resolve().parents[1] / "packages/api/src/imagequeue_api/lua"
QUEUE = "images"


def ensure_installed() -> str:
    """``node``, with the peers' packages installed (``npm ci`` when missing)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        sys.exit("the peers need Node.js and npm (apt-get install nodejs npm)")
    if not (PEERS / "node_modules" / "bullmq").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=PEERS, check=True,
                       capture_output=True, timeout=600)  # fmt: skip
    return node


async def make_key(redis_url: str, user: str = "bench") -> str:
    """A real API key of a premium user, made as ``imagequeue-api keys create`` makes one:
    both services look it up the same way."""
    client = command_client(redis_url)
    try:
        plaintext, _ = await ApiKeyStore(client, QUEUE).create(user, "premium", "bench")
    finally:
        await client.aclose()
    return plaintext


async def migrate(database_url: str) -> None:
    """Our schema and poses in a new database (the peer inserts into the same tables)."""
    store = await open_store(database_url)
    await store.close()


def peer_created(db: Path, redis_url: str) -> dict[str, int]:
    """Characters in the peer's database and jobs waiting in its BullMQ queue."""
    with sqlite3.connect(db) as conn:
        characters = int(conn.execute("SELECT COUNT(*) FROM characters").fetchone()[0])

    async def waiting() -> int:
        client = command_client(redis_url)
        try:
            wait = int(await client.llen(f"peer:{QUEUE}:wait"))
            return wait + int(await client.zcard(f"peer:{QUEUE}:prioritized"))
        finally:
            await client.aclose()

    return {"characters": characters, "queued_jobs": asyncio.run(waiting())}


@contextlib.contextmanager
def peer_server(
    tmp: Path, processes: int, limits: dict[str, str]
) -> Iterator[tuple[str, str, str, Callable[[], None]]]:
    """The peer API on a private Redis and SQLite: its URL, Redis's URL, the key to call it
    with and a function stopping it, once every process listens."""
    node = ensure_installed()
    redis = EmbeddedRedis(tmp / "redis")
    url = redis.start()
    db = tmp / "b.db"
    asyncio.run(migrate(f"sqlite:///{db}"))
    key = asyncio.run(make_key(url))
    port = free_port()
    env = {**os.environ, **limits, "REDIS_URL": url, "API_PORT": str(port),
           "QUEUE_NAME": QUEUE, "API_PROCESSES": str(processes), "PEER_DB": str(db),
           "IQ_LUA_DIR": str(LUA_DIR)}  # fmt: skip
    log = tmp / "peer.log"
    with log.open("wb") as out:
        peer = subprocess.Popen([node, str(PEERS / "api.js")], env=env, stdout=out,
                                stderr=subprocess.STDOUT)  # fmt: skip
    try:
        wait_for_line(log, f"all {processes} peer processes ready", peer, "the peer")
        yield f"http://127.0.0.1:{port}", url, key, lambda: stop(peer, timeout_s=30)
    finally:
        stop(peer, timeout_s=30)
        redis.stop()
