"""``just up``'s entry point: :mod:`devstack`, with a Ctrl-C that lands while its modules
still load (the first second or so) ending quietly instead of in a ``KeyboardInterrupt``
traceback. Nothing has started by then; :mod:`devstack` takes over the signals before it
starts anything.
"""

from __future__ import annotations

import signal
import sys


def main() -> int:
    """Run ``just up``; its exit code."""
    try:
        from imagequeue_api.devstack import main as run_devstack  # noqa: PLC0415 - see above

        return run_devstack()
    except KeyboardInterrupt:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)  # the copies uv and just forward
        print("[imagequeue] stopped before anything had started", flush=True)
        return 0


if __name__ == "__main__":
    sys.exit(main())
