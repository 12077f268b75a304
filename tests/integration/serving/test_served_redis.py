"""The served API over Redis, end to end (issue 20): materialize, serve, answer, load, breaker.

`make serve FEATURE_STORE_MODE=redis` in a test: the session's snapshot is materialized into a
redis-server of this test's own, the composed service runs under `bentoml serve` with
FEATURE_STORE_MODE=redis, and its answers are compared with the embedded store's (the in-process
`client`, a different backend over the same snapshot). Then Locust runs against it through
`recsys load`, and Redis is killed: every request still answers, from the embedded snapshot,
and /health says the service is degraded.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pandas as pd
import pytest
from starlette.testclient import TestClient

from feature_store.local_redis import LocalRedis, start_redis
from models.train import TrainReport

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def redis_for_service(trained_models: TrainReport) -> Iterator[LocalRedis]:
    """A redis-server of this module's own (the test kills it), holding the served snapshot."""
    from feature_store.config import RedisSettings
    from feature_store.materialize import materialize
    from models.artifacts import load_snapshot

    server = start_redis()
    materialize(
        load_snapshot(trained_models.tags["feature-snapshot"]), RedisSettings(url=server.url)
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def served_redis(
    served_client: Callable[..., AbstractContextManager[httpx.Client]],
    trained_models: TrainReport,
    service_env: dict[str, str],
    redis_for_service: LocalRedis,
) -> Iterator[httpx.Client]:
    """The composed service under `bentoml serve`, reading features from Redis."""
    env = {**service_env, "FEATURE_STORE_MODE": "redis", "REDIS_URL": redis_for_service.url}
    with served_client(
        "services.recommendation:RecommendationService", trained_models.tags, env
    ) as client:
        yield client


def _answers(client: httpx.Client | TestClient, users: list[int]) -> dict[int, list[int]]:
    out = {}
    for user_id in users:
        response = client.post("/recommend", json={"user_id": user_id, "k": 10})
        assert response.status_code == 200, response.text
        out[user_id] = [r["item_id"] for r in response.json()["recommendations"]]
    return out


def test_redis_served_answers_equal_the_embedded_store_then_survive_redis_death(
    served_redis: httpx.Client,
    client: TestClient,
    history: pd.DataFrame,
    redis_for_service: LocalRedis,
    tmp_path: Path,
) -> None:
    users = [int(u) for u in history["user_id"].drop_duplicates().iloc[:15]] + [66_000_000]
    health = served_redis.get("/health").json()
    assert health.pop("events")["pending_redis"] == 0
    assert health == {
        "status": "ok",
        "stages": "embedded",  # the default placement
        "feature_store": {"mode": "redis", "backend": "redis", "circuit": "closed"},
    }
    reference = _answers(client, users)  # the embedded store, in process
    assert _answers(served_redis, users) == reference

    # Locust through `recsys load`, budgets loose enough not to flake (figures: `make bench`).
    recsys = Path(sys.executable).with_name("recsys")
    known = int(history["user_id"].max())
    args = [str(recsys), "load", "--host", str(served_redis.base_url).rstrip("/"),
            "--users", "4", "--rate", "4", "--duration", "4s", "--p95-ms", "2000",
            "--p99-ms", "5000", "--max-user-id", str(known), "--out", str(tmp_path)]  # fmt: skip
    done = subprocess.run(
        args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "budgets held" in done.stdout

    redis_for_service.stop()
    assert _answers(served_redis, users) == reference  # no request fails, same features
    health = served_redis.get("/health").json()
    assert health.pop("events")["pending_redis"] == 0  # nothing was posted
    assert health == {
        "status": "degraded",
        "stages": "embedded",
        "feature_store": {"mode": "redis", "backend": "memory", "circuit": "open"},
    }
