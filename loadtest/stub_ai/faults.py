"""Deciding each submission's outcome and latency from the current config."""

from __future__ import annotations

import random

import msgspec

from loadtest.stub_ai.config import Outcome, StubConfig, apply_changes


class FaultPlan:
    """The live config plus the RNG that draws outcomes and latencies from it.

    The script is consumed by replacing the config, so ``GET /stub/config`` always shows
    what is left of it.
    """

    def __init__(self, config: StubConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)  # noqa: S311  (fault draws, not secrets)

    def reconfigure(self, changes: object) -> StubConfig:
        """Apply a partial change (raises ``ConfigError``, leaving the config as it was)."""
        self.config = apply_changes(self.config, changes)
        if isinstance(changes, dict) and "seed" in changes:
            self._rng.seed(self.config.seed)
        return self.config

    def restart(self) -> None:
        """Drop the rest of the script and reseed, so a seeded run replays after a reset."""
        self.config = msgspec.structs.replace(self.config, script=())
        self._rng.seed(self.config.seed)

    def next_outcome(self, in_flight: int) -> Outcome:
        """Script item if any, else 503 when at ``max_concurrency``, else a draw over the rates."""
        config = self.config
        if config.script:
            self.config = msgspec.structs.replace(config, script=config.script[1:])
            return config.script[0]
        if config.max_concurrency and in_flight >= config.max_concurrency:
            return "503"
        draw = self._rng.random()
        rates: tuple[tuple[Outcome, float], ...] = (
            ("error", config.error_rate),
            ("429", config.rate_429),
            ("hang", config.hang_rate),
            ("invalid", config.invalid_rate),
            ("400", config.bad_request_rate),
        )
        for outcome, rate in rates:
            if draw < rate:
                return outcome
            draw -= rate
        return "ok"

    def latency_s(self) -> float:
        """One generation's duration: uniform in the configured range, times ``time_scale``."""
        config = self.config
        return self._rng.uniform(config.latency_min_s, config.latency_max_s) * config.time_scale

    def random_seed(self) -> int:
        """A seed for requests that ask for a random one (automatic1111's ``-1``)."""
        return self._rng.randrange(2**32)

    def retry_after(self) -> str:
        """``retry_after_s`` as the ``Retry-After`` value: ``2`` or ``0.5``, as configured."""
        value = self.config.retry_after_s
        return str(int(value)) if value.is_integer() else repr(value)
