"""The stub's knobs: read from ``STUB_*`` variables at start, changed at run time over HTTP.

Every change builds a new frozen :class:`StubConfig` and validates it as a whole, so a bad
value leaves the running config untouched and the error names the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec

Outcome = Literal["ok", "error", "429", "hang", "invalid", "400", "503"]
InvalidKind = Literal["truncated", "html"]

Rate = Annotated[float, msgspec.Meta(ge=0, le=1)]
Seconds = Annotated[float, msgspec.Meta(ge=0)]
ENV_PREFIX = "STUB_"


class StubConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Latency, fault rates and limits of the stub; defaults give a healthy 30-60 s GPU."""

    latency_min_s: Seconds = 30.0
    latency_max_s: Seconds = 60.0
    time_scale: Seconds = 1.0
    """Every latency is multiplied by this, so tests run the same script in milliseconds."""
    error_rate: Rate = 0.0
    rate_429: Rate = 0.0
    retry_after_s: Seconds = 2.0
    """Sent as given in ``Retry-After`` (fractions too: scaled tests need them)."""
    hang_rate: Rate = 0.0
    invalid_rate: Rate = 0.0
    invalid_kind: InvalidKind = "truncated"
    bad_request_rate: Rate = 0.0
    max_concurrency: Annotated[int, msgspec.Meta(ge=0)] = 0
    """0 means unlimited; else submissions beyond this many in flight get 503."""
    api_key: str = ""
    """When set, protocol requests must carry ``Authorization: Bearer <api_key>``."""
    script: tuple[Outcome, ...] = ()
    """Forced outcomes, consumed one per submission before the rates apply."""
    seed: int | None = None
    """Seed of the fault and latency RNG, for reproducible runs."""

    def __post_init__(self) -> None:
        if self.latency_min_s > self.latency_max_s:
            raise ValueError("latency_min_s must not exceed latency_max_s")
        rates = (
            self.error_rate + self.rate_429 + self.hang_rate
            + self.invalid_rate + self.bad_request_rate
        )  # fmt: skip
        if rates > 1:
            raise ValueError(
                "error_rate + rate_429 + hang_rate + invalid_rate + bad_request_rate "
                f"must not exceed 1, got {rates:g}"
            )


class ConfigError(ValueError):
    """A config change or ``STUB_*`` variable was rejected; the message names the field."""


def apply_changes(config: StubConfig, changes: object) -> StubConfig:
    """A new config with ``changes`` (a JSON object) applied; raises :class:`ConfigError`."""
    if not isinstance(changes, dict):
        raise ConfigError("the body must be a JSON object of config fields")
    merged = {**msgspec.structs.asdict(config), **changes}
    try:
        return msgspec.convert(merged, StubConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(str(exc)) from None


def load_config(environ: Mapping[str, str]) -> StubConfig:
    """Build the config from ``STUB_<FIELD>`` variables; unset or empty ones keep defaults.

    ``STUB_SCRIPT`` is a comma-separated list of outcomes, e.g. ``429,error,ok``.
    """
    values: dict[str, Any] = {}
    for field in StubConfig.__struct_fields__:
        raw = environ.get(ENV_PREFIX + field.upper(), "").strip()
        if raw:
            values[field] = [s.strip() for s in raw.split(",")] if field == "script" else raw
    try:
        # strict=False lets msgspec turn the strings into numbers with its usual checks.
        return msgspec.convert(values, StubConfig, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        for field in StubConfig.__struct_fields__:
            message = message.replace(f"`$.{field}", f"`{ENV_PREFIX}{field.upper()}")
        raise ConfigError(message) from None
