"""The embedded store answers exactly what the snapshot holds."""

from __future__ import annotations

import numpy as np
import pytest

from feature_store.memory_store import MemoryFeatureStore


@pytest.mark.parametrize(
    "user_id",
    [
        1,  # the first known user
        60,  # the last known user
        61,  # just past the last id
        0,  # below every id
        -5,  # negative (clipped onto the default entry)
        10**9,  # far beyond the lookup table
    ],
)
def test_rows_equal_the_snapshot_lookup(snapshot, user_id: int) -> None:
    store = MemoryFeatureStore(snapshot)
    item_ids = np.concatenate([snapshot.item_ids[[0, 5, -1]], [-1, 0, 10**9, 999_999]])
    rows = store.read(user_id, item_ids)
    want_user, user_found = snapshot.user_rows(np.array([user_id]))
    want_items, items_found = snapshot.item_rows(item_ids)
    np.testing.assert_array_equal(rows.user, want_user[0])
    np.testing.assert_array_equal(rows.items, want_items)
    assert rows.user_found == bool(user_found[0])
    np.testing.assert_array_equal(rows.items_found, items_found)
    assert rows.backend == "memory"


def test_no_items_gives_an_empty_matrix(snapshot) -> None:
    rows = MemoryFeatureStore(snapshot).read(1, np.array([], dtype=np.int64))
    assert rows.items.shape == (0, len(snapshot.item_columns))
    assert rows.items_found.shape == (0,)
