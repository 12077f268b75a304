"""Issue 11: a service trained on ML-100K never recommends a movie the user rated in it.

The models come from `recsys train`'s code (`train_all`, quick settings) on all of ML-100K; the
"already rated" sets are read straight from u.data. Every user is asked for 100 movies through
each way a user reaches the models: `recsys recommend --batch` (a real subprocess) and HTTP under
`bentoml serve`, retrieval alone and both stages, with the embedded and the Redis feature store.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

from feature_store.local_redis import LocalRedis
from models.train import TrainReport

pytestmark = [pytest.mark.integration, pytest.mark.slow]

K = 100


@pytest.fixture(params=["parquet", "redis"])
def store_env(
    request: pytest.FixtureRequest, ml100k_models: TrainReport, redis_server: LocalRedis
) -> dict[str, str]:
    """The feature-store part of the environment; Redis gets the deployed snapshot first."""
    if request.param == "parquet":
        return {"FEATURE_STORE_MODE": "parquet"}
    from feature_store.config import RedisSettings
    from feature_store.materialize import materialize
    from models.artifacts import load_snapshot

    snapshot = load_snapshot(ml100k_models.tags["feature-snapshot"])
    materialize(snapshot, RedisSettings(url=redis_server.url))
    return {"FEATURE_STORE_MODE": "redis", "REDIS_URL": redis_server.url}


def _assert_nothing_rated(answers: Mapping[int, list[int]], rated: dict[int, set[int]]) -> None:
    assert set(answers) == set(rated)
    returned = {user: items for user, items in answers.items() if items}
    assert len(returned) == len(rated), "every known user gets recommendations"
    again = {user: sorted(set(items) & rated[user]) for user, items in answers.items()}
    assert {user: items for user, items in again.items() if items} == {}
    assert all(len(items) == K for items in answers.values())


@pytest.mark.parametrize("stage", ["two-stage", "retrieval"])
def test_batch_never_returns_rated_movies(
    tmp_path: Path,
    stage: str,
    store_env: dict[str, str],
    ml100k_models: TrainReport,
    ml100k_rated: dict[int, set[int]],
    pinned_artifacts_env: Callable[[Mapping[str, str]], dict[str, str]],
) -> None:
    users = tmp_path / "users.txt"
    users.write_text("".join(f"{u}\n" for u in sorted(ml100k_rated)))
    out = tmp_path / "recs.jsonl"
    env = {**os.environ, **pinned_artifacts_env(ml100k_models.tags), **store_env}
    recsys = Path(sys.executable).with_name("recsys")
    args = [str(recsys), "recommend", "--batch", str(users), "-k", str(K), "--out", str(out),
            "--stage", stage]  # fmt: skip
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    _assert_nothing_rated({line["user_id"]: line["items"] for line in lines}, ml100k_rated)


def test_http_never_returns_rated_movies(
    store_env: dict[str, str],
    ml100k_models: TrainReport,
    ml100k_rated: dict[int, set[int]],
    ml100k_dir: Path,
    served_client: Callable[..., AbstractContextManager[httpx.Client]],
) -> None:
    with served_client(
        "services.recommendation:RecommendationService", ml100k_models.tags, store_env
    ) as client:
        answers = {}
        for user in sorted(ml100k_rated):
            response = client.post("/recommend", json={"user_id": user, "k": K})
            assert response.status_code == 200, response.text
            answers[user] = [r["item_id"] for r in response.json()["recommendations"]]
        info = client.get("/info").json()
    _assert_nothing_rated(answers, ml100k_rated)
    # The deployed models say what they are and how recent their data is.
    assert info["purpose"] == "deploy"
    assert info["retriever"]["labels"]["purpose"] == "deploy"
    assert info["ranker"]["labels"]["purpose"] == "deploy"
    last = max(int(line.split("\t")[3]) for line in (ml100k_dir / "u.data").read_text().split("\n")
               if line)  # fmt: skip
    assert info["known_until"] == last
    assert info["retriever"]["metadata"]["known_ratings"] == sum(map(len, ml100k_rated.values()))


def test_http_retrieval_never_returns_rated_movies(
    ml100k_models: TrainReport,
    ml100k_rated: dict[int, set[int]],
    served_client: Callable[..., AbstractContextManager[httpx.Client]],
) -> None:
    with served_client("services.retriever:RetrieverService", ml100k_models.tags) as client:
        answers = {}
        for user in sorted(ml100k_rated):
            response = client.post("/retrieve", json={"user_id": user, "k": K})
            assert response.status_code == 200, response.text
            answers[user] = response.json()["item_ids"]
    _assert_nothing_rated(answers, ml100k_rated)
