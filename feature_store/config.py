"""Configuration of the online feature store (Redis connection, timeouts, breaker)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator


def redact_url(url: str | None) -> str | None:
    """`url` with any password in it replaced by ``***`` (``redis://user:***@host:6379/0``)."""
    if not url or "@" not in url:
        return url
    scheme, sep, rest = url.partition("://")
    userinfo, _, host = rest.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


class RedisSettings(BaseModel):
    """Where the Redis online store lives and how hard to wait for it."""

    model_config = ConfigDict(frozen=True)

    url: str | None = None
    """Full redis:// or rediss:// URL; wins over host/port when set."""
    host: str = "127.0.0.1"
    """Redis host when no URL is given."""
    port: int = 6379
    """Redis port when no URL is given."""
    username: str | None = None
    """Redis ACL user (None: the default user); each role has its own (see `feature_store.acl`)."""
    password: str | None = None
    """Redis password (from a Secret on Kubernetes)."""
    tls: bool = False
    """Connect with TLS (rediss) when building the URL from host/port."""
    cluster: bool = False
    """Talk to a Redis Cluster instead of a single server."""
    socket_timeout_s: float = 0.05
    """Read timeout per request; past it the read falls back to the embedded store."""
    connect_timeout_s: float = 0.05
    """Connect timeout."""
    max_connections: int = 32
    """Connection pool size."""
    failure_threshold: int = 3
    """Consecutive failures that open the circuit breaker."""
    reset_timeout_s: float = 5.0
    """How long the breaker stays open before letting one trial read through."""
    active_version_ttl_s: float = 1.0
    """How long a process caches the active-version pointer (rs:v1:active) before re-reading."""
    materialize_timeout_s: float = 10.0
    """Socket timeout of the materialization client (big pipelined batches, not the hot path)."""
    materialize_batch_size: int = 2000
    """Rows per MSET when materializing."""

    @property
    def resolved_url(self) -> str:
        """The URL to connect to, built from host/port/TLS when `url` is unset."""
        if self.url:
            return self.url
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{self.host}:{self.port}/0"

    def client_options(self, socket_timeout_s: float | None = None) -> dict[str, Any]:
        """redis-py connection options (sync or asyncio): timeouts, pool size, credentials.

        Args:
            socket_timeout_s: overrides `socket_timeout_s` (materialization waits longer).
        """
        options: dict[str, Any] = {
            "socket_timeout": socket_timeout_s or self.socket_timeout_s,
            "socket_connect_timeout": self.connect_timeout_s,
            "max_connections": self.max_connections,
        }
        if self.username:
            options["username"] = self.username
        if self.password:
            options["password"] = self.password
        return options

    @property
    def redacted_url(self) -> str:
        """`resolved_url` without the password a URL may carry (for logs, errors and /info)."""
        return redact_url(self.resolved_url) or ""

    @model_validator(mode="after")
    def _check(self) -> RedisSettings:
        if self.url is not None and not self.url.strip():
            raise ValueError("redis url is empty: unset it or give redis://host:port")
        if self.url and not self.url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(
                f"redis url must start with redis://, rediss:// or unix://: {self.url}"
            )
        if self.socket_timeout_s <= 0 or self.connect_timeout_s <= 0:
            raise ValueError("redis timeouts must be positive")
        if self.failure_threshold < 1:
            raise ValueError("redis failure_threshold must be at least 1")
        if self.reset_timeout_s <= 0 or self.active_version_ttl_s < 0:
            raise ValueError("redis reset_timeout_s must be positive, active_version_ttl_s >= 0")
        if self.max_connections < 1 or self.materialize_batch_size < 1:
            raise ValueError("redis max_connections and materialize_batch_size must be >= 1")
        return self


class EventSettings(BaseModel):
    """Where POST /events keeps what it accepted, and how much of it (RECSYS_EVENTS__*)."""

    model_config = ConfigDict(frozen=True)

    dir: Path = Path.home() / ".local" / "state" / "recsys" / "events"
    """The event log of this replica (segments + the Redis cursor); one directory per replica."""
    segment_bytes: int = 64 * 1024 * 1024
    """A new log segment starts past this size."""
    max_segments: int = 16
    """Segments kept; older ones are deleted (the log is bounded)."""
    stream_maxlen: int = 1_000_000
    """The Redis stream of events is trimmed to about this many entries."""
    replay_interval_s: float = 1.0
    """How often events that could not reach Redis are retried."""

    @model_validator(mode="after")
    def _check(self) -> EventSettings:
        if self.segment_bytes < 1024 or self.max_segments < 1 or self.stream_maxlen < 1:
            raise ValueError(
                "events: segment_bytes must be >= 1024, max_segments and stream_maxlen >= 1"
            )
        if self.replay_interval_s <= 0:
            raise ValueError("events: replay_interval_s must be positive")
        return self
