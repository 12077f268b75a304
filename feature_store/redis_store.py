"""The Redis online store: packed float32 rows under versioned keys (layout in `keys`).

A read is one round trip: a single MGET of the user key and the N item keys (they share the
version's hash tag, so this holds on a Redis Cluster too). The active version pointer is read
with one GET and cached for `RedisSettings.active_version_ttl_s`; its metadata (columns,
default rows) is read once per version.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from feature_store import keys
from feature_store.base import FeatureRows
from feature_store.config import RedisSettings
from feature_store.errors import (
    FeatureStoreTimeout,
    FeatureStoreUnavailable,
    NoActiveVersion,
    VersionMismatch,
)

logger = logging.getLogger(__name__)

RedisClient = redis.Redis | RedisCluster


def make_client(settings: RedisSettings, socket_timeout_s: float | None = None) -> RedisClient:
    """A pooled client (plain or cluster) with tight timeouts and no retries.

    Retries are off on purpose: the circuit breaker decides when to try Redis again, and a
    retried timeout would multiply the worst-case read latency.

    Args:
        settings: connection settings.
        socket_timeout_s: overrides `settings.socket_timeout_s` (materialization waits longer).
    """
    options = {**settings.client_options(socket_timeout_s), "retry": Retry(NoBackoff(), 0)}
    if settings.cluster:
        return RedisCluster.from_url(settings.resolved_url, **options)
    return redis.Redis.from_url(settings.resolved_url, health_check_interval=0, **options)


@dataclass(frozen=True)
class VersionMeta:
    """What the metadata key of one materialized version says."""

    version: str
    user_columns: tuple[str, ...]
    item_columns: tuple[str, ...]
    default_user: np.ndarray  # (Fu,) float32
    default_item: np.ndarray  # (Fi,) float32

    @classmethod
    def from_json(cls, version: str, raw: bytes) -> VersionMeta:
        """Parse the JSON written by materialization."""
        meta = json.loads(raw)
        return cls(
            version=version,
            user_columns=tuple(meta["user_columns"]),
            item_columns=tuple(meta["item_columns"]),
            default_user=np.asarray(meta["default_user"], dtype=np.float32),
            default_item=np.asarray(meta["default_item"], dtype=np.float32),
        )


@dataclass(frozen=True)
class RedisRows:
    """Raw result of one Redis read: rows where Redis had a valid value, masks elsewhere."""

    version: str
    user: np.ndarray  # (Fu,) float32, meaningful only where user_ok
    items: np.ndarray  # (N, Fi) float32, meaningful only where items_ok
    user_ok: bool
    items_ok: np.ndarray  # (N,) bool
    missing: int  # keys absent from Redis
    bad: int  # values of the wrong byte length


class RedisFeatureStore:
    """`FeatureStore` over Redis; raises `FeatureStoreUnavailable` when Redis cannot answer.

    Args:
        settings: connection, timeouts and pointer cache TTL.
        expected_version: the feature version the models were trained with; an active version
            other than this one raises `VersionMismatch` (None accepts any active version).
        clock: monotonic seconds, for the pointer cache.
    """

    backend = "redis"

    def __init__(
        self,
        settings: RedisSettings,
        expected_version: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.expected_version = expected_version
        self._clock = clock
        self._client: RedisClient | None = None
        self._lock = threading.Lock()
        self._meta: VersionMeta | None = None
        self._pointer_error: NoActiveVersion | VersionMismatch | None = None
        self._checked_at = -float("inf")

    @property
    def client(self) -> RedisClient:
        """The pooled client, created on first use (a cluster client connects when created)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    self._client = self.call(make_client, self.settings)
        return self._client

    @property
    def version(self) -> str:
        """The active feature version."""
        return self.active_meta().version

    @property
    def user_columns(self) -> tuple[str, ...]:
        """User feature column order of the active version."""
        return self.active_meta().user_columns

    @property
    def item_columns(self) -> tuple[str, ...]:
        """Item feature column order of the active version."""
        return self.active_meta().item_columns

    def active_meta(self) -> VersionMeta:
        """Metadata of the active version, re-reading the pointer at most once per TTL.

        Raises:
            NoActiveVersion: no pointer, or it names a version without metadata (stale).
            VersionMismatch: the active version is not `expected_version`.
            FeatureStoreUnavailable: Redis did not answer.
        """
        if self._clock() - self._checked_at >= self.settings.active_version_ttl_s:
            self._refresh_pointer()
        if self._pointer_error is not None:
            raise self._pointer_error
        assert self._meta is not None
        return self._meta

    def _refresh_pointer(self) -> None:
        raw = self.call(self.client.get, keys.ACTIVE_KEY)
        error: NoActiveVersion | VersionMismatch | None = None
        if raw is None:
            error = NoActiveVersion(f"no active feature version ({keys.ACTIVE_KEY} is missing)")
        else:
            version = raw.decode()
            if self._meta is None or self._meta.version != version:
                raw_meta = self.call(self.client.get, keys.meta_key(version))
                if raw_meta is None:
                    error = NoActiveVersion(
                        f"active feature version {version} is stale: "
                        f"{keys.meta_key(version)} is missing"
                    )
                else:
                    self._meta = VersionMeta.from_json(version, raw_meta)
            if error is None and self.expected_version not in (None, version):
                error = VersionMismatch(str(self.expected_version), version)
        self._pointer_error = error
        self._checked_at = self._clock()

    def invalidate(self) -> None:
        """Forget the cached pointer so the next read re-reads it."""
        self._checked_at = -float("inf")

    def fetch(self, user_id: int, item_ids: np.ndarray) -> RedisRows:
        """One MGET of the user and the items; rows Redis lacks or holds corrupt are masked.

        Raises:
            FeatureStoreUnavailable: Redis refused, reset or timed out.
            NoActiveVersion, VersionMismatch: see `active_meta`.
        """
        meta = self.active_meta()
        prefix = keys.version_prefix(meta.version)
        item_prefix = prefix + "i:"
        names = [f"{prefix}u:{user_id}"]
        names += [item_prefix + str(i) for i in np.asarray(item_ids).tolist()]
        values = self.call(self.client.mget, names)
        user_width = 4 * len(meta.user_columns)
        item_width = 4 * len(meta.item_columns)
        user_raw, item_raw = values[0], values[1:]
        missing = int(user_raw is None)
        bad = int(user_raw is not None and len(user_raw) != user_width)
        user_ok = missing == 0 and bad == 0
        user = np.frombuffer(user_raw, keys.ROW_DTYPE) if user_ok else meta.default_user.copy()
        n = len(item_raw)
        if all(v is not None and len(v) == item_width for v in item_raw):
            items = np.frombuffer(b"".join(item_raw), keys.ROW_DTYPE).reshape(n, item_width // 4)
            items_ok = np.ones(n, dtype=bool)
        else:
            items = np.empty((n, len(meta.item_columns)), dtype=np.float32)
            items[:] = meta.default_item
            items_ok = np.zeros(n, dtype=bool)
            for row, value in enumerate(item_raw):
                if value is None:
                    missing += 1
                elif len(value) != item_width:
                    bad += 1
                else:
                    items[row] = np.frombuffer(value, keys.ROW_DTYPE)
                    items_ok[row] = True
        return RedisRows(meta.version, user, items, user_ok, items_ok, missing, bad)

    def read(self, user_id: int, item_ids: np.ndarray) -> FeatureRows:
        """Rows for one user and N items; absent or corrupt rows get the default rows.

        Raises:
            FeatureStoreUnavailable: Redis refused, reset or timed out.
            NoActiveVersion, VersionMismatch: see `active_meta`.
        """
        rows = self.fetch(user_id, item_ids)
        if rows.bad:
            logger.warning(
                "redis version %s: %d feature values of the wrong length for user "
                "%s's request, served default rows",
                rows.version,
                rows.bad,
                user_id,
            )
        return FeatureRows(rows.user, rows.items, rows.user_ok, rows.items_ok, self.backend)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run one Redis call, turning redis-py's errors into the store's."""
        try:
            return fn(*args)
        except redis.exceptions.TimeoutError as exc:
            raise FeatureStoreTimeout(
                f"redis at {self._where()} did not answer within "
                f"{self.settings.socket_timeout_s * 1000:.0f} ms: {exc}"
            ) from exc
        except (redis.exceptions.RedisError, redis.exceptions.RedisClusterException) as exc:
            raise FeatureStoreUnavailable(
                f"redis at {self._where()} failed: {type(exc).__name__}: {exc}"
            ) from exc

    def _where(self) -> str:
        return self.settings.redacted_url  # never log a password embedded in the URL

    def close(self) -> None:
        """Close the connection pool."""
        if self._client is not None:
            self._client.close()
            self._client = None
