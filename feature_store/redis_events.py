"""Rating events in Redis: the shared state every replica reads (key layout in `keys`).

`RedisEvents.apply(events)` updates, under the active feature version, each user's packed row
(`UserRowUpdater.fold`, the same fold as the embedded store), appends to the user's ``h:`` list
and to the capped ``events`` stream. The rows are read under WATCH and everything is written in
one MULTI/EXEC: two replicas folding events of one user at once cannot lose an update (the
loser retries with the winner's row). `events_of(user)` is one LRANGE; `read_stream(store)` pages
through the stream for `recsys train --events`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import redis

from feature_store import keys
from feature_store.errors import FeatureStoreUnavailable
from feature_store.events import RatingEvent
from feature_store.live_users import UserRowUpdater
from feature_store.redis_store import RedisFeatureStore

logger = logging.getLogger(__name__)

WATCH_RETRIES = 20
STREAM_PAGE = 10_000


class RedisEvents:
    """Reads and writes the event state of the active feature version.

    Args:
        store: the Redis feature store (client, active version, error mapping).
        updater: folds events into user rows.
        base_row: the snapshot's row of a user, for users Redis holds no row of (new users).
        stream_maxlen: the stream is trimmed to about this many entries.
    """

    def __init__(
        self,
        store: RedisFeatureStore,
        updater: UserRowUpdater,
        base_row: Callable[[int], np.ndarray],
        stream_maxlen: int,
    ) -> None:
        self.store = store
        self.updater = updater
        self.base_row = base_row
        self.stream_maxlen = stream_maxlen

    def apply(self, events: list[RatingEvent]) -> None:
        """Fold `events` into the users' rows, lists and the stream, atomically.

        Raises:
            FeatureStoreUnavailable: Redis failed (nothing of the call is applied).
            NoActiveVersion, VersionMismatch: no usable feature version is active.
        """
        if not events:
            return
        version = self.store.active_meta().version
        by_user: dict[int, list[RatingEvent]] = {}
        for event in events:
            by_user.setdefault(event.user_id, []).append(event)
        users = list(by_user)
        row_keys = [keys.user_key(version, u) for u in users]
        width = 4 * len(self.store.active_meta().user_columns)
        stream = keys.stream_key(version)

        def transaction(pipe: Any) -> None:
            rows = pipe.mget(row_keys)  # WATCHed: executed at once
            pipe.multi()
            for user, key, raw in zip(users, row_keys, rows, strict=True):
                row = (
                    np.frombuffer(raw, keys.ROW_DTYPE)
                    if raw is not None and len(raw) == width
                    else self.base_row(user)
                )
                pipe.set(key, keys.pack_row(self.updater.fold(row, by_user[user])))
                pipe.rpush(
                    keys.history_key(version, user),
                    *(keys.pack_event(e.item_id, e.timestamp, e.rating) for e in by_user[user]),
                )
            for e in events:
                fields = {"u": e.user_id, "i": e.item_id, "t": e.timestamp}
                if e.rating is not None:
                    fields["r"] = e.rating
                pipe.xadd(stream, fields, maxlen=self.stream_maxlen, approximate=True)

        self.store.call(self._run, transaction, row_keys)

    def _run(self, transaction: Callable[[Any], None], watched: list[str]) -> None:
        client = self.store.client
        for _ in range(WATCH_RETRIES):
            with client.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(*watched)
                    transaction(pipe)
                    pipe.execute()
                    return
                except redis.exceptions.WatchError:
                    continue
        raise FeatureStoreUnavailable(
            f"events not applied: {WATCH_RETRIES} tries lost the race for the same user rows"
        )

    def events_of(self, user_id: int) -> list[RatingEvent]:
        """The user's events since the snapshot, in the order applied.

        Raises:
            FeatureStoreUnavailable, NoActiveVersion, VersionMismatch: as `apply`.
        """
        version = self.store.active_meta().version
        raw = self.store.call(self.store.client.lrange, keys.history_key(version, user_id), 0, -1)
        events = []
        for value in raw:
            item_id, timestamp, rating = keys.unpack_event(value)
            events.append(RatingEvent(user_id, item_id, rating, timestamp))
        events.sort(key=lambda e: (e.timestamp, e.item_id))
        return events


def read_stream(store: RedisFeatureStore, version: str | None = None) -> list[RatingEvent]:
    """Every event still in the stream of `version` (default: the active one)."""
    version = version or store.active_meta().version
    key, start, out = keys.stream_key(version), "-", []
    while True:
        page = store.call(store.client.xrange, key, start, "+", STREAM_PAGE)
        for _, fields in page:
            rating = fields.get(b"r")
            out.append(
                RatingEvent(
                    int(fields[b"u"]),
                    int(fields[b"i"]),
                    None if rating is None else float(rating),
                    int(fields[b"t"]),
                )
            )
        if len(page) < STREAM_PAGE:
            return out
        start = "(" + page[-1][0].decode()
