"""The resilient store in parquet mode, and in redis mode against a real refused port."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import REGISTRY

from feature_store.circuit_breaker import CircuitBreaker, CircuitState
from feature_store.config import RedisSettings
from feature_store.local_redis import free_port
from feature_store.memory_store import MemoryFeatureStore
from feature_store.redis_store import RedisFeatureStore
from feature_store.resilient import ResilientFeatureStore, build_feature_store


def _fallbacks(reason: str) -> float:
    value = REGISTRY.get_sample_value("recsys_feature_store_fallbacks_total", {"reason": reason})
    return value or 0.0


def test_parquet_mode_serves_the_snapshot_without_a_breaker(snapshot) -> None:
    store = build_feature_store("parquet", RedisSettings(), snapshot)
    rows = store.read(int(snapshot.user_ids[0]), snapshot.item_ids[:10])
    np.testing.assert_array_equal(rows.items, snapshot.item_matrix[:10])
    assert store.status() == {"mode": "parquet", "backend": "memory", "circuit": "disabled"}
    assert store.version == snapshot.version


def test_unknown_mode_is_rejected(snapshot) -> None:
    with pytest.raises(ValueError, match="parquet"):
        build_feature_store("memcached", RedisSettings(), snapshot)  # type: ignore[arg-type]


def test_refused_port_opens_the_breaker_and_every_read_succeeds(snapshot, clock) -> None:
    settings = RedisSettings(url=f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    breaker = CircuitBreaker(3, 5.0, clock=clock)
    store = ResilientFeatureStore(
        MemoryFeatureStore(snapshot), RedisFeatureStore(settings, snapshot.version), breaker
    )
    unavailable, circuit_open = _fallbacks("unavailable"), _fallbacks("circuit_open")
    item_ids = snapshot.item_ids[:20]
    for user_id in snapshot.user_ids[:10]:
        rows = store.read(int(user_id), item_ids)
        assert rows.backend == "memory"
        np.testing.assert_array_equal(rows.items, snapshot.item_matrix[:20])
    assert breaker.state is CircuitState.OPEN
    assert _fallbacks("unavailable") - unavailable == 3  # then no more Redis calls
    assert _fallbacks("circuit_open") - circuit_open == 7
    assert store.status() == {"mode": "redis", "backend": "memory", "circuit": "open"}
    clock.advance(5.0)
    store.read(1, item_ids)  # the half-open trial, refused again
    assert breaker.state is CircuitState.OPEN
    assert _fallbacks("unavailable") - unavailable == 4
