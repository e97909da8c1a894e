"""The taskiq internals imagequeue relies on are there, so a taskiq upgrade that moves them
fails here, loudly, instead of silently losing the receiver's fast path."""

from __future__ import annotations

import inspect
from importlib.metadata import version

from taskiq.receiver import Receiver

from imagequeue_common.queue.receiver import EngineReceiver


def test_the_receiver_hook_we_override_exists_with_our_signature() -> None:
    hook = getattr(Receiver, "_get_prefetched_message", None)
    assert hook is not None, f"taskiq {version('taskiq')} has no Receiver._get_prefetched_message"
    theirs = list(inspect.signature(hook).parameters)
    ours = list(inspect.signature(EngineReceiver._get_prefetched_message).parameters)
    assert theirs == ours == ["self", "state", "finish_event", "finish_waiter"]


def test_taskiq_is_a_version_the_pin_allows() -> None:
    major, minor = (int(part) for part in version("taskiq").split(".")[:2])
    assert (major, minor) == (0, 13)
