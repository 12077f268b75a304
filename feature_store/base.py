"""The `FeatureStore` contract: one user plus N items per call, as float32 rows.

Rows come in the snapshot's column order (`user_columns`, `item_columns`). Users or items the
store does not know get the snapshot's default rows and are flagged as not found, so callers
always receive complete arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class FeatureRows:
    """Features for one request."""

    user: np.ndarray  # (Fu,) float32
    items: np.ndarray  # (N, Fi) float32
    user_found: bool
    items_found: np.ndarray  # (N,) bool
    backend: str  # who answered: "memory", "redis", or "redis+memory" (some rows patched)


class FeatureStore(Protocol):
    """Anything that serves feature rows for a user and a batch of items."""

    @property
    def version(self) -> str:
        """Feature-set version (the snapshot's content hash)."""
        ...

    @property
    def user_columns(self) -> tuple[str, ...]:
        """Column order of `FeatureRows.user`."""
        ...

    @property
    def item_columns(self) -> tuple[str, ...]:
        """Column order of `FeatureRows.items`."""
        ...

    def read(self, user_id: int, item_ids: np.ndarray) -> FeatureRows:
        """Features of `user_id` and each of `item_ids` (defaults where unknown)."""
        ...
