"""Log records as lines for a terminal (``LOG_FORMAT=text``) or JSON for a collector.

Records carry their facts as ``extra`` fields (``job_id``, ``attempt``, ``character_id``,
``pose_id``, ``outcome``); the text form shows the seed's sentence, the JSON form adds the
fields, so a log pipeline can filter by job without parsing prose. Prompts are never among
them.
"""

from __future__ import annotations

import logging
import time

import msgspec

TEXT_FORMAT = "[%(asctime)s][%(name)s][%(levelname)-7s][%(processName)s] %(message)s"
FIELDS = ("job_id", "attempt", "character_id", "pose_id", "outcome", "user_id")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, the known extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        line: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "pid": record.process,
            "msg": record.getMessage(),
        }
        for name in FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return msgspec.json.encode(line).decode()


QUIET = ("httpx", "httpcore")
"""Loggers kept at WARNING or above whatever ``LOG_LEVEL`` says."""


def configure_logging(kind: str, level: str = "info") -> None:
    """Give the root logger's handlers the chosen format (adding one when there is none) and
    set its level (a ``LOG_LEVEL`` name: ``debug``, ``info``, ``warning``, ``error``)."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    formatter = JsonFormatter() if kind == "json" else logging.Formatter(TEXT_FORMAT)
    for handler in root.handlers:
        handler.setFormatter(formatter)
    root.setLevel(level.upper())
    # httpx logs every request's full URL at INFO: a result URL may carry a signed token.
    for chatty in QUIET:
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
