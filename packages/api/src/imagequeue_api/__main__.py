"""``imagequeue-api``: serve the HTTP API, or manage API keys."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run the command."""
    del argv
    print("imagequeue-api: not built yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
