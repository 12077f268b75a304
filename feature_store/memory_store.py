"""The embedded store: a feature snapshot held in process (FEATURE_STORE_MODE=parquet)."""

from __future__ import annotations

import numpy as np

from data.snapshot import FeatureSnapshot
from feature_store.base import FeatureRows


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

    def read(self, user_id: int, item_ids: np.ndarray) -> FeatureRows:
        """Rows for one user and N items; unknown ids get the snapshot's default rows."""
        ids = np.asarray(item_ids, dtype=np.int64)
        lut = self._item_lut
        rows = lut[np.clip(ids, -1, len(lut) - 1)]
        lut = self._user_lut
        user_row = int(lut[min(max(int(user_id), -1), len(lut) - 1)])
        n_users, n_items = len(self._users) - 1, len(self._items) - 1
        return FeatureRows(
            self._users[user_row].copy(),
            self._items[rows],
            user_row != n_users,
            rows != n_items,
            self.backend,
        )


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
