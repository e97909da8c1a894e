"""Log levels: httpx's request lines (full URLs, signed result URLs among them) stay out."""

from __future__ import annotations

import logging

from imagequeue_common.logs import QUIET, configure_logging


def test_httpx_request_urls_are_not_logged_even_at_debug() -> None:
    root = logging.getLogger()
    before = root.level
    try:
        configure_logging("text", "debug")
        assert root.isEnabledFor(logging.DEBUG)
        for name in QUIET:
            assert not logging.getLogger(name).isEnabledFor(logging.INFO), name
            assert logging.getLogger(name).isEnabledFor(logging.WARNING), name
    finally:
        root.setLevel(before)
