"""Settings come from the environment once; a bad value names its variable."""

from __future__ import annotations

import pytest

from imagequeue_common.errors import SettingsError
from imagequeue_common.settings import (
    DEFAULT_REDIS_URL,
    ENV_NAMES,
    Settings,
    load_settings,
    replace,
)
from tests.support.procs import ROOT


def test_defaults_follow_the_seed() -> None:
    s = load_settings({})
    assert (s.rate_limit_max, s.rate_limit_duration_ms, s.worker_concurrency) == (10, 1000, 5)
    assert (s.job_retries, s.backoff_type, s.backoff_delay_ms) == (3, "exponential", 5000)
    assert (s.keep_completed_ms, s.keep_failed_ms) == (24 * 3600_000, 7 * 24 * 3600_000)
    assert s.clean_cron == "0 */6 * * *"
    assert s.redis_url is None
    assert s.redis_url_or_default == DEFAULT_REDIS_URL


def test_seed_redis_host_and_port() -> None:
    s = load_settings({"REDIS_HOST": "redis", "REDIS_PORT": "6380"})
    assert s.redis_url == "redis://redis:6380/0"


def test_redis_url_wins_over_host() -> None:
    s = load_settings({"REDIS_URL": "redis://a:1/2", "REDIS_HOST": "b"})
    assert s.redis_url == "redis://a:1/2"


def test_values_are_parsed() -> None:
    s = load_settings({
        "RATE_LIMIT_MAX": "20", "RATE_LIMIT_DURATION_MS": "500", "WORKER_CONCURRENCY": "10",
        "JOB_RETRIES": "5", "BACKOFF_TYPE": "FIXED", "BACKOFF_DELAY_MS": "10_000",
        "QUEUE_NAME": "gpu-a", "LOG_LEVEL": "Warning",
    })  # fmt: skip
    assert (s.rate_limit_max, s.rate_limit_duration_ms, s.worker_concurrency) == (20, 500, 10)
    assert (s.job_retries, s.backoff_type, s.backoff_delay_ms) == (5, "fixed", 10_000)
    assert (s.queue_name, s.log_level) == ("gpu-a", "warning")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RATE_LIMIT_MAX": "ten"}, "RATE_LIMIT_MAX must be a whole number"),
        ({"RATE_LIMIT_MAX": "-1"}, "RATE_LIMIT_MAX must be 0"),
        ({"WORKER_CONCURRENCY": "0"}, "WORKER_CONCURRENCY must be from 1"),
        ({"BACKOFF_TYPE": "linear"}, "BACKOFF_TYPE must be 'exponential' or 'fixed'"),
        ({"LEASE_MS": "5"}, "LEASE_MS must be at least 30"),
        ({"REDIS_URL": "http://x"}, "REDIS_URL must start with"),
        ({"REDIS_HOST": "h", "REDIS_PORT": "70000"}, "REDIS_PORT must be from 1"),
        ({"QUEUE_NAME": "a b"}, "QUEUE_NAME must be"),
        ({"QUEUE_NAME": "x{y}"}, "QUEUE_NAME must be"),
        ({"CLEAN_CRON": "every 6 hours"}, "CLEAN_CRON must be 5 cron fields"),
        (
            {"LOG_LEVEL": "verbose"},
            "LOG_LEVEL must be 'debug', 'info', 'warning' or 'error', got 'verbose'",
        ),
        ({"CLEAN_CRON": "0 */6 * *"}, "CLEAN_CRON must be 5 cron fields"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(env)


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.rate_limit_max = 1  # type: ignore[misc]


def test_image_pipeline_defaults() -> None:
    s = load_settings({})
    assert s.ai_generation_enabled is True
    assert (s.ai_generation_backend, s.ai_generation_quality) == ("generic", "hq")
    assert s.ai_generation_api_url is None
    assert s.database_url == "sqlite:///./data/imagequeue.db"
    assert (s.assets_dir, s.assets_url_prefix) == ("./data/assets", "/assets")
    assert s.ai_total_timeout_s == 120.0


def test_image_pipeline_values_are_parsed() -> None:
    s = load_settings({
        "AI_GENERATION_ENABLED": "false", "AI_GENERATION_API_URL": "https://gpu.example/generate",
        "AI_GENERATION_BACKEND": "RunPod", "AI_GENERATION_QUALITY": "draft",
        "AI_TOTAL_TIMEOUT_S": "2.5", "DATABASE_URL": "postgresql://u@db/x",
    })  # fmt: skip
    assert s.ai_generation_enabled is False
    assert s.ai_generation_backend == "runpod"
    assert s.ai_generation_quality == "draft"
    assert s.ai_total_timeout_s == 2.5
    assert s.database_url == "postgresql://u@db/x"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"AI_GENERATION_ENABLED": "maybe"}, "AI_GENERATION_ENABLED must be true or false"),
        (
            {"AI_GENERATION_BACKEND": "midjourney"},
            "AI_GENERATION_BACKEND must be 'generic', 'automatic1111'",
        ),
        (
            {"AI_GENERATION_QUALITY": "ultra"},
            "AI_GENERATION_QUALITY must be 'hq', 'standard' or 'draft'",
        ),
        ({"AI_GENERATION_API_URL": "ftp://x"}, "AI_GENERATION_API_URL must start with http"),
        ({"AI_TOTAL_TIMEOUT_S": "nan"}, "AI_TOTAL_TIMEOUT_S must be a finite number"),
        ({"AI_TOTAL_TIMEOUT_S": "0"}, "AI_TOTAL_TIMEOUT_S must be above 0"),
        ({"AI_READ_TIMEOUT_S": "soon"}, "AI_READ_TIMEOUT_S must be a number"),
        ({"AI_IMAGE_WIDTH": "4096"}, "AI_IMAGE_WIDTH must be from 64 to 2048, got 4096"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL must start with sqlite:///"),
        ({"ASSETS_URL_PREFIX": "/assets/"}, "ASSETS_URL_PREFIX must start with"),
        ({"AI_GENERATION_API_KEY_HEADER": "X Key"}, "AI_GENERATION_API_KEY_HEADER must be"),
    ],
)
def test_bad_pipeline_values_name_their_variable(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError, match=needle):
        load_settings(env)


def test_repr_hides_keys_and_passwords() -> None:
    s = load_settings({
        "AI_GENERATION_API_KEY": "sk-secret-123",
        "REDIS_URL": "redis://:hunter2@redis:6379/0",
        "DATABASE_URL": "postgresql://app:pw-77@db/imagequeue",
    })  # fmt: skip
    text = repr(s)
    for secret in ("sk-secret-123", "hunter2", "pw-77"):
        assert secret not in text
    assert "postgresql://app:***@db/imagequeue" in text
    assert "ai_generation_api_key='***'" in text


def test_every_setting_is_read_from_its_name_and_documented() -> None:
    # Names come from the struct's fields: each one set in the environment takes effect.
    readme = (ROOT / "README.md").read_text()
    fields = set(Settings.__struct_fields__)
    assert {name.lower() for name in ENV_NAMES} == fields
    assert [name for name in ENV_NAMES if f"`{name}`" not in readme] == []
    assert load_settings({"EVENTS_MAXLEN": " 2_000 "}).events_maxlen == 2000
    assert load_settings({"ADMIN_READONLY_USERNAME": "ro", "ADMIN_READONLY_PASSWORD": "x" * 12})


@pytest.mark.parametrize(
    ("changes", "needle"),
    [
        ({"worker_concurrency": 0}, "WORKER_CONCURRENCY must be from 1 to 1000, got 0"),
        ({"rate_limit_max": -1}, r"RATE_LIMIT_MAX must be 0 or more \(0: no limit\), got -1"),
        ({"ai_total_timeout_s": 0.0}, "AI_TOTAL_TIMEOUT_S must be above 0, got 0.0"),
        ({"queue_name": ""}, "QUEUE_NAME must not be empty"),
    ],
)
def test_bounds_hold_for_settings_built_in_code_too(
    changes: dict[str, object], needle: str
) -> None:
    # The annotation's bounds are checked in __post_init__, not only when reading the
    # environment: `replace` and a Settings(...) in a test get the same message.
    with pytest.raises(SettingsError, match=needle):
        replace(Settings(), **changes)
    with pytest.raises(SettingsError, match=needle):
        Settings(**changes)  # type: ignore[arg-type]
