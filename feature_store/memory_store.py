"""The embedded store: a feature snapshot held in process (FEATURE_STORE_MODE=parquet).

With `live` set (a `LiveUsers` following the event log), a user's row is the snapshot's row with
the user's events since folded in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from data.snapshot import FeatureSnapshot
from feature_store.base import FeatureRows

if TYPE_CHECKING:
    from feature_store.live_users import LiveUsers


class MemoryFeatureStore:
    """Serves rows straight from an in-memory `FeatureSnapshot` (dense id -> row lookup tables)."""

    backend = "memory"

    def __init__(self, snapshot: FeatureSnapshot) -> None:
        self.snapshot = snapshot
        self._user_lut, self._users = _dense_index(
            snapshot.user_ids, snapshot.user_matrix, snapshot.default_user
        )
        self._item_lut, self._items = _dense_index(
            snapshot.item_ids, snapshot.item_matrix, snapshot.default_item
        )
        self.live: LiveUsers | None = None

    @property
    def version(self) -> str:
        """The snapshot's content hash."""
        return self.snapshot.version

    @property
    def user_columns(self) -> tuple[str, ...]:
        """User feature column order."""
        return self.snapshot.user_columns

    @property
    def item_columns(self) -> tuple[str, ...]:
        """Item feature column order."""
        return self.snapshot.item_columns

    def base_row(self, user_id: int) -> np.ndarray:
        """The snapshot's row of a user (the default row for users it does not know)."""
        return self._users[self._user_position(user_id)].copy()

    def _user_position(self, user_id: int) -> int:
        lut = self._user_lut
        return int(lut[min(max(int(user_id), -1), len(lut) - 1)])

    def read(self, user_id: int, item_ids: np.ndarray) -> FeatureRows:
        """Rows for one user and N items; unknown ids get the snapshot's default rows."""
        ids = np.asarray(item_ids, dtype=np.int64)
        lut = self._item_lut
        rows = lut[np.clip(ids, -1, len(lut) - 1)]
        user_row = self._user_position(user_id)
        n_users, n_items = len(self._users) - 1, len(self._items) - 1
        user, user_found = self._users[user_row].copy(), user_row != n_users
        if self.live is not None:
            self.live.sync()
            updated = self.live.row(int(user_id))
            if updated is not None:
                user, user_found = updated.copy(), True
        return FeatureRows(user, self._items[rows], user_found, rows != n_items, self.backend)


def _dense_index(
    ids: np.ndarray, matrix: np.ndarray, default: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A lookup table id -> row and the matrix with the default row appended (row N).

    MovieLens ids are small positive integers, so a dense table (max id + 2 entries) turns a
    read into two numpy gathers: p50 ~5 µs for 100 items, against ~25 µs for searchsorted +
    where. Ids outside [0, max id] are clipped onto the table's last entry (or, for negative
    ids, index -1, the same entry), which holds N: the default row.
    """
    n = len(ids)
    size = (int(ids.max()) + 2) if n else 1
    lut = np.full(size, n, dtype=np.intp)
    lut[ids] = np.arange(n, dtype=np.intp)
    rows = np.vstack([matrix, default[None, :]]).astype(np.float32, copy=False)
    lut.setflags(write=False)
    rows.setflags(write=False)
    return lut, rows
