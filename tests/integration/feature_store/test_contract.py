"""One contract, two stores: the same test bodies against MemoryFeatureStore and Redis."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.integration


def test_known_user_and_items_equal_the_snapshot(store, snapshot) -> None:
    rows = store.read(int(snapshot.user_ids[7]), snapshot.item_ids[[3, 0, 99, 3]])
    np.testing.assert_array_equal(rows.user, snapshot.user_matrix[7])
    np.testing.assert_array_equal(rows.items, snapshot.item_matrix[[3, 0, 99, 3]])
    assert rows.user_found
    assert rows.items_found.all()
    assert rows.user.dtype == rows.items.dtype == np.float32


def test_unknown_ids_get_default_rows_and_are_flagged(store, snapshot) -> None:
    known = int(snapshot.item_ids[1])
    rows = store.read(999_999, np.array([known, 888_888, -3]))
    np.testing.assert_array_equal(rows.user, snapshot.default_user)
    assert not rows.user_found
    np.testing.assert_array_equal(rows.items[1:], np.stack([snapshot.default_item] * 2))
    np.testing.assert_array_equal(rows.items_found, [True, False, False])


def test_no_items_gives_an_empty_matrix(store, snapshot) -> None:
    rows = store.read(int(snapshot.user_ids[0]), np.array([], dtype=np.int64))
    assert rows.items.shape == (0, len(snapshot.item_columns))


def test_version_and_columns_are_the_snapshots(store, snapshot) -> None:
    assert store.version == snapshot.version
    assert store.user_columns == snapshot.user_columns
    assert store.item_columns == snapshot.item_columns
