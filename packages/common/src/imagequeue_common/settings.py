"""Settings: read once from the environment into a frozen struct, then passed down.

Nothing else in imagequeue reads ``os.environ``. A bad value raises
:class:`~imagequeue_common.errors.SettingsError` naming the variable, so a process
stops at start with one clear line instead of failing on the first job.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Literal

import msgspec

from imagequeue_common.errors import SettingsError

BackoffKind = Literal["exponential", "fixed"]
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Every knob of the queue engine; defaults follow the seed document."""

    redis_url: str | None = None
    """``REDIS_URL``; else built from ``REDIS_HOST``/``REDIS_PORT``; else embedded."""
    queue_name: str = "images"
    data_dir: str = "./data"

    rate_limit_max: int = 10
    """At most this many job starts in any sliding window of ``rate_limit_duration_ms``."""
    rate_limit_duration_ms: int = 1000
    worker_concurrency: int = 5

    job_retries: int = 3
    """Retries after the first run: 3 means 4 runs in all."""
    backoff_type: BackoffKind = "exponential"
    backoff_delay_ms: int = 5000

    lease_ms: int = 30_000
    """A claimed job's lease; a live worker renews it every third of it."""
    stall_limit: int = 2
    """A job that stalls more often than this is dead-lettered."""

    keep_completed_ms: int = 24 * 3600 * 1000
    keep_failed_ms: int = 7 * 24 * 3600 * 1000
    clean_cron: str = "0 */6 * * *"
    events_maxlen: int = 10_000
    """Approximate cap of the queue's event stream."""

    @property
    def redis_url_or_default(self) -> str:
        """The configured Redis, else the conventional local one."""
        return self.redis_url or DEFAULT_REDIS_URL

    def __post_init__(self) -> None:
        checks: list[tuple[str, bool]] = [
            ("RATE_LIMIT_MAX must be 0 (no limit) or more", self.rate_limit_max >= 0),
            ("RATE_LIMIT_DURATION_MS must be at least 1", self.rate_limit_duration_ms >= 1),
            ("WORKER_CONCURRENCY must be from 1 to 1000", 1 <= self.worker_concurrency <= 1000),
            ("JOB_RETRIES must be from 0 to 100", 0 <= self.job_retries <= 100),
            ("BACKOFF_DELAY_MS must be 0 or more", self.backoff_delay_ms >= 0),
            ("LEASE_MS must be at least 30", self.lease_ms >= 30),
            ("STALL_LIMIT must be 0 or more", self.stall_limit >= 0),
            ("KEEP_COMPLETED_MS must be 0 or more", self.keep_completed_ms >= 0),
            ("KEEP_FAILED_MS must be 0 or more", self.keep_failed_ms >= 0),
            ("EVENTS_MAXLEN must be at least 100", self.events_maxlen >= 100),
            (
                "QUEUE_NAME must be 1-64 characters of letters, digits, '-', '_' or '.'",
                _is_queue_name(self.queue_name),
            ),
            (
                f"CLEAN_CRON must be 5 cron fields like '0 */6 * * *', got {self.clean_cron!r}",
                _is_cron(self.clean_cron),
            ),
        ]
        for message, ok in checks:
            if not ok:
                raise SettingsError(message)


def _is_queue_name(name: str) -> bool:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
    return 0 < len(name) <= 64 and set(name) <= allowed


def _is_cron(spec: str) -> bool:
    fields = spec.split()
    allowed = set("0123456789*/,-")
    return len(fields) == 5 and all(set(f) <= allowed for f in fields)


def _parse_int(name: str, raw: str) -> int:
    try:
        return int(raw.strip().replace("_", ""))
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None


def _parse_backoff(name: str, raw: str) -> BackoffKind:
    value = raw.strip().lower()
    if value == "exponential":
        return "exponential"
    if value == "fixed":
        return "fixed"
    raise SettingsError(f"{name} must be 'exponential' or 'fixed', got {raw!r}")


def _parse_str(name: str, raw: str) -> str:
    value = raw.strip()
    if not value:
        raise SettingsError(f"{name} must not be empty")
    return value


_FIELDS: dict[str, tuple[str, Callable[[str, str], object]]] = {
    "QUEUE_NAME": ("queue_name", _parse_str),
    "DATA_DIR": ("data_dir", _parse_str),
    "RATE_LIMIT_MAX": ("rate_limit_max", _parse_int),
    "RATE_LIMIT_DURATION_MS": ("rate_limit_duration_ms", _parse_int),
    "WORKER_CONCURRENCY": ("worker_concurrency", _parse_int),
    "JOB_RETRIES": ("job_retries", _parse_int),
    "BACKOFF_TYPE": ("backoff_type", _parse_backoff),
    "BACKOFF_DELAY_MS": ("backoff_delay_ms", _parse_int),
    "LEASE_MS": ("lease_ms", _parse_int),
    "STALL_LIMIT": ("stall_limit", _parse_int),
    "KEEP_COMPLETED_MS": ("keep_completed_ms", _parse_int),
    "KEEP_FAILED_MS": ("keep_failed_ms", _parse_int),
    "CLEAN_CRON": ("clean_cron", _parse_str),
    "EVENTS_MAXLEN": ("events_maxlen", _parse_int),
}


def _redis_url(environ: Mapping[str, str]) -> str | None:
    url = environ.get("REDIS_URL", "").strip()
    if url:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError(
                f"REDIS_URL must start with redis://, rediss:// or unix://, got {url!r}"
            )
        return url
    host = environ.get("REDIS_HOST", "").strip()
    if not host:
        return None
    port = _parse_int("REDIS_PORT", environ.get("REDIS_PORT", "6379"))
    if not 0 < port < 65536:
        raise SettingsError(f"REDIS_PORT must be from 1 to 65535, got {port}")
    return f"redis://{host}:{port}/0"


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build :class:`Settings` from environment variables (unset ones keep defaults)."""
    values: dict[str, object] = {"redis_url": _redis_url(environ)}
    for env_name, (field, parse) in _FIELDS.items():
        raw = environ.get(env_name)
        if raw is not None and raw.strip() != "":
            values[field] = parse(env_name, raw)
    return Settings(**values)  # type: ignore[arg-type]


def replace(settings: Settings, **changes: object) -> Settings:
    """A copy of ``settings`` with ``changes`` applied and validated again."""
    return msgspec.structs.replace(settings, **changes)
