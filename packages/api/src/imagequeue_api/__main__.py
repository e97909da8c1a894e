"""``imagequeue-api``: serve the HTTP API, or manage API keys."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from imagequeue_api import serving
from imagequeue_api.apikeys import ApiKeyStore
from imagequeue_api.cli_keys import add_key_commands, run_key_command
from imagequeue_common.errors import SettingsError
from imagequeue_common.logs import configure_logging
from imagequeue_common.redis_conn import command_client, preflight_ok
from imagequeue_common.runtime import ignore_late_stop_signals
from imagequeue_common.settings import Settings, load_settings


def serve(settings: Settings) -> int:
    """Serve ``API_PROCESSES`` processes on ``API_HOST:API_PORT`` (see :mod:`serving`)."""
    configure_logging(settings.log_format, settings.log_level)
    try:
        return serving.serve(settings)
    finally:
        ignore_late_stop_signals()


async def _keys(args: argparse.Namespace, settings: Settings) -> int:
    client = command_client(settings.redis_url_or_default)
    try:
        return await run_key_command(args, ApiKeyStore(client, settings.queue_name))
    finally:
        await client.aclose()


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, load settings once, run the command."""
    parser = argparse.ArgumentParser(prog="imagequeue-api")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="serve the HTTP API (API_HOST, API_PORT, API_PROCESSES)")
    add_key_commands(sub)
    args = parser.parse_args(argv)
    try:
        settings = load_settings(os.environ)
    except SettingsError as exc:
        print(f"imagequeue-api: bad setting: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve":
        where = f"{settings.api_host}:{settings.api_port}"
        if serving.port_in_use(settings.api_host, settings.api_port):
            print(f"imagequeue-api: {where} is in use already (another API?): stop it or set "
                  "API_PORT", file=sys.stderr)  # fmt: skip
            return 2
        if not preflight_ok("imagequeue-api", settings.redis_url_or_default):
            return 2
        try:
            return serve(settings)
        except OSError as exc:  # the port was taken meanwhile, or API_HOST is not ours
            print(f"imagequeue-api: cannot listen on {where}: {exc.strerror}", file=sys.stderr)
            return 2
    return asyncio.run(_keys(args, settings))


if __name__ == "__main__":
    sys.exit(main())
