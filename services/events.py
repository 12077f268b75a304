"""POST /events: validation, the event log, and Redis (with replay when Redis was down).

`EventIngest.accept(events)` runs in the RecommendationService:

1. duplicates of what the snapshot or this replica already holds (same user, item, timestamp)
   are dropped (accepted, not applied twice);
2. the rest is appended to this replica's event log (one write): in parquet mode that is the
   state itself, since every stage process follows the log before each request;
3. in redis mode the events are then folded into Redis in one transaction
   (`feature_store.redis_events`). A cursor file records how far the log is in Redis; while
   Redis fails the cursor stays behind ("pending"), and a background thread replays the log from
   the cursor once the breaker lets a call through. Nothing accepted is lost: it is in the log
   before the 200 is sent.

Request validation is all-or-nothing and all pydantic's: shapes, types, ranges, movie ids of the
served catalog (`SERVED_CATALOG`, set when the service loads its snapshot) and no timestamps in
the future, so every rejection is one 400 body whose ``detail[].loc`` names the event's index and
the field (``["events", 3, "rating"]``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np
from prometheus_client import Counter, Gauge, Histogram
from pydantic import BaseModel, ConfigDict, Field, field_validator

from data.snapshot import FeatureSnapshot
from feature_store.circuit_breaker import CircuitBreaker
from feature_store.errors import FeatureStoreUnavailable, NoActiveVersion, VersionMismatch
from feature_store.events import EventLog, EventLogReader, LogPosition, RatingEvent
from feature_store.live_users import UserRowUpdater, known_events
from feature_store.memory_store import MemoryFeatureStore
from feature_store.redis_events import RedisEvents
from feature_store.redis_store import RedisFeatureStore
from services.settings import Settings

logger = logging.getLogger(__name__)

MAX_EVENTS = 1000
MAX_ID = 2**63 - 1
MAX_TIMESTAMP = 2**40  # seconds; far beyond any real date, small enough for every integer type
FUTURE_SLACK_S = 86_400  # timestamps more than a day ahead of the server clock are rejected
REPLAY_CHUNK = 1000
CURSOR_FILE = "redis-cursor.json"

EVENTS = Counter("recsys_events", "Events posted, by outcome", ["outcome"])
EVENT_APPLY_SECONDS = Histogram(
    "recsys_event_apply_seconds",
    "Time to apply one POST /events call (log, and Redis in redis mode)",
    buckets=(1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1),
)
EVENTS_PENDING = Gauge(
    "recsys_events_pending", "Events in the local log not yet in Redis", multiprocess_mode="max"
)


class ServedCatalog:
    """The movie ids POST /events accepts: the served snapshot's catalog."""

    item_ids: np.ndarray = np.empty(0, dtype=np.int64)

    @classmethod
    def has(cls, item_id: int) -> bool:
        """Whether `item_id` is in the catalog."""
        pos = int(np.searchsorted(cls.item_ids, item_id))
        return pos < len(cls.item_ids) and int(cls.item_ids[pos]) == item_id


class EventIn(BaseModel):
    """One rating event."""

    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: int = Field(ge=0, le=MAX_ID, description="MovieLens user id; new ids are allowed.")
    item_id: int = Field(ge=0, le=MAX_ID, description="A movie id of the served catalog.")
    rating: float | None = Field(
        None, ge=0.5, le=5.0, allow_inf_nan=False, description="0.5..5; omit for unrated."
    )
    timestamp: int | None = Field(
        None, ge=0, le=MAX_TIMESTAMP, description="Seconds since the epoch; default now."
    )

    @field_validator("item_id")
    @classmethod
    def _in_catalog(cls, value: int) -> int:
        if not ServedCatalog.has(value):
            raise ValueError(f"movie {value} is not in the served catalog")
        return value

    @field_validator("timestamp")
    @classmethod
    def _not_in_the_future(cls, value: int | None) -> int | None:
        if value is not None and value > time.time() + FUTURE_SLACK_S:
            raise ValueError(f"{value} is more than a day after the server's clock")
        return value


class EventsRequest(BaseModel):
    """Body of POST /events."""

    model_config = ConfigDict(extra="forbid", strict=True)

    events: list[EventIn] = Field(min_length=1, max_length=MAX_EVENTS)


class EventsAccepted(BaseModel):
    """Answer of POST /events."""

    accepted: int


class EventIngest:
    """Accepts events for one replica: log first, then Redis in redis mode."""

    def __init__(self, settings: Settings, snapshot: FeatureSnapshot) -> None:
        self.settings = settings.replica_events()
        ServedCatalog.item_ids = snapshot.item_ids
        self.version = snapshot.version
        self.known = known_events(snapshot)
        self.log = EventLog(self.settings.dir, self.settings.segment_bytes,
                            self.settings.max_segments)  # fmt: skip
        self._lock = threading.Lock()
        self.redis: RedisEvents | None = None
        self.pending = 0
        self.breaker: CircuitBreaker | None = None
        if settings.feature_store_mode == "redis":
            store = RedisFeatureStore(settings.redis, expected_version=snapshot.version)
            self.redis = RedisEvents(
                store,
                UserRowUpdater.from_snapshot(snapshot),
                MemoryFeatureStore(snapshot).base_row,
                self.settings.stream_maxlen,
            )
            self.breaker = CircuitBreaker(
                settings.redis.failure_threshold, settings.redis.reset_timeout_s
            )
            self.cursor = self._read_cursor()
            self.pending = len(EventLogReader(self.settings.dir, self.cursor).read_new())
            EVENTS_PENDING.set(self.pending)
            if self.pending:
                logger.info("%d logged events are not in Redis yet: replaying", self.pending)
            threading.Thread(target=self._replay_loop, name="events-replay", daemon=True).start()

    def accept(self, events: list[EventIn]) -> int:
        """Apply one call's (validated) events; returns how many were accepted."""
        start = time.perf_counter()
        now = int(time.time())
        checked = [
            RatingEvent(e.user_id, e.item_id, e.rating, now if e.timestamp is None else e.timestamp)
            for e in events
        ]
        with self._lock:
            fresh = self.known.new(checked)
            if fresh:
                end = self.log.append(fresh)
                if self.redis is not None:
                    self._to_redis(fresh, end)
        EVENTS.labels("accepted").inc(len(fresh))
        if len(checked) > len(fresh):
            EVENTS.labels("duplicate").inc(len(checked) - len(fresh))
        EVENT_APPLY_SECONDS.observe(time.perf_counter() - start)
        return len(checked)

    def _to_redis(self, fresh: list[RatingEvent], end: LogPosition) -> None:
        """Apply to Redis now if nothing is pending, else leave it to the replay (lock held)."""
        assert self.redis is not None
        assert self.breaker is not None
        if self.pending == 0 and self.breaker.allow():
            try:
                self.redis.apply(fresh)
            except (FeatureStoreUnavailable, NoActiveVersion, VersionMismatch) as exc:
                self.breaker.record_failure()
                logger.warning("events kept in the log for Redis later: %s", exc)
            else:
                self.breaker.record_success()
                self._write_cursor(end)
                return
        self.pending += len(fresh)
        EVENTS_PENDING.set(self.pending)

    def replay(self) -> int:
        """Apply logged events Redis does not have yet, in order; returns how many."""
        if self.redis is None or self.breaker is None:
            return 0
        done = 0
        with self._lock:
            reader = EventLogReader(self.settings.dir, self.cursor)
            while self.pending and self.breaker.allow():
                chunk = reader.read_new(REPLAY_CHUNK)
                if not chunk:
                    self.pending = 0
                    break
                try:
                    self.redis.apply(chunk)
                except (FeatureStoreUnavailable, NoActiveVersion, VersionMismatch) as exc:
                    self.breaker.record_failure()
                    logger.warning("replay into Redis failed, will retry: %s", exc)
                    break
                self.breaker.record_success()
                self._write_cursor(reader.position)
                done += len(chunk)
                self.pending = max(self.pending - len(chunk), 0)
            EVENTS_PENDING.set(self.pending)
        if done:
            logger.info("replayed %d events into Redis; %d pending", done, self.pending)
        return done

    def _replay_loop(self) -> None:
        while True:
            time.sleep(self.settings.replay_interval_s)
            if self.pending:
                try:
                    self.replay()
                except Exception:  # never let the thread die: the next round tries again
                    logger.exception("event replay round failed")

    def status(self) -> dict[str, object]:
        """For /health: where events go and how many wait for Redis."""
        body: dict[str, object] = {"log": str(self.settings.dir), "logged_end": str(self.log.end)}
        if self.redis is not None:
            body["pending_redis"] = self.pending
        return body

    # --- the Redis cursor: how far the log is applied to Redis, per feature version ----------

    @property
    def _cursor_path(self) -> Path:
        return self.settings.dir / CURSOR_FILE

    def _read_cursor(self) -> LogPosition:
        """Where replay starts: the saved cursor of this version, else the log's start."""
        try:
            saved = json.loads(self._cursor_path.read_text())
            if saved.get("version") == self.version:
                return LogPosition(int(saved["segment"]), int(saved["offset"]))
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return LogPosition(0, 0)  # segment 0 does not exist: the reader moves to the first

    def _write_cursor(self, position: LogPosition) -> None:
        self.cursor = position
        tmp = self._cursor_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"version": self.version, "segment": position.segment,
                                   "offset": position.offset}))  # fmt: skip
        os.replace(tmp, self._cursor_path)
