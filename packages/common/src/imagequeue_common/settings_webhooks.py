"""The webhook settings (#16): a base of :class:`~imagequeue_common.settings.Settings`, so
that every variable is still read, checked and documented the same way (``settings_spec``)."""

from __future__ import annotations

from typing import Annotated

import msgspec

DEFAULT_SCHEDULE = "5,300,1800,7200,18000,36000,36000"
"""Svix's: after the first attempt, again in 5 s, 5 min, 30 min, 2 h, 5 h, 10 h and 10 h."""


def csv_list(text: str) -> list[str]:
    """The non-empty, stripped entries of a comma-separated setting."""
    return [part.strip() for part in text.split(",") if part.strip()]


class WebhookSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How deliveries of job events to clients' servers are made."""

    webhook_allow_http: bool = False
    """Accept ``http://`` webhook URLs (local development); https only otherwise."""
    webhook_private_hosts: str = ""
    """Receivers that may be on private addresses: comma-separated names, IP addresses or
    CIDR networks. Empty: a URL whose host resolves to loopback, private, link-local or
    metadata addresses is refused (the SSRF guard)."""
    webhook_retry_schedule_s: str = DEFAULT_SCHEDULE
    """Seconds before each retry of a failed delivery (comma-separated): one attempt at
    once, then one per entry; after the last, the delivery is dead-lettered."""
    webhook_timeout_s: Annotated[float, msgspec.Meta(gt=0, le=60)] = 10.0
    """Connect and read timeout of one attempt (each phase)."""
    webhook_concurrency: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 50
    """Deliveries in flight at once per webhook worker process."""
    webhook_rate_limit_max: Annotated[int, msgspec.Meta(ge=0, description="0: no limit")] = 200
    """Most delivery attempts started per second, across all webhook workers (0: none)."""
    webhook_disable_after_s: Annotated[float, msgspec.Meta(gt=0)] = 5 * 86_400.0
    """An endpoint that has failed every delivery for this long is disabled (its owner
    sees why, and enables it again); Svix's 5 days."""

    @property
    def webhook_schedule_ms(self) -> tuple[int, ...]:
        """``WEBHOOK_RETRY_SCHEDULE_S`` in ms (after validation: whole seconds or fractions)."""
        return tuple(round(float(part) * 1000) for part in csv_list(self.webhook_retry_schedule_s))

    @property
    def webhook_private_host_list(self) -> tuple[str, ...]:
        """The entries of ``WEBHOOK_PRIVATE_HOSTS``."""
        return tuple(csv_list(self.webhook_private_hosts))


def is_schedule(text: str) -> bool:
    """Comma-separated seconds, each 0 to a week, at most 20 of them."""
    parts = csv_list(text)
    try:
        values = [float(part) for part in parts]
    except ValueError:
        return False
    return len(values) <= 20 and all(0 <= v <= 604_800 for v in values)
