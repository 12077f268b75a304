"""Events in a real Redis: rows folded in one transaction, lists, the stream, racing replicas.

The expected rows are the embedded state's (`LiveUsers` over the same events); that both equal
features computed from scratch is checked in tests/unit/feature_store/test_live_users.py.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from data.snapshot import FeatureSnapshot
from feature_store import keys
from feature_store.config import EventSettings, RedisSettings
from feature_store.event_sources import load_events
from feature_store.events import EventLog, RatingEvent
from feature_store.live_users import LiveUsers, UserRowUpdater, known_events
from feature_store.memory_store import MemoryFeatureStore
from feature_store.redis_events import RedisEvents, read_stream
from feature_store.redis_store import RedisFeatureStore
from feature_store.resilient import build_feature_store

pytestmark = pytest.mark.integration


def _writer(snapshot: FeatureSnapshot, settings: RedisSettings) -> RedisEvents:
    store = RedisFeatureStore(settings, expected_version=snapshot.version)
    updater = UserRowUpdater.from_snapshot(snapshot)
    return RedisEvents(store, updater, MemoryFeatureStore(snapshot).base_row, 10_000)


def _events(snapshot: FeatureSnapshot, user: int, n: int, start: int) -> list[RatingEvent]:
    items = snapshot.item_ids
    picked = [int(items[(start + j) % len(items)]) for j in range(n)]
    return [
        RatingEvent(user, item, float(1 + j % 5), 2_000_000 + start + j)
        for j, item in enumerate(picked)
    ]


def test_redis_rows_lists_and_stream_follow_the_events(
    snapshot: FeatureSnapshot, materialized: RedisSettings, tmp_path: Path
) -> None:
    writer = _writer(snapshot, materialized)
    known_user, new_user = int(snapshot.user_ids[4]), 91_000_001
    events = _events(snapshot, known_user, 7, 0) + _events(snapshot, new_user, 3, 50)
    writer.apply(events[:4])
    writer.apply(events[4:])

    memory = MemoryFeatureStore(snapshot)
    updater = UserRowUpdater.from_snapshot(snapshot)
    live = LiveUsers(memory.base_row, updater, known_events(snapshot))
    live.apply(events)
    store = build_feature_store("redis", materialized, snapshot)
    for user in (known_user, new_user):
        rows = store.read(user, snapshot.item_ids[:3])
        assert rows.backend == "redis"
        np.testing.assert_allclose(rows.user, live.row(user), rtol=1e-6)
        assert store.user_events(user) == live.events_of(user)
    assert read_stream(writer.store) == events
    assert load_events(str(materialized.url)) == events
    count = snapshot.user_columns.index("user_count")
    base = snapshot.user_rows(np.array([known_user]))[0][0][count]
    assert store.read(known_user, snapshot.item_ids[:1]).user[count] == base + 7


def test_two_replicas_racing_on_one_user_lose_no_update(
    snapshot: FeatureSnapshot, materialized: RedisSettings
) -> None:
    user = int(snapshot.user_ids[7])
    per_writer, calls = 5, 30

    def run(offset: int) -> None:
        writer = _writer(snapshot, materialized)  # its own client, as another replica
        for call in range(calls):
            writer.apply(_events(snapshot, user, per_writer, offset + call * per_writer))

    threads = [threading.Thread(target=run, args=(n * 10_000,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store = build_feature_store("redis", materialized, snapshot)
    count = snapshot.user_columns.index("user_count")
    base = snapshot.user_rows(np.array([user]))[0][0][count]
    assert store.read(user, snapshot.item_ids[:1]).user[count] == base + 3 * calls * per_writer
    assert len(store.user_events(user)) == 3 * calls * per_writer


def test_redis_down_user_events_come_from_the_local_log(
    snapshot: FeatureSnapshot, tmp_path: Path
) -> None:
    from feature_store.local_redis import free_port

    settings = RedisSettings(url=f"redis://127.0.0.1:{free_port()}/0")  # nobody listens
    events = _events(snapshot, int(snapshot.user_ids[2]), 4, 0)
    EventLog(tmp_path, 1 << 20, 4).append(events)
    store = build_feature_store("redis", settings, snapshot, EventSettings(dir=tmp_path))
    assert store.user_events(int(snapshot.user_ids[2])) == events
    assert store.read(int(snapshot.user_ids[2]), snapshot.item_ids[:2]).backend == "memory"


def test_history_entries_round_trip() -> None:
    for rating in (None, 0.5, 4.0):
        assert keys.unpack_event(keys.pack_event(12, 3_000_000_000, rating)) == (
            12, 3_000_000_000, rating,
        )  # fmt: skip
