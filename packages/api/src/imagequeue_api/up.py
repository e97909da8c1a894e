"""``just up``'s entry point: :mod:`devstack`, with a Ctrl-C that lands while its modules
still load (the first second or so) ending quietly instead of in a ``KeyboardInterrupt``
traceback. Nothing has started by then; :mod:`devstack` takes over the signals before it
starts anything.
"""

from __future__ import annotations

import contextlib
import os
import sys

from imagequeue_common.runtime import ignore_late_stop_signals


def main() -> int:
    """Run ``just up``; its exit code."""
    try:
        from imagequeue_api.devstack import main as run_devstack  # noqa: PLC0415 - see above

        return run_devstack()
    except KeyboardInterrupt:
        ignore_late_stop_signals()  # a second Ctrl-C, which uv passes on
        with contextlib.suppress(OSError, ValueError):  # the terminal may be gone
            print("[imagequeue] stopped before anything had started", flush=True)
        # Out at once: an import cut short by the signal can leave the interpreter to end
        # in SIGINT at its own exit (status -2, seen 1 in 30 at 0.35 s); nothing runs yet.
        sys.stderr.flush()
        os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
