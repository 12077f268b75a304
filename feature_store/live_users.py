"""User state after the snapshot: feature rows updated event by event, and each user's events.

`UserRowUpdater.fold(row, events)` is the one incremental update of a user's feature row (the
embedded store and Redis both use it). It recovers the sufficient statistics from the row itself
(count, mean, std -> sum of squares; days since last and days active -> first and last
timestamp) and adds the events, so folding events into a row gives what `data.features` would
compute from the period plus those events (to float32 rounding), with "now" still the snapshot's
period end: a rating after it gives a negative `user_days_since_last` ("more recent than any
training row"). An unrated event counts at the user's current mean rating. Demographics do not
change.

`LiveUsers` is the embedded state: it follows the event log, keeps the updated row and the
events of every user who has any, and drops events the snapshot (or itself) already holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from data.features import DAY, GENRE_SLUGS
from data.snapshot import FeatureSnapshot
from feature_store.events import EventLogReader, KnownEvents, RatingEvent

logger = logging.getLogger(__name__)

YEAR_S = 365.25 * DAY


class UserRowUpdater:
    """Folds rating events into user feature rows (columns of `data.features.USER_COLUMNS`)."""

    def __init__(
        self,
        user_columns: tuple[str, ...],
        item_ids: np.ndarray,
        item_genres: np.ndarray,
        now: int,
    ) -> None:
        """Args:
        user_columns: the user row's column order.
        item_ids: (I,) sorted catalog ids.
        item_genres: (I, G) multi-hot genres in `data.features.GENRES` order.
        now: the snapshot's "now" (its period end), which the row's day counts are relative to.
        """
        col = {name: j for j, name in enumerate(user_columns)}
        self._count = col["user_count"]
        self._mean = col["user_mean_rating"]
        self._std = col["user_std_rating"]
        self._since = col["user_days_since_last"]
        self._active = col["user_days_active"]
        self._last_year = col["user_last_year"]
        self._aff = np.array([col[f"user_aff_{g}"] for g in GENRE_SLUGS])
        self.item_ids = np.asarray(item_ids, np.int64)
        self.item_genres = np.asarray(item_genres, np.float64)
        self.now = float(now)

    @classmethod
    def from_snapshot(cls, snapshot: FeatureSnapshot) -> UserRowUpdater:
        """The updater for rows of `snapshot` (its columns, catalog genres and period end)."""
        icol = {name: j for j, name in enumerate(snapshot.item_columns)}
        genres = snapshot.item_matrix[:, [icol[f"item_genre_{g}"] for g in GENRE_SLUGS]]
        return cls(snapshot.user_columns, snapshot.item_ids, genres,
                   int(snapshot.metadata["period_end"]))  # fmt: skip

    def fold(self, row: np.ndarray, events: list[RatingEvent]) -> np.ndarray:
        """`row` with `events` (of that user) added; a new float32 row."""
        out = np.asarray(row, np.float64).copy()
        if not events:
            return out.astype(np.float32)
        n, mean, std = out[self._count], out[self._mean], out[self._std]
        ratings = np.array([mean if e.rating is None else e.rating for e in events])
        stamps = np.array([e.timestamp for e in events], dtype=np.float64)
        items = np.array([e.item_id for e in events], dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.item_ids, items), len(self.item_ids) - 1)
        genres = self.item_genres[pos] * (self.item_ids[pos] == items)[:, None]
        total = n + len(events)
        new_mean = (n * mean + ratings.sum()) / total
        squares = (n * (std * std + mean * mean) + (ratings * ratings).sum()) / total
        out[self._count] = total
        out[self._mean] = new_mean
        out[self._std] = np.sqrt(max(squares - new_mean * new_mean, 0.0)) if total > 1 else 0.0
        if n > 0:
            last = self.now - out[self._since] * DAY
            first = last - out[self._active] * DAY
        else:
            last, first = -np.inf, np.inf
        last, first = max(last, stamps.max()), min(first, stamps.min())
        out[self._since] = (self.now - last) / DAY
        out[self._active] = (last - first) / DAY
        out[self._last_year] = 1970.0 + last / YEAR_S
        out[self._aff] = (n * out[self._aff] + genres.sum(axis=0)) / total
        return out.astype(np.float32)


def known_events(snapshot: FeatureSnapshot) -> KnownEvents:
    """The deduplication set of a snapshot's history (events it already learnt from)."""
    history = snapshot.history
    return KnownEvents(
        history["user_id"].to_numpy(np.int64),
        history["item_id"].to_numpy(np.int64),
        history["timestamp"].to_numpy(np.int64),
    )


class LiveUsers:
    """The embedded state since the snapshot: per user, the updated row and the events.

    Args:
        base_row: the snapshot's row of a user (its default row for unknown users).
        updater: folds events into rows; None keeps events only (the retriever needs no rows).
        known: events already held (the snapshot's history); duplicates are dropped.
        reader: the event log to follow; `sync()` applies what it appended.
    """

    def __init__(
        self,
        base_row: Callable[[int], np.ndarray],
        updater: UserRowUpdater | None,
        known: KnownEvents,
        reader: EventLogReader | None = None,
    ) -> None:
        self._base_row = base_row
        self._updater = updater
        self._known = known
        self._reader = reader
        self._rows: dict[int, np.ndarray] = {}
        self._events: dict[int, list[RatingEvent]] = {}
        self.applied = 0

    def sync(self) -> None:
        """Apply whatever the followed log gained since the last call."""
        if self._reader is not None:
            new = self._reader.read_new()
            if new:
                self.apply(new)

    def apply(self, events: list[RatingEvent]) -> int:
        """Add `events`; returns how many were new."""
        fresh = self._known.new(events)
        by_user: dict[int, list[RatingEvent]] = {}
        for event in fresh:
            by_user.setdefault(event.user_id, []).append(event)
        for user, user_events in by_user.items():
            held = self._events.setdefault(user, [])
            held.extend(user_events)
            held.sort(key=lambda e: (e.timestamp, e.item_id))
            if self._updater is not None:
                row = self._rows.get(user)
                base = self._base_row(user) if row is None else row
                self._rows[user] = self._updater.fold(base, user_events)
        self.applied += len(fresh)
        return len(fresh)

    def row(self, user_id: int) -> np.ndarray | None:
        """The user's updated row, or None when no event changed it."""
        return self._rows.get(user_id)

    def events_of(self, user_id: int) -> list[RatingEvent]:
        """The user's events since the snapshot, oldest first."""
        return self._events.get(user_id, [])

    @property
    def users(self) -> int:
        """Users with at least one event."""
        return len(self._events)
