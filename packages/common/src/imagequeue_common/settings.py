"""Settings: read once from the environment into a frozen struct, then passed down.

Nothing else in imagequeue reads ``os.environ``. A bad value raises
:class:`~imagequeue_common.errors.SettingsError` naming the variable, so a process
stops at start with one clear line instead of failing on the first job.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Literal

import msgspec

from imagequeue_common.cluster import is_cluster_url, parse_cluster_url
from imagequeue_common.errors import SettingsError
from imagequeue_common.sentinel import is_sentinel_url, parse_sentinel_url

BackoffKind = Literal["exponential", "fixed"]
Backend = Literal["generic", "automatic1111", "openai", "comfyui", "runpod"]
Quality = Literal["hq", "standard", "draft"]
LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
BACKENDS: tuple[Backend, ...] = ("generic", "automatic1111", "openai", "comfyui", "runpod")
QUALITIES: tuple[Quality, ...] = ("hq", "standard", "draft")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_DATA_DIR = "./data"


def default_database_url(data_dir: str = DEFAULT_DATA_DIR) -> str:
    """The store when ``DATABASE_URL`` is unset: a SQLite file under ``DATA_DIR``."""
    return f"sqlite:///{data_dir.rstrip('/')}/imagequeue.db"


_SECRET_FIELDS = frozenset(
    {"ai_generation_api_key", "api_dev_key", "metrics_token", "admin_password",
     "admin_readonly_password", "session_secret"}
)  # fmt: skip
_URL_FIELDS = frozenset({"redis_url", "database_url", "ai_generation_api_url"})


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Every knob of the queue engine; defaults follow the seed document."""

    redis_url: str | None = None
    """``REDIS_URL``; else built from ``REDIS_HOST``/``REDIS_PORT``; else embedded."""
    queue_name: str = "images"
    data_dir: str = DEFAULT_DATA_DIR
    log_format: LogFormat = "text"
    """``text`` (the seed's lines) or ``json`` (one object per line, with job fields)."""
    log_level: LogLevel = "info"
    """``info`` logs every job's end (the seed's lifecycle lines); ``warning`` only retries,
    dead letters, stalls and faults."""

    rate_limit_max: int = 10
    """At most this many job starts in any sliding window of ``rate_limit_duration_ms``."""
    rate_limit_duration_ms: int = 1000
    rate_limit_guard_ms: int = 25
    """Added to the window when a job asks to send its AI request (``permit.lua``), so the
    network's jitter between the permit and the request's arrival cannot squeeze ``max + 1``
    requests into one window as the GPU side sees it (the worker adds its own loop's recent
    delay on top: ``imagequeue_worker.looplag``)."""
    worker_concurrency: int = 5
    expected_job_s: float = 45.0
    """The upstream's typical seconds per image (the seed's GPU: 30-60 s): the ETA's job
    time until the queue has measured its own, and its prior after."""
    user_max_pending: int = 100
    """Most unfinished (waiting, delayed, active) jobs one user may have; 0: no limit."""

    job_retries: int = 3
    """Retries after the first run: 3 means 4 runs in all."""
    backoff_type: BackoffKind = "exponential"
    backoff_delay_ms: int = 5000

    lease_ms: int = 30_000
    """A claimed job's lease; a live worker renews it every third of it."""
    stall_limit: int = 2
    """A job that stalls more often than this is dead-lettered."""
    redis_retry_ms: int = 1000
    """While Redis does not answer, a worker's claim loop and finisher (and the API's probe)
    try again this often."""
    redis_min_replicas_ack: int = -1
    """Replicas that must have an enqueue before it is acknowledged (``WAIT``); -1: one
    with a ``redis+sentinel://`` URL, one on a ``redis+cluster://`` where the queue's
    primary has a replica, none otherwise (see ``replicas_ack``)."""
    redis_replica_ack_ms: int = 1000
    """How long an enqueue waits for those replicas before it is refused (503)."""

    keep_completed_ms: int = 24 * 3600 * 1000
    keep_failed_ms: int = 7 * 24 * 3600 * 1000
    clean_cron: str = "0 */6 * * *"
    events_maxlen: int = 10_000
    """Approximate cap of the queue's event stream."""

    api_host: str = "127.0.0.1"
    api_port: int = 8088
    """The seed's port; the dashboard lives on it too (``/admin/queues``)."""
    api_processes: int = 1
    api_max_body_bytes: int = 64 * 1024
    api_user_rps: int = 20
    """Requests per second one API key may make (429 with Retry-After beyond); 0: no limit."""
    api_dev_key: str = ""
    """A development key accepted as a ``premium`` user ``dev`` (``just up`` sets one)."""
    metrics_token: str = ""
    """Bearer token for ``/metrics``; unset means ``/metrics`` is off."""
    admin_username: str = "admin"
    admin_password: str = ""
    """The dashboard's admin login; unset means the dashboard is off (not open)."""
    admin_readonly_username: str = ""
    admin_readonly_password: str = ""
    """An optional login that can look at the dashboard but not act."""
    session_secret: str = ""
    """Signs dashboard sessions; derived from the admin password when unset."""

    database_url: str = default_database_url()
    """Characters and poses: ``sqlite:///<file>``, ``postgresql://...`` or ``mongodb://...``."""
    assets_dir: str = "./data/assets"
    """Where images are written (``<assets_dir>/characters/<file>.png``)."""
    assets_url_prefix: str = "/assets"
    """The URL path under which ``assets_dir`` is served."""

    ai_generation_enabled: bool = True
    """False: no image job is queued, and callers are told so."""
    ai_generation_api_url: str | None = None
    """The upstream: the full URL for ``generic``, the base URL for the others."""
    ai_generation_backend: Backend = "generic"
    ai_generation_quality: Quality = "hq"
    ai_generation_api_key: str = ""
    """Sent as ``Authorization: Bearer <key>``, or raw in ``AI_GENERATION_API_KEY_HEADER``."""
    ai_generation_api_key_header: str = "Authorization"
    ai_generation_model: str = ""
    """openai: the model (default ``gpt-image-1``); comfyui: the checkpoint file name."""
    ai_image_width: int = 768
    ai_image_height: int = 1024
    ai_negative_prompt: str = "blurry, low quality, deformed, watermark, text"
    ai_connect_timeout_s: float = 10.0
    ai_read_timeout_s: float = 90.0
    """Longest silence while a response is awaited or read."""
    ai_total_timeout_s: float = 120.0
    """Longest one upstream generation may take in all, polling included."""
    ai_max_response_bytes: int = 32 * 1024 * 1024
    ai_poll_interval_ms: int = 1000
    """comfyui and runpod: how often a submitted generation is polled."""

    @property
    def replicas_ack(self) -> int:
        """Replicas an enqueue waits for (``REDIS_MIN_REPLICAS_ACK``, resolved; -1 on a
        cluster: ``queue.scripts.AUTO_ACKS``, decided per queue from its primary)."""
        if self.redis_min_replicas_ack >= 0:
            return self.redis_min_replicas_ack
        if is_cluster_url(self.redis_url_or_default):
            return -1  # decided per queue: one where its primary has a replica
        return 1 if is_sentinel_url(self.redis_url_or_default) else 0

    @property
    def redis_url_or_default(self) -> str:
        """The configured Redis, else the conventional local one."""
        return self.redis_url or DEFAULT_REDIS_URL

    def __repr__(self) -> str:
        # Settings end up in logs and tracebacks: never show a key or a URL's password.
        parts = []
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if name in _SECRET_FIELDS and value:
                value = "***"
            elif name in _URL_FIELDS and isinstance(value, str):
                value = redact_url(value)
            parts.append(f"{name}={value!r}")
        return f"Settings({', '.join(parts)})"

    def __post_init__(self) -> None:
        checks: list[tuple[str, bool]] = [
            ("RATE_LIMIT_MAX must be 0 (no limit) or more", self.rate_limit_max >= 0),
            ("RATE_LIMIT_DURATION_MS must be at least 1", self.rate_limit_duration_ms >= 1),
            ("RATE_LIMIT_GUARD_MS must be 0 or more", self.rate_limit_guard_ms >= 0),
            ("WORKER_CONCURRENCY must be from 1 to 1000", 1 <= self.worker_concurrency <= 1000),
            ("USER_MAX_PENDING must be 0 (no limit) or more", self.user_max_pending >= 0),
            ("EXPECTED_JOB_S must be above 0", self.expected_job_s > 0),
            ("API_PORT must be from 1 to 65535", 0 < self.api_port < 65536),
            ("API_PROCESSES must be from 1 to 64", 1 <= self.api_processes <= 64),
            ("API_MAX_BODY_BYTES must be at least 1024", self.api_max_body_bytes >= 1024),
            ("API_USER_RPS must be 0 (no limit) or more", self.api_user_rps >= 0),
            (
                "ADMIN_PASSWORD and ADMIN_READONLY_PASSWORD must be empty or 12+ characters",
                all(
                    len(p) == 0 or len(p) >= 12
                    for p in (self.admin_password, self.admin_readonly_password)
                ),
            ),
            (
                "ADMIN_READONLY_USERNAME and ADMIN_READONLY_PASSWORD go together",
                bool(self.admin_readonly_username) == bool(self.admin_readonly_password),
            ),
            (
                "API_DEV_KEY and METRICS_TOKEN must be empty or at least 16 characters",
                all(len(t) == 0 or len(t) >= 16 for t in (self.api_dev_key, self.metrics_token)),
            ),
            ("JOB_RETRIES must be from 0 to 100", 0 <= self.job_retries <= 100),
            ("BACKOFF_DELAY_MS must be 0 or more", self.backoff_delay_ms >= 0),
            ("LEASE_MS must be at least 30", self.lease_ms >= 30),
            ("STALL_LIMIT must be 0 or more", self.stall_limit >= 0),
            ("REDIS_RETRY_MS must be at least 10", self.redis_retry_ms >= 10),
            ("REDIS_MIN_REPLICAS_ACK must be -1 (auto) or more", self.redis_min_replicas_ack >= -1),
            ("REDIS_REPLICA_ACK_MS must be at least 1", self.redis_replica_ack_ms >= 1),
            ("KEEP_COMPLETED_MS must be 0 or more", self.keep_completed_ms >= 0),
            ("KEEP_FAILED_MS must be 0 or more", self.keep_failed_ms >= 0),
            ("EVENTS_MAXLEN must be at least 100", self.events_maxlen >= 100),
            (
                "DATABASE_URL must start with sqlite:///, postgresql://, postgres://, "
                "mongodb:// or mongodb+srv://",
                self.database_url.startswith(
                    ("sqlite:///", "postgresql://", "postgres://", "mongodb://", "mongodb+srv://")
                ),
            ),
            (
                "ASSETS_URL_PREFIX must start with '/' or http(s):// and not end with '/'",
                self.assets_url_prefix.startswith(("/", "http://", "https://"))
                and not self.assets_url_prefix.endswith("/"),
            ),
            (
                "AI_GENERATION_API_URL must start with http:// or https://",
                self.ai_generation_api_url is None
                or self.ai_generation_api_url.startswith(("http://", "https://")),
            ),
            (
                "AI_IMAGE_WIDTH and AI_IMAGE_HEIGHT must be from 64 to 2048",
                64 <= self.ai_image_width <= 2048 and 64 <= self.ai_image_height <= 2048,
            ),
            (
                "AI_CONNECT_TIMEOUT_S, AI_READ_TIMEOUT_S and AI_TOTAL_TIMEOUT_S must be above 0",
                min(self.ai_connect_timeout_s, self.ai_read_timeout_s, self.ai_total_timeout_s) > 0,
            ),
            (
                "AI_MAX_RESPONSE_BYTES must be at least 1024",
                self.ai_max_response_bytes >= 1024,
            ),
            ("AI_POLL_INTERVAL_MS must be at least 1", self.ai_poll_interval_ms >= 1),
            (
                "AI_GENERATION_API_KEY_HEADER must be an HTTP header name",
                _is_header_name(self.ai_generation_api_key_header),
            ),
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


def _is_header_name(name: str) -> bool:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
    return 0 < len(name) <= 64 and set(name) <= allowed


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs and reprs)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    userinfo, _, host = rest.partition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in userinfo else url


def _is_cron(spec: str) -> bool:
    fields = spec.split()
    allowed = set("0123456789*/,-")
    return len(fields) == 5 and all(set(f) <= allowed for f in fields)


def _parse_int(name: str, raw: str) -> int:
    try:
        return int(raw.strip().replace("_", ""))
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None


def _parse_float(name: str, raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):
        raise SettingsError(f"{name} must be a finite number, got {raw!r}")
    return value


def _parse_bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be true or false, got {raw!r}")


def _choice(*choices: str) -> Callable[[str, str], str]:
    """A parser that accepts one of ``choices`` (any case)."""
    quoted = [f"'{c}'" for c in choices]
    allowed = " or ".join([", ".join(quoted[:-1]), quoted[-1]] if len(quoted) > 1 else quoted)

    def parse(name: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise SettingsError(f"{name} must be {allowed}, got {raw!r}")
        return value

    return parse


def _parse_raw(name: str, raw: str) -> str:
    del name
    return raw.strip()


def _parse_str(name: str, raw: str) -> str:
    value = raw.strip()
    if not value:
        raise SettingsError(f"{name} must not be empty")
    return value


_FIELDS: dict[str, tuple[str, Callable[[str, str], object]]] = {
    "QUEUE_NAME": ("queue_name", _parse_str),
    "DATA_DIR": ("data_dir", _parse_str),
    "LOG_FORMAT": ("log_format", _choice("text", "json")),
    "LOG_LEVEL": ("log_level", _choice("debug", "info", "warning", "error")),
    "RATE_LIMIT_MAX": ("rate_limit_max", _parse_int),
    "RATE_LIMIT_DURATION_MS": ("rate_limit_duration_ms", _parse_int),
    "RATE_LIMIT_GUARD_MS": ("rate_limit_guard_ms", _parse_int),
    "WORKER_CONCURRENCY": ("worker_concurrency", _parse_int),
    "USER_MAX_PENDING": ("user_max_pending", _parse_int),
    "EXPECTED_JOB_S": ("expected_job_s", _parse_float),
    "API_HOST": ("api_host", _parse_str),
    "API_PORT": ("api_port", _parse_int),
    "API_PROCESSES": ("api_processes", _parse_int),
    "API_MAX_BODY_BYTES": ("api_max_body_bytes", _parse_int),
    "API_USER_RPS": ("api_user_rps", _parse_int),
    "API_DEV_KEY": ("api_dev_key", _parse_raw),
    "METRICS_TOKEN": ("metrics_token", _parse_raw),
    "ADMIN_USERNAME": ("admin_username", _parse_str),
    "ADMIN_PASSWORD": ("admin_password", _parse_raw),
    "ADMIN_READONLY_USERNAME": ("admin_readonly_username", _parse_raw),
    "ADMIN_READONLY_PASSWORD": ("admin_readonly_password", _parse_raw),
    "SESSION_SECRET": ("session_secret", _parse_raw),
    "JOB_RETRIES": ("job_retries", _parse_int),
    "BACKOFF_TYPE": ("backoff_type", _choice("exponential", "fixed")),
    "BACKOFF_DELAY_MS": ("backoff_delay_ms", _parse_int),
    "LEASE_MS": ("lease_ms", _parse_int),
    "STALL_LIMIT": ("stall_limit", _parse_int),
    "REDIS_RETRY_MS": ("redis_retry_ms", _parse_int),
    "REDIS_MIN_REPLICAS_ACK": ("redis_min_replicas_ack", _parse_int),
    "REDIS_REPLICA_ACK_MS": ("redis_replica_ack_ms", _parse_int),
    "KEEP_COMPLETED_MS": ("keep_completed_ms", _parse_int),
    "KEEP_FAILED_MS": ("keep_failed_ms", _parse_int),
    "CLEAN_CRON": ("clean_cron", _parse_str),
    "EVENTS_MAXLEN": ("events_maxlen", _parse_int),
    "DATABASE_URL": ("database_url", _parse_str),
    "ASSETS_DIR": ("assets_dir", _parse_str),
    "ASSETS_URL_PREFIX": ("assets_url_prefix", _parse_str),
    "AI_GENERATION_ENABLED": ("ai_generation_enabled", _parse_bool),
    "AI_GENERATION_API_URL": ("ai_generation_api_url", _parse_str),
    "AI_GENERATION_BACKEND": ("ai_generation_backend", _choice(*BACKENDS)),
    "AI_GENERATION_QUALITY": ("ai_generation_quality", _choice(*QUALITIES)),
    "AI_GENERATION_API_KEY": ("ai_generation_api_key", _parse_raw),
    "AI_GENERATION_API_KEY_HEADER": ("ai_generation_api_key_header", _parse_str),
    "AI_GENERATION_MODEL": ("ai_generation_model", _parse_raw),
    "AI_IMAGE_WIDTH": ("ai_image_width", _parse_int),
    "AI_IMAGE_HEIGHT": ("ai_image_height", _parse_int),
    "AI_NEGATIVE_PROMPT": ("ai_negative_prompt", _parse_raw),
    "AI_CONNECT_TIMEOUT_S": ("ai_connect_timeout_s", _parse_float),
    "AI_READ_TIMEOUT_S": ("ai_read_timeout_s", _parse_float),
    "AI_TOTAL_TIMEOUT_S": ("ai_total_timeout_s", _parse_float),
    "AI_MAX_RESPONSE_BYTES": ("ai_max_response_bytes", _parse_int),
    "AI_POLL_INTERVAL_MS": ("ai_poll_interval_ms", _parse_int),
}


def _redis_url(environ: Mapping[str, str]) -> str | None:
    url = environ.get("REDIS_URL", "").strip()
    if url:
        if is_sentinel_url(url):
            parse_sentinel_url(url)  # a SettingsError that says what is wrong
            return url
        if is_cluster_url(url):
            parse_cluster_url(url)
            return url
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError(
                "REDIS_URL must start with redis://, rediss://, unix://, redis+sentinel:// or "
                f"redis+cluster://, got {url!r}"
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
    # The database and the images live under DATA_DIR unless placed elsewhere on purpose.
    data_dir = str(values.get("data_dir", DEFAULT_DATA_DIR)).rstrip("/")
    values.setdefault("database_url", default_database_url(data_dir))
    values.setdefault("assets_dir", f"{data_dir}/assets")
    return Settings(**values)  # type: ignore[arg-type]


def replace(settings: Settings, **changes: object) -> Settings:
    """A copy of ``settings`` with ``changes`` applied and validated again."""
    return msgspec.structs.replace(settings, **changes)
