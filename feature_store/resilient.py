"""The store the service uses: Redis behind a circuit breaker, the embedded store as fallback.

`build_feature_store(mode, redis_settings, snapshot)` is the one factory:

- ``parquet`` (default): the embedded `MemoryFeatureStore` answers every read.
- ``redis``: `RedisFeatureStore` answers while the breaker is closed. Timeouts and connection
  errors count as failures; after `failure_threshold` of them in a row the breaker opens and
  reads go straight to the embedded store with no Redis wait, until one trial read after
  `reset_timeout_s` succeeds. Data problems (no/stale/other active version, missing keys, values
  of the wrong length) do not open the breaker, since Redis did answer: the affected read or rows
  come from the embedded store, with a metric and a (rate-limited) warning.

Callers never see a Redis error: every read returns complete rows, and `FeatureRows.backend`
says who answered (``redis``, ``memory``, or ``redis+memory`` when some rows were patched).

Events since the snapshot (POST /events): with an event log directory, the embedded store follows
it (`LiveUsers`), so its rows and `user_events` include them; in Redis mode Redis holds the shared
state (`RedisEvents`) and the local log is the fallback's.
"""

from __future__ import annotations

import logging
import time
from typing import Literal

import numpy as np

from data.snapshot import FeatureSnapshot
from feature_store import metrics
from feature_store.base import FeatureRows
from feature_store.circuit_breaker import CircuitBreaker, CircuitState
from feature_store.config import EventSettings, RedisSettings
from feature_store.errors import (
    FeatureStoreTimeout,
    FeatureStoreUnavailable,
    NoActiveVersion,
    VersionMismatch,
)
from feature_store.events import EventLogReader, RatingEvent
from feature_store.live_users import LiveUsers, UserRowUpdater, known_events
from feature_store.memory_store import MemoryFeatureStore
from feature_store.metrics import FallbackReason
from feature_store.redis_events import RedisEvents
from feature_store.redis_store import RedisFeatureStore

logger = logging.getLogger(__name__)

Mode = Literal["parquet", "redis"]
BACKENDS = ("memory", "redis", "redis+memory")
WARN_EVERY_S = 10.0  # one warning line per reason per this many seconds


class ResilientFeatureStore:
    """`FeatureStore` that never fails a read: Redis when it can, the embedded store otherwise.

    Args:
        fallback: the embedded store (also the source of column order and version).
        primary: the Redis store; None serves everything from `fallback` (parquet mode).
        breaker: circuit breaker around `primary` (required with a primary).
    """

    def __init__(
        self,
        fallback: MemoryFeatureStore,
        primary: RedisFeatureStore | None = None,
        breaker: CircuitBreaker | None = None,
        events: RedisEvents | None = None,
    ) -> None:
        if primary is not None and breaker is None:
            raise ValueError("a Redis primary needs a circuit breaker")
        self.fallback = fallback
        self.primary = primary
        self.breaker = breaker
        self.events = events
        self.mode: Mode = "parquet" if primary is None else "redis"
        self.fallback_reads = 0
        self._last_backend = "memory" if primary is None else "redis"
        self._warned_at: dict[FallbackReason, float] = {}
        # labelled metric children resolved once (labels() costs ~1 µs per call)
        self._per_backend = {
            backend: (metrics.READ_SECONDS.labels(backend), metrics.READS.labels(backend))
            for backend in BACKENDS
        }

    @property
    def version(self) -> str:
        """The feature version the service was built with (the snapshot's hash)."""
        return self.fallback.version

    @property
    def user_columns(self) -> tuple[str, ...]:
        """User feature column order."""
        return self.fallback.user_columns

    @property
    def item_columns(self) -> tuple[str, ...]:
        """Item feature column order."""
        return self.fallback.item_columns

    def read(self, user_id: int, item_ids: np.ndarray) -> FeatureRows:
        """Rows for one user and N items, from Redis or the embedded store; never raises."""
        start = time.perf_counter()
        rows = self._read(user_id, item_ids)
        seconds, reads = self._per_backend[rows.backend]
        seconds.observe(time.perf_counter() - start)
        reads.inc()
        self._last_backend = rows.backend
        return rows

    def user_events(self, user_id: int) -> list[RatingEvent]:
        """The user's events since the snapshot (Redis, else the local log); never raises."""
        if self.events is not None and self.breaker is not None and self.breaker.allow():
            try:
                found = self.events.events_of(user_id)
            except (FeatureStoreTimeout, FeatureStoreUnavailable) as exc:
                self.breaker.record_failure()
                self._count(
                    FallbackReason.UNAVAILABLE, 1, "events of user %s from the local log: %s",
                    user_id, exc,
                )  # fmt: skip
            except (NoActiveVersion, VersionMismatch) as exc:
                self.breaker.record_success()
                self._count(
                    FallbackReason.NO_ACTIVE_VERSION, 1, "events of user %s from the local "
                    "log: %s", user_id, exc,
                )  # fmt: skip
            else:
                self.breaker.record_success()
                return found
        live = self.fallback.live
        if live is None:
            return []
        live.sync()
        return live.events_of(user_id)

    def status(self) -> dict[str, str]:
        """For /health: ``mode``, ``backend`` (who answered the last read), ``circuit``."""
        circuit = "disabled" if self.breaker is None else self.breaker.state.value
        return {"mode": self.mode, "backend": self._last_backend, "circuit": circuit}

    def _read(self, user_id: int, item_ids: np.ndarray) -> FeatureRows:
        if self.primary is None:
            return self.fallback.read(user_id, item_ids)
        assert self.breaker is not None
        if not self.breaker.allow():
            return self._fall_back(FallbackReason.CIRCUIT_OPEN, user_id, item_ids)
        try:
            got = self.primary.fetch(user_id, item_ids)
        except FeatureStoreTimeout as exc:
            self.breaker.record_failure()
            return self._fall_back(FallbackReason.TIMEOUT, user_id, item_ids, exc)
        except FeatureStoreUnavailable as exc:
            self.breaker.record_failure()
            return self._fall_back(FallbackReason.UNAVAILABLE, user_id, item_ids, exc)
        except NoActiveVersion as exc:
            self.breaker.record_success()  # Redis answered; the data is what is missing
            return self._fall_back(FallbackReason.NO_ACTIVE_VERSION, user_id, item_ids, exc)
        except VersionMismatch as exc:
            self.breaker.record_success()
            return self._fall_back(FallbackReason.VERSION_MISMATCH, user_id, item_ids, exc)
        self.breaker.record_success()
        if got.user_ok and got.missing == 0 and got.bad == 0:
            return FeatureRows(got.user, got.items, True, got.items_ok, "redis")
        # Some rows absent or corrupt in Redis: take those from the embedded store, which also
        # tells ids nobody knows (default rows, not found) from rows Redis lost.
        mem = self.fallback.read(user_id, item_ids)
        user_patched = not got.user_ok and mem.user_found
        items_patched = ~got.items_ok & mem.items_found
        patched = int(user_patched) + int(items_patched.sum())
        if got.bad:
            self._count(
                FallbackReason.BAD_VALUE,
                got.bad,
                "user %s: %d feature values in Redis have the wrong length (version %s); "
                "served from the embedded store",
                user_id,
                got.bad,
                got.version,
            )
        if patched > got.bad:
            self._count(
                FallbackReason.MISSING_KEY,
                patched - got.bad,
                "user %s: %d feature rows the snapshot has are missing from Redis "
                "(version %s); served from the embedded store",
                user_id,
                patched - got.bad,
                got.version,
            )
        user = got.user if got.user_ok else mem.user
        items = np.where(got.items_ok[:, None], got.items, mem.items)
        return FeatureRows(
            user,
            items,
            got.user_ok or mem.user_found,
            got.items_ok | mem.items_found,
            "redis+memory" if patched else "redis",
        )

    def _fall_back(
        self,
        reason: FallbackReason,
        user_id: int,
        item_ids: np.ndarray,
        exc: Exception | None = None,
    ) -> FeatureRows:
        self.fallback_reads += 1
        if exc is not None:
            self._count(
                reason,
                1,
                "feature read for user %s served by the embedded store (%s): %s",
                user_id,
                reason.value,
                exc,
            )
        else:
            metrics.FALLBACKS.labels(reason.value).inc()
        return self.fallback.read(user_id, item_ids)

    def _count(self, reason: FallbackReason, n: int, message: str, *args: object) -> None:
        """Count `n` fallbacks for `reason`; log a warning at most once per WARN_EVERY_S."""
        metrics.FALLBACKS.labels(reason.value).inc(n)
        now = time.monotonic()
        if now - self._warned_at.get(reason, -WARN_EVERY_S) >= WARN_EVERY_S:
            self._warned_at[reason] = now
            logger.warning(message, *args)

    def close(self) -> None:
        """Close the Redis connection pool, if any."""
        if self.primary is not None:
            self.primary.close()


def _log_transition(old: CircuitState, new: CircuitState) -> None:
    metrics.record_transition(old, new)
    log = logger.info if new is CircuitState.CLOSED else logger.warning
    log("redis circuit breaker: %s -> %s", old.value, new.value)


def build_feature_store(
    mode: Mode,
    redis_settings: RedisSettings,
    snapshot: FeatureSnapshot,
    event_settings: EventSettings | None = None,
) -> ResilientFeatureStore:
    """The feature store for `mode`; nothing connects to Redis until the first read.

    Args:
        mode: ``parquet`` (embedded only) or ``redis`` (Redis with embedded fallback).
        redis_settings: connection, timeouts and breaker thresholds.
        snapshot: the feature snapshot the models were trained with; it backs the embedded
            store, and its version is the one Redis must have active.
        event_settings: the event log to follow (replayed now, then read before each read);
            None serves the snapshot as it is.

    Raises:
        ValueError: an unknown mode.
    """
    memory = MemoryFeatureStore(snapshot)
    updater = UserRowUpdater.from_snapshot(snapshot)
    if event_settings is not None:
        reader = EventLogReader(event_settings.dir)
        memory.live = LiveUsers(memory.base_row, updater, known_events(snapshot), reader)
        memory.live.sync()
        logger.info(
            "event log %s replayed: %d events of %d users",
            event_settings.dir, memory.live.applied, memory.live.users,
        )  # fmt: skip
    if mode == "parquet":
        return ResilientFeatureStore(memory)
    if mode != "redis":
        raise ValueError(f"feature store mode must be 'parquet' or 'redis', got {mode!r}")
    breaker = CircuitBreaker(
        redis_settings.failure_threshold,
        redis_settings.reset_timeout_s,
        on_transition=_log_transition,
    )
    primary = RedisFeatureStore(redis_settings, expected_version=snapshot.version)
    maxlen = (event_settings or EventSettings()).stream_maxlen
    events = RedisEvents(primary, updater, memory.base_row, maxlen)
    return ResilientFeatureStore(memory, primary, breaker, events)
