"""`recsys bench features`: read latency of both stores and materialization time, measured.

Targets (issue 5): 1 user + 100 items from Redis on loopback p99 < 1 ms; embedded store p99 <
50 µs; materializing an ML-1M-sized snapshot (6,040 users, 3,706 items) < 10 s.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from data.snapshot import FeatureSnapshot
from feature_store.config import RedisSettings
from feature_store.local_redis import start_redis
from feature_store.materialize import materialize
from feature_store.memory_store import MemoryFeatureStore
from feature_store.redis_store import RedisFeatureStore
from feature_store.resilient import build_feature_store

TARGETS = {"redis_p99_ms": 1.0, "memory_p99_us": 50.0, "materialize_s": 10.0}


@dataclass(frozen=True)
class Figure:
    """One measured number and its target (None: no target)."""

    name: str
    value: float
    unit: str
    target: float | None = None

    @property
    def ok(self) -> bool:
        """Within target (always True without one)."""
        return self.target is None or self.value < self.target


def synthetic_snapshot(n_users: int = 6040, n_items: int = 3706, seed: int = 0) -> FeatureSnapshot:
    """An ML-1M-sized feature snapshot from the synthetic generator (no download needed)."""
    from data.features import build_snapshot
    from data.schema import DataFormat, Dataset
    from data.synth import generate

    synth = generate(n_users, n_items, n_ratings=50 * n_users, seed=seed)
    dataset = Dataset(DataFormat.ML_1M, synth.interactions, synth.users, synth.items, True)
    return build_snapshot(dataset, synth.interactions)


def _percentiles(
    read: Callable[[int, np.ndarray], object],
    requests: list[tuple[int, np.ndarray]],
    scale: float,
) -> np.ndarray:
    for user_id, item_ids in requests[:200]:  # warm-up: connections, caches
        read(user_id, item_ids)
    gc.collect()
    times = np.empty(len(requests))
    for n, (user_id, item_ids) in enumerate(requests):
        start = time.perf_counter()
        read(user_id, item_ids)
        times[n] = time.perf_counter() - start
    return np.percentile(times, [50, 99]) * scale


def bench_features(
    snapshot: FeatureSnapshot | None = None,
    redis_url: str | None = None,
    reads: int = 5000,
    items_per_read: int = 100,
    seed: int = 0,
) -> list[Figure]:
    """Materialize `snapshot` into Redis and time reads of 1 user + `items_per_read` items.

    Args:
        snapshot: what to serve (default: the ML-1M-sized synthetic snapshot).
        redis_url: a Redis to use (its active version is switched!); None starts a private
            redis-server on a free loopback port and stops it afterwards.
        reads: timed reads per store.
        items_per_read: items per read.
        seed: for the request mix.

    Returns:
        The figures, with targets where the issue sets one.
    """
    snapshot = snapshot or synthetic_snapshot(seed=seed)
    rng = np.random.default_rng(seed)
    requests = [
        (int(rng.choice(snapshot.user_ids)), rng.choice(snapshot.item_ids, items_per_read))
        for _ in range(reads)
    ]
    server = None if redis_url else start_redis()
    settings = RedisSettings(url=server.url if server is not None else redis_url)
    try:
        report = materialize(snapshot, settings)
        memory = MemoryFeatureStore(snapshot)
        parquet = build_feature_store("parquet", settings, snapshot)
        plain = RedisFeatureStore(settings, expected_version=snapshot.version)
        resilient = build_feature_store("redis", settings, snapshot)
        mem = _percentiles(memory.read, requests, 1e6)
        par = _percentiles(parquet.read, requests, 1e6)
        red = _percentiles(plain.read, requests, 1e3)
        res = _percentiles(resilient.read, requests, 1e3)
        assert resilient.status()["backend"] == "redis", resilient.status()
        plain.close()
        resilient.close()
    finally:
        if server is not None:
            server.stop()
    rows = f"{report.users:,} users + {report.items:,} items"
    return [
        Figure(f"materialize {rows}", report.seconds, "s", TARGETS["materialize_s"]),
        Figure("embedded store p50", mem[0], "µs"),
        Figure("embedded store p99", mem[1], "µs", TARGETS["memory_p99_us"]),
        Figure("embedded via resilient store (parquet mode) p99", par[1], "µs"),
        Figure("redis store p50", red[0], "ms"),
        Figure("redis store p99", red[1], "ms", TARGETS["redis_p99_ms"]),
        Figure("redis via resilient store (breaker + metrics) p50", res[0], "ms"),
        Figure("redis via resilient store (breaker + metrics) p99", res[1], "ms"),
    ]
