"""Equality on real data: every ML-100K user and item read from Redis equals the snapshot."""

from __future__ import annotations

import numpy as np
import pytest

from data.features import build_snapshot
from data.movielens import load_movielens
from data.split import temporal_split
from feature_store.materialize import materialize
from feature_store.resilient import build_feature_store

pytestmark = pytest.mark.integration


def test_every_ml100k_user_and_item_round_trips_through_redis(ml100k_dir, redis_settings) -> None:
    dataset = load_movielens(ml100k_dir)
    snapshot = build_snapshot(dataset, temporal_split(dataset.interactions).train)
    report = materialize(snapshot, redis_settings)
    assert (report.users, report.items) == (943, len(snapshot.item_ids))
    store = build_feature_store("redis", redis_settings, snapshot)
    all_items = store.read(int(snapshot.user_ids[0]), snapshot.item_ids)
    assert all_items.backend == "redis"
    np.testing.assert_array_equal(all_items.items, snapshot.item_matrix)
    users = np.stack([store.read(int(u), snapshot.item_ids[:1]).user for u in snapshot.user_ids])
    np.testing.assert_array_equal(users, snapshot.user_matrix)
    assert store.status()["backend"] == "redis"
    store.close()
