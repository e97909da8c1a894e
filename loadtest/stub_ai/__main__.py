"""``python -m loadtest.stub_ai [--host H] [--port P]``: serve the stub with uvicorn."""

from __future__ import annotations

import argparse
import os
import sys

import uvicorn

from loadtest.stub_ai.app import create_app
from loadtest.stub_ai.config import ConfigError, load_config


def main(argv: list[str] | None = None) -> int:
    """Read ``STUB_*`` once, then serve until interrupted; 2 on a bad setting."""
    parser = argparse.ArgumentParser(
        prog="python -m loadtest.stub_ai",
        description="The stub AI server; its config comes from STUB_* variables.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    parser.add_argument("--port", type=int, default=8090, help="default: 8090")
    parser.add_argument("--log-level", default="warning", help="uvicorn's; default: warning")
    args = parser.parse_args(argv)
    try:
        config = load_config(os.environ)
    except ConfigError as exc:
        print(f"stub_ai: bad setting: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(
        create_app(config),
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        access_log=False,
        backlog=4096,
        # Hung requests would hold a graceful shutdown for up to an hour.
        timeout_graceful_shutdown=2,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
