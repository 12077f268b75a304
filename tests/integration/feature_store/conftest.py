"""Fixtures of the feature store's integration tests: real redis-servers, never mocks."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import redis

from data.snapshot import FeatureSnapshot
from feature_store.base import FeatureStore
from feature_store.bench import synthetic_snapshot
from feature_store.config import RedisSettings
from feature_store.local_redis import LocalRedis, start_redis
from feature_store.materialize import materialize
from feature_store.memory_store import MemoryFeatureStore
from feature_store.redis_store import RedisFeatureStore


@pytest.fixture(scope="session")
def snapshot() -> FeatureSnapshot:
    """A small feature snapshot from the synthetic generator (80 users, 150 items)."""
    return synthetic_snapshot(n_users=80, n_items=150, seed=5)


@pytest.fixture(scope="session")
def other_snapshot() -> FeatureSnapshot:
    """A second snapshot (another version) to switch to."""
    return synthetic_snapshot(n_users=80, n_items=150, seed=6)


@pytest.fixture
def redis_settings(redis_server: LocalRedis) -> RedisSettings:
    """Settings for the session's redis-server, emptied first; pointer cache off."""
    redis.Redis.from_url(redis_server.url).flushall()
    return RedisSettings(url=redis_server.url, active_version_ttl_s=0.0)


@pytest.fixture
def raw(redis_settings: RedisSettings) -> Iterator[redis.Redis]:
    """A plain client to inspect or damage what the store wrote."""
    client = redis.Redis.from_url(str(redis_settings.url))
    yield client
    client.close()


@pytest.fixture
def materialized(snapshot: FeatureSnapshot, redis_settings: RedisSettings) -> RedisSettings:
    """`snapshot` materialized and active in the session's Redis."""
    materialize(snapshot, redis_settings)
    return redis_settings


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest, snapshot: FeatureSnapshot) -> Iterator[FeatureStore]:
    """The contract suite's store: each test body runs against both implementations."""
    if request.param == "memory":
        yield MemoryFeatureStore(snapshot)
        return
    settings = request.getfixturevalue("materialized")
    redis_store = RedisFeatureStore(settings, expected_version=snapshot.version)
    yield redis_store
    redis_store.close()


@pytest.fixture
def private_redis() -> Iterator[Callable[..., LocalRedis]]:
    """Start redis-servers this test may kill (same port again to simulate a restart)."""
    started: list[LocalRedis] = []

    def start(port: int | None = None, *extra: str) -> LocalRedis:
        server = start_redis(port, *extra)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
