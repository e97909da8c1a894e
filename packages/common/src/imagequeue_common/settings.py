"""Settings: read once from the environment into a frozen struct, then passed down.

Nothing else in imagequeue reads ``os.environ``. A bad value raises
:class:`~imagequeue_common.errors.SettingsError` naming the variable, so a process
stops at start with one clear line instead of failing on the first job.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal, get_type_hints

import msgspec
import msgspec.inspect as mi

from imagequeue_common.cluster import is_cluster_url
from imagequeue_common.errors import SettingsError
from imagequeue_common.queue.fairness import (
    DEFAULT_WEIGHTS,
    NO_DEADLINES,
    parse_deadlines,
    policy_arg,
)
from imagequeue_common.sentinel import is_sentinel_url
from imagequeue_common.settings_redis import redis_url_from
from imagequeue_common.settings_rules import first_broken
from imagequeue_common.settings_spec import Spec, spec_of
from imagequeue_common.settings_webhooks import WebhookSettings, csv_list

BackoffKind = Literal["exponential", "fixed"]
Backend = Literal["generic", "automatic1111", "openai", "comfyui", "runpod"]
Quality = Literal["hq", "standard", "draft"]
LogFormat = Literal["text", "json"]
LogLevel = Literal["debug", "info", "warning", "error"]
PriorityPolicy = Literal["strict", "weighted"]
BACKENDS: tuple[Backend, ...] = ("generic", "automatic1111", "openai", "comfyui", "runpod")
QUALITIES: tuple[Quality, ...] = ("hq", "standard", "draft")
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_DATA_DIR = "./data"


def default_database_url(data_dir: str = DEFAULT_DATA_DIR) -> str:
    """The store when ``DATABASE_URL`` is unset: a SQLite file under ``DATA_DIR``."""
    return f"sqlite:///{data_dir.rstrip('/')}/imagequeue.db"


def _at_least(low: int, note: str = "") -> msgspec.Meta:
    """A whole number's lower bound; ``note`` says what a special value means."""
    return msgspec.Meta(ge=low, description=note) if note else msgspec.Meta(ge=low)


def _from_to(low: int, high: int) -> msgspec.Meta:
    return msgspec.Meta(ge=low, le=high)


NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
Positive = Annotated[float, msgspec.Meta(gt=0)]

_SECRET_FIELDS = frozenset(
    {"ai_generation_api_key", "api_dev_key", "metrics_token", "admin_password",
     "admin_readonly_password"}
)  # fmt: skip
_URL_FIELDS = frozenset({"redis_url", "database_url", "ai_generation_api_url"})


class Settings(WebhookSettings, frozen=True, kw_only=True):
    """Every knob of the queue engine; defaults follow the seed document (the webhook
    ones are in :class:`WebhookSettings`)."""

    redis_url: str | None = None
    """``REDIS_URL``; else built from ``REDIS_HOST``/``REDIS_PORT``; else embedded."""
    queue_name: NonEmpty = "images"
    data_dir: NonEmpty = DEFAULT_DATA_DIR
    log_format: LogFormat = "text"
    """``text`` (the seed's lines) or ``json`` (one object per line, with job fields)."""
    log_level: LogLevel = "info"
    """``info`` logs every job's end (the seed's lifecycle lines); ``warning`` only retries,
    dead letters, stalls and faults."""

    rate_limit_max: Annotated[int, _at_least(0, "0: no limit")] = 10
    """At most this many job starts in any sliding window of ``rate_limit_duration_ms``."""
    rate_limit_duration_ms: Annotated[int, _at_least(1)] = 1000
    rate_limit_guard_ms: Annotated[int, _at_least(0)] = 25
    """The network's share of a permitted AI request's slack (``permit.lua``): the permits
    after it wait until it is surely a window behind, so the jitter between a permit and
    the request's arrival cannot squeeze ``max + 1`` requests into one window as the GPU
    side sees it (the worker adds its own loop's recent delay on top:
    ``imagequeue_worker.looplag``)."""
    worker_concurrency: Annotated[int, _from_to(1, 1000)] = 5
    expected_job_s: Positive = 45.0
    """The upstream's typical seconds per image (the seed's GPU: 30-60 s): the ETA's job
    time until the queue has measured its own, and its prior after."""
    user_max_pending: Annotated[int, _at_least(0, "0: no limit")] = 100
    """Most unfinished (waiting, delayed, active) jobs one user may have; 0: no limit."""
    user_max_active: Annotated[int, _at_least(0, "0: no limit")] = 0
    """Most jobs of one user running at once, across all workers; 0: no limit (fair share
    already gives every other user the next free slot, and a cap leaves slots idle)."""
    priority_policy: PriorityPolicy = "strict"
    """``strict``: a lower priority starts only when no higher one waits (the seed);
    ``weighted``: every priority gets turns in proportion to ``PRIORITY_WEIGHTS``."""
    priority_weights: NonEmpty = DEFAULT_WEIGHTS
    """``weighted``: each priority's share of the turns (``high=4,normal=2,low=1``)."""
    start_deadline_s: NonEmpty = NO_DEADLINES
    """An image job's deadline to start by its priority (a request may set its own), in
    seconds, 0: none; not started by then, it expires. None by default: queued means run."""
    max_queue_length: Annotated[int, _at_least(0, "0: no limit")] = 100_000
    """New jobs are refused (429) while this many wait or are delayed: about 100 MB of
    Redis, hours of work at the seed's 10/s; no flood of quota-keeping users reaches it."""
    max_queue_wait_s: Annotated[int, _at_least(0, "0: no limit")] = 0
    """New image jobs are refused (429) when their predicted wait is longer; 0: off (the
    seed queues every request; set it from what your users will wait)."""

    job_retries: Annotated[int, _from_to(0, 100)] = 3
    """Retries after the first run: 3 means 4 runs in all."""
    backoff_type: BackoffKind = "exponential"
    backoff_delay_ms: Annotated[int, _at_least(0)] = 5000

    lease_ms: Annotated[int, _at_least(30)] = 30_000
    """A claimed job's lease; a live worker renews it every third of it."""
    stall_limit: Annotated[int, _at_least(0)] = 2
    """A job that stalls more often than this is dead-lettered."""
    redis_retry_ms: Annotated[int, _at_least(10)] = 1000
    """While Redis does not answer, a worker's claim loop and finisher (and the API's probe)
    try again this often."""
    redis_min_replicas_ack: Annotated[int, _at_least(-1, "-1: auto")] = -1
    """Replicas that must have an enqueue before it is acknowledged (``WAIT``); -1: one
    with a ``redis+sentinel://`` URL, one on a ``redis+cluster://`` where the queue's
    primary has a replica, none otherwise (see ``replicas_ack``)."""
    redis_replica_ack_ms: Annotated[int, _at_least(1)] = 1000
    """How long an enqueue waits for those replicas before it is refused (503)."""

    keep_completed_ms: Annotated[int, _at_least(0)] = 24 * 3600 * 1000
    keep_failed_ms: Annotated[int, _at_least(0)] = 7 * 24 * 3600 * 1000
    clean_cron: NonEmpty = "0 */6 * * *"
    events_maxlen: Annotated[int, _at_least(100)] = 10_000
    """Approximate cap of the queue's event stream."""
    events_token_ttl_s: Annotated[int, _from_to(10, 86_400)] = 900
    """How long a browser's job-scoped event-stream token may be used to connect."""
    events_keepalive_s: Positive = 15.0
    """Idle time after which an event stream sends a keep-alive comment."""

    api_host: NonEmpty = "127.0.0.1"
    api_port: Annotated[int, _from_to(1, 65535)] = 8088
    """The seed's port; the dashboard lives on it too (``/admin/queues``)."""
    api_processes: Annotated[int, _from_to(1, 64)] = 1
    api_max_body_bytes: Annotated[int, _at_least(1024)] = 64 * 1024
    api_user_rps: Annotated[int, _at_least(0, "0: no limit")] = 20
    """Requests per second one API key may make (429 with Retry-After beyond); 0: no limit."""
    api_dev_key: str = ""
    """A development key accepted as a ``premium`` user ``dev`` (``just up`` sets one)."""
    metrics_token: str = ""
    """Bearer token for ``/metrics``; unset means ``/metrics`` is off."""
    admin_username: NonEmpty = "admin"
    admin_password: str = ""
    """The dashboard's admin login; unset means the dashboard is off (not open)."""
    admin_readonly_username: str = ""
    admin_readonly_password: str = ""
    """An optional login that can look at the dashboard but not act."""
    admin_session_idle_s: Positive = 3600.0
    """A dashboard session not used for this long ends (every page and live poll renews it)."""
    admin_session_max_s: Positive = 8 * 3600.0
    """A dashboard session ends this long after its login, however much it is used."""
    admin_login_max_failures: Annotated[int, _at_least(1)] = 5
    """Wrong passwords one username may get in ``admin_login_window_s`` before it is locked."""
    admin_login_max_failures_per_address: Annotated[int, _at_least(1)] = 30
    """Wrong passwords one client address may send in the window, whatever the username."""
    admin_login_window_s: Positive = 900.0
    """The window failures are counted in (from the first failure)."""
    admin_login_lockout_s: Positive = 900.0
    """How long a locked username or address is refused (429 with ``Retry-After``)."""

    database_url: NonEmpty = default_database_url()
    """Characters and poses: ``sqlite:///<file>``, ``postgresql://...`` or ``mongodb://...``."""
    assets_dir: NonEmpty = "./data/assets"
    """Where images are written (``<assets_dir>/characters/<file>.png``)."""
    assets_url_prefix: NonEmpty = "/assets"
    """The URL path under which ``assets_dir`` is served."""

    ai_generation_enabled: bool = True
    """False: no image job is queued, and callers are told so."""
    ai_generation_api_url: str | None = None
    """The upstream: the full URL for ``generic``, the base URL for the others."""
    ai_generation_backend: Backend = "generic"
    ai_generation_quality: Quality = "hq"
    ai_generation_api_key: str = ""
    """Sent as ``Authorization: Bearer <key>``, or raw in ``AI_GENERATION_API_KEY_HEADER``."""
    ai_generation_api_key_header: NonEmpty = "Authorization"
    ai_generation_model: str = ""
    """openai: the model (default ``gpt-image-1``); comfyui: the checkpoint file name."""
    ai_image_width: Annotated[int, _from_to(64, 2048)] = 768
    ai_image_height: Annotated[int, _from_to(64, 2048)] = 1024
    ai_negative_prompt: str = "blurry, low quality, deformed, watermark, text"
    ai_connect_timeout_s: Positive = 10.0
    ai_read_timeout_s: Positive = 90.0
    """Longest silence while a response is awaited or read."""
    ai_total_timeout_s: Positive = 120.0
    """Longest one upstream generation may take in all, polling included."""
    ai_max_response_bytes: Annotated[int, _at_least(1024)] = 32 * 1024 * 1024
    ai_poll_interval_ms: Annotated[int, _at_least(1)] = 1000
    """comfyui and runpod: how often a submitted generation is polled."""
    ai_result_url_private_hosts: str = ""
    """An answer's image URL on another origin than the upstream's must reach a public
    address, unless its host is listed here: comma-separated names, IP addresses or CIDR
    networks (``files.internal,10.8.0.0/16``). Empty: none (the SSRF guard)."""

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
    def fairness(self) -> str:
        """The waiting order's policy as the Lua scripts take it (``queue.fairness``)."""
        return policy_arg(self.priority_policy, self.priority_weights)

    def start_deadline_ms(self, priority: str) -> int:
        """``START_DEADLINE_S`` of ``priority`` (``high``, ``normal``, ``low``) in ms; 0: none."""
        return (parse_deadlines(self.start_deadline_s) or {}).get(priority, 0) * 1000

    @property
    def result_url_private_hosts(self) -> tuple[str, ...]:
        """The entries of ``AI_RESULT_URL_PRIVATE_HOSTS``."""
        return tuple(csv_list(self.ai_result_url_private_hosts))

    @property
    def webhook_queue(self) -> str:
        """The queue whose jobs are webhook deliveries (its own limit and concurrency)."""
        return f"{self.queue_name}-webhooks"

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
        # Each field's own bounds, as its annotation states them; then what spans fields or
        # needs more than a bound.
        for spec in _SPECS:
            if (problem := spec.problem(getattr(self, spec.field))) is not None:
                raise SettingsError(f"{spec.env} {problem}")
        if (broken := first_broken(self)) is not None:
            raise SettingsError(broken)


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs and reprs)."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    userinfo, _, host = rest.partition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in userinfo else url


_SPECS: tuple[Spec, ...] = tuple(
    spec_of(f, get_type_hints(Settings))
    for f in mi.type_info(Settings).fields  # type: ignore[attr-defined]
    if f.name != "redis_url"  # REDIS_URL, else REDIS_HOST/REDIS_PORT: settings_redis
)
ENV_NAMES: tuple[str, ...] = ("REDIS_URL", *(spec.env for spec in _SPECS))
"""Every variable the settings read (with ``REDIS_HOST`` and ``REDIS_PORT``)."""


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build :class:`Settings` from environment variables (unset ones keep defaults)."""
    values: dict[str, object] = {"redis_url": redis_url_from(environ)}
    for spec in _SPECS:
        raw = environ.get(spec.env)
        if raw is not None and raw.strip() != "":
            values[spec.field] = spec.parse(raw)
    # The database and the images live under DATA_DIR unless placed elsewhere on purpose.
    data_dir = str(values.get("data_dir", DEFAULT_DATA_DIR)).rstrip("/")
    values.setdefault("database_url", default_database_url(data_dir))
    values.setdefault("assets_dir", f"{data_dir}/assets")
    return Settings(**values)  # type: ignore[arg-type]


def replace(settings: Settings, **changes: object) -> Settings:
    """A copy of ``settings`` with ``changes`` applied and validated again."""
    return msgspec.structs.replace(settings, **changes)
