"""Per-key token buckets: in process, or in Redis so that limits hold across workers and pods.

Each (key, bucket) pair is a token bucket: `RateLimit.per_second` tokens refill continuously up
to `RateLimit.burst`; a request takes one token or is told how long to wait (429 with
``Retry-After``). In parquet mode the buckets live in the process. In redis mode they live in
Redis (``rs:v1:rl:<key id>:<bucket>``, one hash per bucket, expiring once full again), updated by
one Lua script so a read-modify-write is atomic across workers and pods. A worker takes tokens
from Redis a few at a time (a lease of up to 1/8 of the burst, at most 16) and spends them
locally, so Redis sees one round trip per lease, not per request; the most a key can overshoot
is one lease per worker. While Redis is unreachable (the feature store's circuit breaker, reused)
each worker falls back to its own in-process buckets.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from redis.exceptions import RedisError

from feature_store.circuit_breaker import CircuitBreaker
from feature_store.config import RedisSettings
from services.auth import AuthSettings, RateLimit

logger = logging.getLogger(__name__)

KEY_PREFIX = "rs:v1:rl:"
MAX_LEASE = 16
# KEYS[1] the bucket; ARGV rate per second, burst, now in ms, tokens wanted, ttl in ms.
# Returns {tokens granted, ms to wait when none}.
TOKEN_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local state = redis.call('HMGET', KEYS[1], 't', 'ts')
local tokens = tonumber(state[1])
local stamp = tonumber(state[2])
if tokens == nil or stamp == nil then
  tokens = burst
  stamp = now
end
if now > stamp then
  tokens = math.min(burst, tokens + (now - stamp) * rate / 1000)
else
  now = stamp
end
local granted = math.min(want, math.floor(tokens))
local wait = 0
if granted < 1 then
  granted = 0
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
tokens = tokens - granted
redis.call('HSET', KEYS[1], 't', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]))
return {granted, wait}
"""


def lease_size(limit: RateLimit) -> int:
    """Tokens a worker takes from Redis at once for a bucket with this limit."""
    return max(1, min(MAX_LEASE, limit.burst // 8))


class LocalBuckets:
    """Token buckets in this process (single event loop: no lock needed)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[tuple[str, str], tuple[float, float]] = {}

    def take(self, owner: str, bucket: str, limit: RateLimit) -> float:
        """Take one token; returns 0 when granted, else the seconds until one is there."""
        now = self._clock()
        tokens, stamp = self._buckets.get((owner, bucket), (float(limit.burst), now))
        tokens = min(float(limit.burst), tokens + max(0.0, now - stamp) * limit.per_second)
        if tokens >= 1.0:
            self._buckets[owner, bucket] = (tokens - 1.0, now)
            return 0.0
        self._buckets[owner, bucket] = (tokens, now)
        return (1.0 - tokens) / limit.per_second


class RateLimiter:
    """Token buckets per (key id, bucket), in Redis when given a client, else in process."""

    def __init__(
        self,
        settings: AuthSettings,
        redis_client: Any = None,
        breaker: CircuitBreaker | None = None,
        wall_ms: Callable[[], float] = lambda: time.time() * 1000.0,
    ) -> None:
        """Args:
        settings: the rate limit of each bucket.
        redis_client: a `redis.asyncio` client (None: in-process buckets only).
        breaker: when Redis counts as down (None: a breaker with the feature store's defaults).
        wall_ms: wall-clock milliseconds (shared by every process that uses the Redis buckets).
        """
        self.settings = settings
        self.local = LocalBuckets()
        self._redis = redis_client
        self._script = redis_client.register_script(TOKEN_BUCKET_LUA) if redis_client else None
        defaults = RedisSettings()
        self.breaker = breaker or CircuitBreaker(
            defaults.failure_threshold, defaults.reset_timeout_s
        )
        self._wall_ms = wall_ms
        self._leased: dict[tuple[str, str], int] = {}

    @classmethod
    def for_service(cls, settings: Any) -> RateLimiter:
        """In Redis in redis mode (limits hold across workers and pods), else in process."""
        if settings.feature_store_mode != "redis":
            return cls(settings.auth)
        import redis.asyncio as aioredis

        r: RedisSettings = settings.redis
        options = r.client_options()
        if r.cluster:
            client: Any = aioredis.RedisCluster.from_url(r.resolved_url, **options)
        else:
            client = aioredis.Redis.from_url(r.resolved_url, **options)
        breaker = CircuitBreaker(r.failure_threshold, r.reset_timeout_s)
        return cls(settings.auth, client, breaker)

    @property
    def backend(self) -> str:
        """``redis`` or ``local``."""
        return "redis" if self._script is not None else "local"

    def status(self) -> dict[str, Any]:
        """Limits in force and where the buckets live (for /info)."""
        limits = {
            name: self.settings.limit(name).model_dump()
            for name in ("recommend", "events", "admin", "drift_check")
        }
        out: dict[str, Any] = {"backend": self.backend, "per_key": limits}
        if self._script is not None:
            out["circuit"] = str(self.breaker.state)
        return out

    async def take(self, owner: str, bucket: str) -> float:
        """Take one token of `owner`'s `bucket`; returns 0 when granted, else seconds to wait."""
        limit = self.settings.limit(bucket)
        if self._script is None or not self.breaker.allow():
            return self.local.take(owner, bucket, limit)
        pair = (owner, bucket)
        if self._leased.get(pair, 0) > 0:
            self._leased[pair] -= 1
            return 0.0
        want = lease_size(limit)
        ttl_ms = math.ceil(limit.burst / limit.per_second * 1000) + 1000
        args = [limit.per_second, limit.burst, int(self._wall_ms()), want, ttl_ms]
        try:
            granted, wait_ms = await self._script(keys=[f"{KEY_PREFIX}{owner}:{bucket}"], args=args)
        except (RedisError, OSError) as exc:  # timeouts, refused connections, NOPERM
            self.breaker.record_failure()
            logger.warning("rate limits in this process only: Redis failed (%s)", exc)
            return self.local.take(owner, bucket, limit)
        self.breaker.record_success()
        if int(granted) < 1:
            return max(int(wait_ms), 1) / 1000.0
        self._leased[pair] = int(granted) - 1
        return 0.0
