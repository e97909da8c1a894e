"""``imagequeue-worker``: run worker processes, the scheduler, or a clean by hand."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys

from taskiq.acks import AcknowledgeType
from taskiq.cli.scheduler.args import SchedulerArgs
from taskiq.cli.scheduler.run import run_scheduler
from taskiq.cli.worker.args import WorkerArgs
from taskiq.cli.worker.run import run_worker

from imagequeue_common.errors import SettingsError
from imagequeue_common.logs import configure_logging
from imagequeue_common.redis_conn import preflight_ok
from imagequeue_common.runtime import STOP_SIGNALS, ignore_late_stop_signals
from imagequeue_common.settings import Settings, load_settings
from imagequeue_worker.app import build_broker, create_scheduler
from imagequeue_worker.health import health_problem, live_workers_json

WEBHOOK_BROKER = "imagequeue_worker.webhook_app:create_broker"


def worker_args(
    settings: Settings, processes: int, broker: str, slots: int | None = None
) -> WorkerArgs:
    """taskiq worker arguments: one claim per free slot (no prefetch), ack once the result
    is stored (taskiq's default; a task's ``ack_type`` label may say otherwise)."""
    return WorkerArgs(
        broker=broker,
        modules=[],
        workers=processes,
        max_async_tasks=slots or settings.worker_concurrency,
        max_prefetch=0,
        # taskiq parses each argument into its annotated type (your tasks' pydantic models);
        # generate_image takes a plain dict and validates it with msgspec itself.
        no_parse=False,
        receiver="imagequeue_common.queue.receiver:EngineReceiver",
        ack_type=AcknowledgeType.WHEN_SAVED,
        shutdown_timeout=10,
        log_level=settings.log_level.upper(),  # type: ignore[arg-type]
    )


async def _clean(settings: Settings) -> None:
    broker = build_broker(settings)
    await broker.startup()
    try:
        report = await broker.ledger.clean()
        print(f"removed {report.completed} completed, {report.failed} failed, "
              f"{report.cancelled} cancelled jobs")  # fmt: skip
    finally:
        await broker.shutdown()


async def _schedule() -> int:
    """The cleanup schedule until SIGINT/SIGTERM, then 0.

    taskiq's scheduler shuts down cleanly when its task is cancelled; asyncio's own Ctrl-C
    handling would then still end the process with status 130, and a second Ctrl-C (uv run
    forwards one) would cancel the shutdown itself. So the first signal cancels it once.
    """
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, lambda: task is None or task.cancelling() or task.cancel())
    with contextlib.suppress(asyncio.CancelledError):
        await run_scheduler(SchedulerArgs(scheduler=create_scheduler(), modules=[]))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, load settings once, run the command."""
    parser = argparse.ArgumentParser(prog="imagequeue-worker")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run worker processes")
    run.add_argument("--processes", type=int, default=1, help="worker processes (default 1)")
    run.add_argument("--broker", default="imagequeue_worker.app:create_broker",
                     metavar="MODULE:NAME",
                     help="the broker to run, with your own tasks registered on it: a "
                          "module's broker object or a function that returns one "
                          "(default imagequeue_worker.app:create_broker; see the README, "
                          "'Your own tasks')")  # fmt: skip
    hooks = sub.add_parser("webhooks", help="run webhook delivery processes")
    hooks.add_argument("--processes", type=int, default=1, help="processes (default 1)")
    sub.add_parser("scheduler", help="run the cleanup schedule")
    sub.add_parser("clean", help="remove finished jobs past retention now")
    health = sub.add_parser("health", help="exit 0 when a worker of this host is alive "
                                           "(container healthchecks)")  # fmt: skip
    health.add_argument("--webhooks", action="store_true", help="a webhook worker instead")
    workers = sub.add_parser("workers", help="list the live workers, a JSON line each")
    workers.add_argument("--webhooks", action="store_true", help="webhook workers instead")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(os.environ)
    except SettingsError as exc:
        print(f"imagequeue-worker: bad setting: {exc}", file=sys.stderr)
        return 2
    if args.command in ("run", "webhooks"):
        # The process manager logs too, before taskiq's own basicConfig (which then keeps
        # these handlers): in LOG_FORMAT, so a collector gets JSON lines from it as well.
        configure_logging(settings.log_format, settings.log_level)
        if args.processes < 1:
            parser.error("--processes must be at least 1")
        if not preflight_ok("imagequeue-worker", settings.redis_url_or_default):
            return 2
        if args.command == "webhooks":
            hook_args = worker_args(settings, args.processes, WEBHOOK_BROKER,
                                    settings.webhook_concurrency)  # fmt: skip
            return run_worker(hook_args) or 0
        return run_worker(worker_args(settings, args.processes, args.broker)) or 0
    if args.command == "scheduler":
        configure_logging(settings.log_format, settings.log_level)
        try:
            return asyncio.run(_schedule())
        finally:
            ignore_late_stop_signals()
    if args.command == "workers":
        for line in asyncio.run(live_workers_json(settings, webhooks=args.webhooks)):
            print(line)
        return 0
    if args.command == "health":
        problem = asyncio.run(health_problem(settings, webhooks=args.webhooks))
        print(f"unhealthy: {problem}" if problem else "healthy")
        return 1 if problem else 0
    asyncio.run(_clean(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
