"""The embedded store: a feature snapshot held in process (FEATURE_STORE_MODE=parquet)."""

from __future__ import annotations

import numpy as np

from data.snapshot import FeatureSnapshot
from feature_store.base import FeatureRows


class MemoryFeatureStore:
    """Serves rows straight from an in-memory `FeatureSnapshot` (sorted ids, binary search)."""

    backend = "memory"

    def __init__(self, snapshot: FeatureSnapshot) -> None:
        self.snapshot = snapshot

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
        user, user_found = self.snapshot.user_rows(np.asarray([user_id], dtype=np.int64))
        items, items_found = self.snapshot.item_rows(item_ids)
        return FeatureRows(user[0], items, bool(user_found[0]), items_found, self.backend)
