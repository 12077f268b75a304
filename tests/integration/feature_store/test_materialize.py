"""Materialization into a real redis-server: versions, atomic switch, cleanup, re-runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from feature_store import keys
from feature_store.config import RedisSettings
from feature_store.errors import FeatureStoreUnavailable
from feature_store.local_redis import free_port
from feature_store.materialize import materialize
from feature_store.redis_store import RedisFeatureStore

pytestmark = pytest.mark.integration


def _version_keys(raw, version: str) -> int:
    return sum(1 for _ in raw.scan_iter(match=keys.version_pattern(version), count=1000))


def test_writes_every_row_with_progress_and_activates_the_version(
    snapshot, redis_settings, raw
) -> None:
    seen: list[int] = []
    report = materialize(snapshot, redis_settings, progress=seen.append)
    n_users, n_items = len(snapshot.user_ids), len(snapshot.item_ids)
    assert sum(seen) == n_users + n_items
    assert raw.get(keys.ACTIVE_KEY) == snapshot.version.encode()
    assert _version_keys(raw, snapshot.version) == n_users + n_items + 1  # + meta
    meta = json.loads(raw.get(keys.meta_key(snapshot.version)))
    assert meta["item_columns"] == list(snapshot.item_columns)
    assert report.previous_version is None
    assert report.verified >= min(200, n_users) + min(200, n_items)
    row = raw.get(keys.item_key(snapshot.version, int(snapshot.item_ids[4])))
    np.testing.assert_array_equal(np.frombuffer(row, "<f4"), snapshot.item_matrix[4])


def test_switch_to_a_new_version_deletes_the_old_one(
    snapshot, other_snapshot, redis_settings, raw
) -> None:
    materialize(snapshot, redis_settings)
    report = materialize(other_snapshot, redis_settings)
    assert report.previous_version == snapshot.version
    assert report.deleted_keys == len(snapshot.user_ids) + len(snapshot.item_ids) + 1
    assert _version_keys(raw, snapshot.version) == 0
    assert raw.get(keys.ACTIVE_KEY) == other_snapshot.version.encode()
    store = RedisFeatureStore(redis_settings)  # no expected version: serves the active one
    assert store.version == other_snapshot.version
    rows = store.read(int(other_snapshot.user_ids[2]), other_snapshot.item_ids[:5])
    np.testing.assert_array_equal(rows.user, other_snapshot.user_matrix[2])
    store.close()


def test_rerunning_the_same_version_is_safe(snapshot, redis_settings, raw) -> None:
    materialize(snapshot, redis_settings)
    again = materialize(snapshot, redis_settings)
    assert again.previous_version == snapshot.version
    assert again.deleted_keys == 0
    assert (
        _version_keys(raw, snapshot.version) == len(snapshot.user_ids) + len(snapshot.item_ids) + 1
    )
    assert raw.get(keys.ACTIVE_KEY) == snapshot.version.encode()


def test_unreachable_redis_is_a_clear_error(snapshot) -> None:
    settings = RedisSettings(url=f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(FeatureStoreUnavailable, match=snapshot.version):
        materialize(snapshot, settings)


@pytest.mark.parametrize(
    ("damage", "got"),
    [
        # another writer truncates the new version's first user row while it is being written
        (lambda raw, key: raw.set(key, b"\x00\x00\x00"), "3 different bytes"),
        # ... or deletes it (an eviction, a FLUSH of the wrong keys)
        (lambda raw, key: raw.delete(key), "missing"),
    ],
)
def test_a_failed_read_back_keeps_the_old_version_active(
    snapshot, other_snapshot, redis_settings, raw, damage, got
) -> None:
    """Issue 20: MaterializationError, and the previous version keeps serving untouched."""
    from feature_store.errors import MaterializationError

    materialize(snapshot, redis_settings)
    first_user = keys.user_key(other_snapshot.version, int(other_snapshot.user_ids[0]))

    def damage_after_the_users(written: int) -> None:
        if raw.exists(first_user):  # the users' batch is in Redis: spoil it before read-back
            damage(raw, first_user)

    with pytest.raises(MaterializationError, match=got):
        materialize(other_snapshot, redis_settings, progress=damage_after_the_users)
    assert raw.get(keys.ACTIVE_KEY) == snapshot.version.encode()
    assert _version_keys(raw, snapshot.version) == (
        len(snapshot.user_ids) + len(snapshot.item_ids) + 1
    )
    store = RedisFeatureStore(redis_settings)  # serves the active, old, version
    assert store.version == snapshot.version
    rows = store.read(int(snapshot.user_ids[3]), snapshot.item_ids[:4])
    np.testing.assert_array_equal(rows.user, snapshot.user_matrix[3])
    np.testing.assert_array_equal(rows.items, snapshot.item_matrix[:4])
    store.close()
