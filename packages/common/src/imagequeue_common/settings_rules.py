"""What the settings must satisfy beyond each field's own bounds: rules spanning fields,
and values a bound cannot check (URLs, names, cron specs, host lists).

:class:`~imagequeue_common.settings.Settings` asks :func:`first_broken` when it is built.
"""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING

from imagequeue_common.queue.fairness import parse_deadlines, parse_weights
from imagequeue_common.settings_webhooks import is_schedule

if TYPE_CHECKING:
    from imagequeue_common.settings import Settings


def first_broken(s: Settings) -> str | None:
    """The message of the first rule ``s`` breaks, if any."""
    checks: list[tuple[str, bool]] = [
        (
            "ADMIN_PASSWORD and ADMIN_READONLY_PASSWORD must be empty or 12+ characters",
            all(len(p) == 0 or len(p) >= 12 for p in (s.admin_password, s.admin_readonly_password)),
        ),
        (
            "ADMIN_READONLY_USERNAME and ADMIN_READONLY_PASSWORD go together",
            bool(s.admin_readonly_username) == bool(s.admin_readonly_password),
        ),
        (
            "API_DEV_KEY and METRICS_TOKEN must be empty or at least 16 characters",
            all(len(t) == 0 or len(t) >= 16 for t in (s.api_dev_key, s.metrics_token)),
        ),
        (
            "DATABASE_URL must start with sqlite:///, postgresql://, postgres://, "
            "mongodb:// or mongodb+srv://",
            s.database_url.startswith(
                ("sqlite:///", "postgresql://", "postgres://", "mongodb://", "mongodb+srv://")
            ),
        ),
        (
            "ASSETS_URL_PREFIX must start with '/' or http(s):// and not end with '/'",
            s.assets_url_prefix.startswith(("/", "http://", "https://"))
            and not s.assets_url_prefix.endswith("/"),
        ),
        (
            "AI_GENERATION_API_URL must start with http:// or https://",
            s.ai_generation_api_url is None
            or s.ai_generation_api_url.startswith(("http://", "https://")),
        ),
        (
            "AI_GENERATION_API_KEY_HEADER must be an HTTP header name",
            is_header_name(s.ai_generation_api_key_header),
        ),
        (
            "AI_RESULT_URL_PRIVATE_HOSTS must be comma-separated host names, IP addresses "
            "or CIDR networks",
            all(map(is_host_or_network, s.result_url_private_hosts)),
        ),
        (
            "PRIORITY_WEIGHTS must name high, normal and low once each with a whole weight "
            f"from 1 to 100, like 'high=4,normal=2,low=1', got {s.priority_weights!r}",
            parse_weights(s.priority_weights) is not None,
        ),
        (
            "START_DEADLINE_S must name high, normal and low once each with whole seconds "
            f"from 0 (none) to 604800 (a week), like 'high=0,normal=0,low=600', got "
            f"{s.start_deadline_s!r}",
            parse_deadlines(s.start_deadline_s) is not None,
        ),
        (
            "QUEUE_NAME must be 1-64 characters of letters, digits, '-', '_' or '.'",
            is_queue_name(s.queue_name),
        ),
        (
            "WEBHOOK_PRIVATE_HOSTS must be comma-separated host names, IP addresses or "
            "CIDR networks",
            all(map(is_host_or_network, s.webhook_private_host_list)),
        ),
        (
            "WEBHOOK_RETRY_SCHEDULE_S must be at most 20 comma-separated seconds from 0 to "
            f"604800, like '5,300,1800', got {s.webhook_retry_schedule_s!r}",
            is_schedule(s.webhook_retry_schedule_s),
        ),
        (
            f"CLEAN_CRON must be 5 cron fields like '0 */6 * * *', got {s.clean_cron!r}",
            is_cron(s.clean_cron),
        ),
    ]
    return next((message for message, ok in checks if not ok), None)


def is_queue_name(name: str) -> bool:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
    return 0 < len(name) <= 64 and set(name) <= allowed


def is_header_name(name: str) -> bool:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")
    return 0 < len(name) <= 64 and set(name) <= allowed


def is_host_or_network(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry, strict=False)
    except ValueError:
        allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.")
        return 0 < len(entry) <= 253 and set(entry) <= allowed
    return True


def is_cron(spec: str) -> bool:
    fields = spec.split()
    allowed = set("0123456789*/,-")
    return len(fields) == 5 and all(set(f) <= allowed for f in fields)
