"""``uv run just up`` exactly as the README writes it: no flags, no settings, a fresh checkout.

The one test here that matters most to a newcomer. It copies the repository's tracked files
(what a clone has: no ``data/``, no ``.venv``) to a fresh directory, runs the README's
command there in a real (pseudo-)terminal with none of our settings in the environment, waits
for the demo, types Ctrl-C and expects the 20 demo images on disk, exit status 0, every
process stopped in order, and no traceback. Then the two other ways a stack is ended: SIGTERM
to the top process, and closing the terminal window.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from imagequeue_common.embedded_redis import answers
from tests.support.procs import ROOT, uv_command
from tests.support.terminal import Terminal, processes_in

pytestmark = pytest.mark.slow

OURS = ("REDIS_", "QUEUE_", "AI_", "DATABASE_", "ASSETS_", "STUB_", "API_", "METRICS_",
        "ADMIN_", "DATA_DIR", "LOG_", "RATE_LIMIT_", "WORKER_", "USER_", "JOB_", "VIRTUAL_ENV",
        "UV_PROJECT_ENVIRONMENT", "PYTHONPATH")  # fmt: skip


def fresh_checkout(into: Path) -> Path:
    """The repository's tracked files as they are in the work tree, nothing else."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)
    return into


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One fresh checkout for this module: the first test meets it as a clone is."""
    return fresh_checkout(tmp_path_factory.mktemp("clone") / "imagequeue")


def start_up(checkout: Path, *, in_shell: bool = False) -> Terminal:
    """``uv run just up`` in a terminal of its own (typed into a shell there, as in a window,
    or as the terminal's first process), none of our settings in its environment, once its
    demo is under way."""
    if answers("127.0.0.1", 8088, timeout=0.2):
        pytest.fail("something already listens on 127.0.0.1:8088, the port `just up` uses")
    env = {k: v for k, v in os.environ.items() if not k.startswith(OURS)}
    command = [*uv_command(), "run", "just", "up"]
    if in_shell:  # the shell stays the session leader: `; exit` keeps it from exec'ing uv
        command = ["bash", "-c", f"{shlex.join(command)}; exit $?"]
    terminal = Terminal(command, checkout, env)
    try:
        terminal.wait_for(r"\[imagequeue\] ETA at creation", timeout_s=240)
    except BaseException:
        terminal.close()
        raise
    return terminal


def assert_stopped_in_order(text: str, first: str) -> None:
    assert "Traceback" not in text, text
    order = [first, "stopping the API", "stopping the worker", "stopping the webhook worker",
             "stopping the scheduler",
             "stopping the stub AI server", "[imagequeue] stopped"]  # fmt: skip
    if "started a private redis-server" in text:  # no Redis answered on 127.0.0.1:6379
        order.insert(-1, "stopped the private redis-server")
    positions = [text.find(line) for line in order]
    assert -1 not in positions, text
    assert positions == sorted(positions), text


def test_uv_run_just_up_as_the_readme_writes_it(checkout: Path) -> None:
    terminal = start_up(checkout)
    try:
        terminal.press_ctrl_c()
        code = terminal.process.wait(timeout=120)
        terminal.wait_for(r"\[imagequeue\] stopped", timeout_s=10)
    finally:
        terminal.close()
    text = terminal.text
    assert code == 0, text
    assert "demo finished" in text
    assert "20 completed" in text
    assert_stopped_in_order(text, "SIGINT: stopping")
    assert processes_in(checkout) == []
    images = list((checkout / "data" / "assets" / "characters").glob("demo_character_*.png"))
    assert len(images) == 20
    assert all(image.read_bytes().startswith(b"\x89PNG") for image in images)


def test_sigterm_to_uv_alone_stops_it_in_order(checkout: Path) -> None:
    # What `kill <pid>` or a process manager sends: to the top process only. uv and just
    # pass SIGTERM on (a lone SIGINT they keep: see the README); just then reports the
    # signal in its exit status (143) although the stack below it stopped cleanly.
    terminal = start_up(checkout)
    try:
        terminal.process.terminate()
        code = terminal.process.wait(timeout=120)
        terminal.wait_for(r"\[imagequeue\] stopped", timeout_s=10)
    finally:
        terminal.close()
    assert code in (0, 128 + signal.SIGTERM), terminal.text
    assert_stopped_in_order(terminal.text, "SIGTERM: stopping")
    assert processes_in(checkout) == []


@pytest.mark.parametrize("in_shell", [True, False], ids=["shell-leads", "uv-leads"])
def test_closing_the_terminal_stops_everything(checkout: Path, in_shell: bool) -> None:
    # With a shell as session leader, the kernel's SIGHUP kills it and its death hangs up
    # uv, just and `just up` (the foreground group). With uv as the terminal's first
    # program, uv alone gets the SIGHUP and passes it to just, which passes nothing on: the
    # stack then sees the terminal close itself. Nothing can be shown any more (every write
    # fails): the stop must happen all the same.
    terminal = start_up(checkout, in_shell=in_shell)
    try:
        terminal.hang_up()
        deadline = time.monotonic() + 120
        while (left := processes_in(checkout)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert left == [], f"still running after the hang-up: {left}"
    finally:
        terminal.close()


def start_detached(checkout: Path, log: Path) -> subprocess.Popen[bytes]:
    """``uv run just up`` as a supervisor or a script starts it: a session of its own, no
    terminal (stdin is /dev/null), its output to ``log``; once its stack is up."""
    if answers("127.0.0.1", 8088, timeout=0.2):
        pytest.fail("something already listens on 127.0.0.1:8088, the port `just up` uses")
    env = {k: v for k, v in os.environ.items() if not k.startswith(OURS)}
    with log.open("wb") as out:
        uv = subprocess.Popen([*uv_command(), "run", "just", "up"], cwd=checkout, env=env,
                              stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                              start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 240
    while "Ctrl-C stops everything" not in log.read_text(errors="replace"):
        if uv.poll() is not None or time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(uv.pid, signal.SIGKILL)
            pytest.fail(log.read_text(errors="replace"))
        time.sleep(0.2)
    return uv


def wait_until_gone(checkout: Path, what: str) -> None:
    deadline = time.monotonic() + 120
    while (left := processes_in(checkout)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == [], f"still running after {what}: {left}"


def test_a_killed_uv_leaves_nothing_running(checkout: Path, tmp_path: Path) -> None:
    # A process manager or a test runner that gives up with SIGKILL to `uv` leaves `just`
    # and the stack orphaned; the stack sees its launcher end and stops in order, freeing
    # port 8088.
    log = tmp_path / "up.log"
    uv = start_detached(checkout, log)
    try:
        uv.kill()
        uv.wait(timeout=10)
        wait_until_gone(checkout, "uv was killed")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(uv.pid, signal.SIGKILL)
    text = log.read_text(errors="replace")
    assert f"uv (pid {uv.pid}), which started us, ended" in text, text
    assert_stopped_in_order(text, "which started us, ended: stopping")
    assert not answers("127.0.0.1", 8088, timeout=0.2)


def test_a_lone_sigint_to_uv_stops_it_in_order(checkout: Path, tmp_path: Path) -> None:
    # `kill -INT <uv's pid>` with no terminal: uv passes the SIGINT to just, which keeps it
    # while its recipe runs; the stack sees just's signal count rise and stops in order, and
    # every process then exits 0.
    log = tmp_path / "up.log"
    uv = start_detached(checkout, log)
    try:
        uv.send_signal(signal.SIGINT)
        code = uv.wait(timeout=120)
        wait_until_gone(checkout, "a SIGINT to uv")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(uv.pid, signal.SIGKILL)
    text = log.read_text(errors="replace")
    assert code == 0, text
    assert_stopped_in_order(text, "caught a signal that it does not pass on")
    assert not answers("127.0.0.1", 8088, timeout=0.2)
