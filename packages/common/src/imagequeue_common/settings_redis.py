"""Where Redis is, from the environment: ``REDIS_URL`` (plain, Sentinel or Cluster), else
``REDIS_HOST`` and ``REDIS_PORT``."""

from __future__ import annotations

from collections.abc import Mapping

from imagequeue_common.cluster import is_cluster_url, parse_cluster_url
from imagequeue_common.errors import SettingsError
from imagequeue_common.sentinel import is_sentinel_url, parse_sentinel_url
from imagequeue_common.settings_spec import Spec


def redis_url_from(environ: Mapping[str, str]) -> str | None:
    """``REDIS_URL`` checked, else one built from ``REDIS_HOST``/``REDIS_PORT``, else None."""
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
    port_spec = Spec("redis_port", "REDIS_PORT", "int", ge=1, le=65535)
    port = port_spec.parse(environ.get("REDIS_PORT", "6379"))
    if (problem := port_spec.problem(port)) is not None:
        raise SettingsError(f"REDIS_PORT {problem}")
    return f"redis://{host}:{port}/0"
