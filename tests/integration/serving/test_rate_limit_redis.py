"""Token buckets in a real Redis: one limit across workers, and a fallback when Redis is gone."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from feature_store.circuit_breaker import CircuitBreaker
from feature_store.local_redis import LocalRedis, free_port
from services.auth import AuthSettings, RateLimit
from services.rate_limit import KEY_PREFIX, RateLimiter

pytestmark = pytest.mark.integration

SLOW = RateLimit(per_second=0.01, burst=40)  # no refill worth counting during a test
SETTINGS = AuthSettings(recommend=SLOW, admin=RateLimit(per_second=0.01, burst=3))


async def _granted(limiters: list[RateLimiter], owner: str, bucket: str, calls: int) -> int:
    """Round-robin `calls` takes over the limiters (the "workers"); how many were granted."""
    waits = [await limiters[i % len(limiters)].take(owner, bucket) for i in range(calls)]
    return sum(wait == 0.0 for wait in waits)


def test_three_workers_share_one_limit(redis_server: LocalRedis) -> None:
    async def run() -> tuple[int, int, float, int]:
        clients = [aioredis.Redis.from_url(redis_server.url) for _ in range(3)]
        workers = [RateLimiter(SETTINGS, client) for client in clients]
        granted = await _granted(workers, "key-a", "recommend", 120)
        other = await _granted(workers, "key-b", "recommend", 10)  # another key: its own bucket
        wait = await workers[0].take("key-a", "recommend")
        ttl = await clients[0].pttl(f"{KEY_PREFIX}key-a:recommend")
        for client in clients:
            await client.aclose()
        return granted, other, wait, ttl

    granted, other, wait, ttl = asyncio.run(run())
    # In-process buckets would grant 3 x 40; Redis grants the one burst (leases of 5 included).
    assert granted == SLOW.burst
    assert other == 10
    assert wait == pytest.approx(1 / SLOW.per_second, rel=0.05)  # a whole token at 0.01/s
    assert 0 < ttl <= (SLOW.burst / SLOW.per_second + 1) * 1000  # buckets expire once full


def test_redis_down_falls_back_to_buckets_in_the_process() -> None:
    async def run() -> tuple[int, str]:
        client = aioredis.Redis.from_url(
            f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=0.05
        )
        limiter = RateLimiter(SETTINGS, client, CircuitBreaker(2, 60.0))
        granted = await _granted([limiter], "key-a", "admin", 10)
        await client.aclose()
        return granted, limiter.status()["circuit"]

    granted, circuit = asyncio.run(run())
    assert granted == 3  # the admin burst, counted locally: still limited, never an error
    assert circuit == "open"
