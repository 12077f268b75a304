"""POST /events against `bentoml serve` (three processes): restarts, two replicas on one Redis,
and Redis killed while events stream in.

What is expected comes from outside the service: the movies the test itself rated, and what a
plain Redis client finds in the stream afterwards.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pandas as pd
import pytest
import redis

from feature_store.local_redis import LocalRedis, start_redis
from models.train import TrainReport

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVICE = "services.recommendation:RecommendationService"
# 100 in `make test`; the 1,000: FRESHNESS_TRIALS=1000 pytest this_file
TRIALS = int(os.environ.get("FRESHNESS_TRIALS", "100"))
Serve = Callable[..., AbstractContextManager[httpx.Client]]


def _top(http: httpx.Client, user: int, k: int = 10) -> tuple[list[int], bool]:
    response = http.post("/recommend", json={"user_id": user, "k": k})
    assert response.status_code == 200, response.text
    body = response.json()
    return [r["item_id"] for r in body["recommendations"]], body["cold_start"]


def _post(http: httpx.Client, events: list[dict]) -> None:
    response = http.post("/events", json={"events": events})
    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": len(events)}


def _freshness_trials(ask: httpx.Client, tell: httpx.Client, users: list[int], n: int) -> set:
    """Rate the top movie at `tell`, then ask `ask`: the movie must be gone, every time."""
    rated = set()
    for trial in range(n):
        user = users[trial % len(users)]
        top, _ = _top(ask, user)
        _post(tell, [{"user_id": user, "item_id": top[0], "rating": 4}])
        assert top[0] not in _top(ask, user)[0], f"trial {trial}: user {user} got {top[0]} again"
        rated.add((user, top[0]))
    return rated


def test_events_survive_a_restart(
    served_client: Serve,
    trained_models: TrainReport,
    service_env: dict[str, str],
    history: pd.DataFrame,
    tmp_path: Path,
) -> None:
    env = {**service_env, "RECSYS_EVENTS__DIR": str(tmp_path / "events")}
    users = [int(u) for u in history["user_id"].drop_duplicates().iloc[-40:-20]]
    newcomer = 80_000_001
    with served_client(SERVICE, trained_models.tags, env) as http:
        rated = _freshness_trials(http, http, users, TRIALS)
        first, cold = _top(http, newcomer)
        assert cold
        _post(http, [{"user_id": newcomer, "item_id": item, "rating": 5} for item in first[:3]])
        assert _top(http, newcomer)[1] is False
    with served_client(SERVICE, trained_models.tags, env) as http:  # the same log, replayed
        for user in users:
            top = set(_top(http, user, k=100)[0])
            assert not top & {item for u, item in rated if u == user}
        items, cold = _top(http, newcomer, k=50)
        assert cold is False
        assert not set(items) & set(first[:3])


def _durable(tmp_path: Path) -> tuple[str, ...]:
    """redis-server arguments: every command to the AOF in `tmp_path` (a restart keeps data)."""
    data = tmp_path / "redis"
    data.mkdir(exist_ok=True)
    return ("--appendonly", "yes", "--appendfsync", "always", "--dir", str(data))


@pytest.fixture
def durable_redis(trained_models: TrainReport, tmp_path: Path) -> LocalRedis:
    """A durable redis-server (`_durable`) holding the served snapshot."""
    from feature_store.config import RedisSettings
    from feature_store.materialize import materialize
    from models.artifacts import load_snapshot

    server = start_redis(None, *_durable(tmp_path))
    materialize(
        load_snapshot(trained_models.tags["feature-snapshot"]), RedisSettings(url=server.url)
    )
    return server


def _pending(http: httpx.Client) -> int:
    return int(http.get("/health").json()["events"]["pending_redis"])


def test_two_replicas_share_redis_and_redis_death_loses_nothing(
    served_client: Serve,
    trained_models: TrainReport,
    service_env: dict[str, str],
    history: pd.DataFrame,
    durable_redis: LocalRedis,
    tmp_path: Path,
) -> None:
    env = {
        **service_env,
        "FEATURE_STORE_MODE": "redis",
        "REDIS_URL": durable_redis.url,
        "RECSYS_REDIS__RESET_TIMEOUT_S": "1.0",
        "RECSYS_EVENTS__REPLAY_INTERVAL_S": "0.2",
    }
    users = [int(u) for u in history["user_id"].drop_duplicates().iloc[-60:-40]]
    catalog = sorted(history["item_id"].unique().tolist())
    server = durable_redis
    env_a = {**env, "RECSYS_EVENTS__DIR": str(tmp_path / "a")}
    env_b = {**env, "RECSYS_EVENTS__DIR": str(tmp_path / "b")}
    with (
        served_client(SERVICE, trained_models.tags, env_a) as a,
        served_client(SERVICE, trained_models.tags, env_b) as b,
    ):
        rated = _freshness_trials(ask=b, tell=a, users=users, n=TRIALS)  # post to A, ask B
        streamed = []
        for n in range(200):
            event = {"user_id": 81_000_000 + n % 7, "item_id": catalog[n % len(catalog)],
                     "rating": 3.5, "timestamp": 1_500_000_000 + n}  # fmt: skip
            if n == 50:
                server.stop()  # killed (SIGKILL) while events stream in
            if n == 150:
                server = start_redis(server.port, *_durable(tmp_path))  # same data back
            _post(a, [event])
            streamed.append(event)
            if 60 <= n < 150:
                assert _pending(a) > 0
        deadline = time.monotonic() + 30
        while _pending(a) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _pending(a) == 0
        assert b.get("/health").json()["status"] == "ok"

    client = redis.Redis.from_url(server.url)
    try:
        version = client.get("rs:v1:active").decode()
        entries = client.xrange(f"rs:v1:{{{version}}}:events", "-", "+")
    finally:
        client.close()
        server.stop()
    found = [(int(f[b"u"]), int(f[b"i"]), int(f[b"t"])) for _, f in entries]
    expected = [(e["user_id"], e["item_id"], e["timestamp"]) for e in streamed]
    # none lost, none applied twice
    assert sorted(t for t in found if t[0] >= 81_000_000) == sorted(expected)
    assert len([t for t in found if t[0] < 81_000_000]) == len(rated)


def test_two_workers_share_the_event_log(
    trained_models: TrainReport,
    service_env: dict[str, str],
    history: pd.DataFrame,
    tmp_path: Path,
) -> None:
    """RECSYS_WORKERS=2 (embedded stages, parquet): an event posted to one worker is known to
    the other at its next request (every request below opens a new connection, so the kernel
    spreads them over both workers; the server log shows both answered)."""
    from services.tooling.bench_service import serve

    env = {**service_env, "RECSYS_EVENTS__DIR": str(tmp_path / "events"), "RECSYS_WORKERS": "2"}
    users = [int(u) for u in history["user_id"].drop_duplicates().iloc[-60:-40]]
    with serve(SERVICE, extra_env=env, log_dir=tmp_path) as served:

        def fresh() -> httpx.Client:
            return httpx.Client(base_url=served.url, timeout=30, headers={"connection": "close"})

        for trial in range(30):
            user = users[trial % len(users)]
            with fresh() as http:
                top, _ = _top(http, user)
            with fresh() as http:
                _post(http, [{"user_id": user, "item_id": top[0], "rating": 4}])
            for _ in range(3):  # whichever worker answers next
                with fresh() as http:
                    assert top[0] not in _top(http, user)[0], f"trial {trial}: {top[0]} again"
        log = served.log_path.read_text()
    assert "entry_service:recommendation:1]" in log
    assert "entry_service:recommendation:2]" in log
