"""RedisSettings: URL resolution and startup validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from feature_store.config import RedisSettings


def test_url_wins_over_host_and_port() -> None:
    assert RedisSettings(url="redis://h:1/0", host="x", port=2).resolved_url == "redis://h:1/0"
    assert RedisSettings(host="cache", port=7000, tls=True).resolved_url == "rediss://cache:7000/0"


@pytest.mark.parametrize(
    "bad",
    [
        {"url": "  "},  # an empty URL is a typo, not "use host/port"
        {"url": "localhost:6379"},  # no scheme: redis-py would misread it
        {"socket_timeout_s": 0},  # no timeout means a hung Redis hangs every request
        {"connect_timeout_s": -1},  # negative timeout
        {"failure_threshold": 0},  # the breaker would open without failures
        {"reset_timeout_s": 0},  # the breaker would never stay open
        {"active_version_ttl_s": -1},  # negative cache TTL
        {"max_connections": 0},  # an empty pool serves nobody
        {"materialize_batch_size": 0},  # materialization would loop forever
    ],
)
def test_rejects_nonsense(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        RedisSettings(**bad)
