"""The multiplexed connection (``imagequeue_common.mux``) against real redis-servers: replies
matched to their callers, redis-py's reply shapes and errors, restarts, a server that stops
answering, passwords, unix sockets, and the commands that must not share a connection."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import hiredis
import pytest
from redis.asyncio import BlockingConnectionPool, Redis
from redis.exceptions import AuthenticationError, DataError, NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from imagequeue_common.embedded_redis import EmbeddedRedis, find_redis_server, free_port
from imagequeue_common.mux import Mux, MuxRedis
from imagequeue_common.redis_conn import command_client


@pytest.fixture
def client(redis_url: str) -> MuxRedis:
    made = command_client(redis_url)
    if not isinstance(made, MuxRedis) or made.mux is None:
        pytest.skip("no multiplexed connection for this Redis (Sentinel or Cluster)")
    return made


async def test_every_caller_gets_its_own_reply_and_errors_stay_with_theirs(
    client: MuxRedis, queue_name: str
) -> None:
    keys = [f"{queue_name}:{i}" for i in range(2000)]
    await asyncio.gather(*(client.set(k, f"v{i}") for i, k in enumerate(keys)))

    async def read(i: int) -> object:
        if i % 7 == 0:  # a wrong-type command in the middle of the batch
            try:
                return await client.hget(keys[i], "f")
            except ResponseError as exc:
                return exc
        return await client.get(keys[i])

    replies = await asyncio.gather(*(read(i) for i in range(len(keys))))
    for i, reply in enumerate(replies):
        if i % 7 == 0:
            assert isinstance(reply, ResponseError)
            assert "WRONGTYPE" in str(reply)
        else:
            assert reply == f"v{i}"
    await client.delete(*keys)
    await client.aclose()


async def test_replies_have_the_shapes_of_redis_py(
    client: MuxRedis, redis_url: str, queue_name: str
) -> None:
    plain = Redis.from_url(redis_url, decode_responses=True)
    k = f"{queue_name}:shape"
    await plain.hset(f"{k}:h", mapping={"a": "1", "b": "2"})
    await plain.zadd(f"{k}:z", {"x": 1.5, "y": 2})
    await plain.sadd(f"{k}:s", "p", "q")
    await plain.xadd(f"{k}:x", {"f": "v"}, id="1-1")
    await plain.hset(f"{k}:h", "n", "0")
    await plain.set(f"{k}:str", "v")
    script = "return {1, 'two', {3, false}, redis.call('HGET', KEYS[1], 'a')}"

    async def everything(c: Redis) -> list[object]:
        return [
            await c.hgetall(f"{k}:h"),
            await c.hmget(f"{k}:h", ["a", "missing", "b"]),
            await c.zscore(f"{k}:z", "x"),
            await c.zrange(f"{k}:z", 0, -1, withscores=True),
            await c.zrank(f"{k}:z", "y"),
            await c.smembers(f"{k}:s"),
            await c.xrange(f"{k}:x"),
            await c.exists(f"{k}:h", f"{k}:nothing"),
            await c.hincrby(f"{k}:h", "n", 0),
            await c.eval(script, 1, f"{k}:h"),
            await c.set(f"{k}:str", "v", nx=True),
            await c.get(f"{k}:missing"),
        ]

    assert await everything(client) == await everything(plain)
    await plain.delete(*(f"{k}:{s}" for s in ("h", "z", "s", "x", "str")))
    await plain.aclose()
    await client.aclose()


async def test_scripts_reload_after_a_script_flush(client: MuxRedis, queue_name: str) -> None:
    script = client.register_script("return ARGV[1] .. '!'")
    assert await script(args=["a"]) == "a!"
    await client.script_flush()  # as a Redis restart leaves it: EVALSHA answers NOSCRIPT
    with pytest.raises(NoScriptError):
        await client.evalsha(script.sha, 0, "b")
    assert await script(args=["b"]) == "b!"
    await client.aclose()


async def test_blocking_waits_and_pipelines_keep_connections_of_their_own(
    client: MuxRedis, queue_name: str
) -> None:
    key = f"{queue_name}:list"

    async def push_later() -> None:
        await asyncio.sleep(0.2)
        await client.rpush(key, "x")

    async def pop() -> object:
        return await client.blpop([key], timeout=5)

    waiter = asyncio.create_task(pop())
    # While the BLPOP blocks, the muxed commands still answer at once.
    started = time.monotonic()
    for _ in range(20):
        assert await client.ping()
    assert time.monotonic() - started < 0.5
    await push_later()
    assert await waiter == (key, "x")
    async with client.pipeline(transaction=True) as pipe:
        pipe.set(f"{key}:a", "1")
        pipe.incr(f"{key}:a")
        assert await pipe.execute() == [True, 2]
    await client.delete(f"{key}:a")
    await client.aclose()


def test_one_client_serves_several_event_loops(redis_url: str, queue_name: str) -> None:
    # One client, closed at the end of each asyncio.run and used again in the next.
    made = command_client(redis_url)
    key = f"{queue_name}:loop"

    async def write() -> None:
        await made.set(key, "1")
        await made.aclose()  # closed, but still usable: the next call connects again

    async def read() -> object:
        value = await made.get(key)
        await made.delete(key)
        await made.aclose()
        return value

    asyncio.run(write())
    assert asyncio.run(read()) == "1"


async def test_a_restarted_redis_is_reconnected_without_an_error(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "r")
    made = command_client(server.start())
    try:
        await made.set("k", "before")
        server.stop()
        server.start()
        # Its connection is dead; the first command finds out, and its one retry on a fresh
        # connection answers.
        assert await made.get("k") is None
        await made.set("k", "after")
        assert await made.get("k") == "after"
    finally:
        await made.aclose()
        server.stop()


async def test_a_server_that_stops_answering_times_out() -> None:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(-1)  # takes everything, answers nothing
        writer.close()

    silent = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    mux = Mux({"host": "127.0.0.1", "port": port}, 2, stall_s=0.4)
    started = time.monotonic()
    with pytest.raises(RedisTimeoutError, match=r"no reply from Redis for 0\.4 s"):
        await mux.call(hiredis.pack_command(("PING",)))
    assert time.monotonic() - started < 2
    mux.close()
    silent.close()
    await silent.wait_closed()


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


@pytest.fixture
def guarded() -> Iterator[tuple[int, Path]]:
    """A redis-server with a password, on TCP and on a unix socket (in a short path: a
    socket's path has at most 107 bytes)."""
    tmp = Path(tempfile.mkdtemp(prefix="iqmux", dir="/tmp"))
    port, sock = free_port(), tmp / "redis.sock"
    process = subprocess.Popen(
        [find_redis_server(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--requirepass", "s3cret", "--unixsocket", str(sock), "--dir", str(tmp)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while not (sock.exists() and _accepts(port)):
        assert time.monotonic() < deadline, "redis-server did not start"
        time.sleep(0.02)
    yield port, sock
    process.terminate()
    process.wait(timeout=10)
    shutil.rmtree(tmp, ignore_errors=True)


async def test_passwords_databases_and_unix_sockets(guarded: tuple[int, Path]) -> None:
    port, sock = guarded
    plain = Redis(port=port, password="s3cret", db=3, decode_responses=True)  # noqa: S106
    for url in (f"redis://:s3cret@127.0.0.1:{port}/3", f"unix://{sock}?db=3&password=s3cret"):
        made = command_client(url)
        assert isinstance(made, MuxRedis)
        assert made.mux is not None
        await made.set("k", url)
        assert await made.get("k") == url
        assert await plain.get("k") == url  # written in database 3
        await made.aclose()
    await plain.aclose()
    wrong = command_client(f"redis://:nope@127.0.0.1:{port}/0")
    with pytest.raises(AuthenticationError):
        await wrong.get("k")
    await wrong.aclose()


async def test_an_argument_redis_py_refuses_is_refused_the_same_way(client: MuxRedis) -> None:
    # None and bool are no Redis values: hiredis will not pack them, and redis-py's own
    # path says why, with nothing sent.
    for bad in (None, True):
        with pytest.raises(DataError):
            await client.set("k", bad)  # type: ignore[arg-type]
    assert await client.ping()
    await client.aclose()


async def test_a_redis_still_loading_its_data_is_asked_once_more() -> None:
    # A restarted Redis answers LOADING until its file is read; redis-py's pool retries that
    # (BusyLoadingError is a ConnectionError), and so does the mux.
    replies = [b"-LOADING Redis is loading the dataset in memory\r\n", b"+PONG\r\n"]

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while replies and await reader.read(4096):
            writer.write(replies.pop(0))
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pool = BlockingConnectionPool(host="127.0.0.1", port=port, protocol=2, decode_responses=True)
    made = MuxRedis.over(pool)
    assert await made.ping() is True
    assert replies == []
    await made.aclose()
    server.close()
    await server.wait_closed()
