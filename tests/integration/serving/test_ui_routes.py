"""The page's read routes and its security headers (issue 16), on the in-process service.

Expected values come from the synthetic dataset's own files (ratings.dat, movies.dat), not from
the snapshot the service built.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
from starlette.testclient import TestClient

from services.ui_routes import _quantile

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def titles(synth_dir: Path) -> dict[int, str]:
    lines = (synth_dir / "movies.dat").read_text(encoding="latin-1").splitlines()
    return {int(line.split("::")[0]): line.split("::")[1] for line in lines if line}


@pytest.fixture(scope="module")
def ratings(synth_dir: Path) -> pd.DataFrame:
    """ratings.dat as written: user::movie::rating::timestamp."""
    return pd.read_csv(
        synth_dir / "ratings.dat", sep="::", engine="python",
        names=["user_id", "item_id", "rating", "timestamp"],
    )  # fmt: skip


def test_history_is_the_users_ratings_most_recent_first(
    client: TestClient, ratings: pd.DataFrame, titles: dict[int, str]
) -> None:
    user = int(ratings["user_id"].value_counts().index[-1])  # a light user: all fit one page
    mine = ratings[ratings["user_id"] == user].sort_values(
        ["timestamp", "item_id"], ascending=False
    )
    body = client.get(f"/ui/api/users/{user}/history", params={"limit": 500}).json()
    assert body["known"] is True
    assert [r["item_id"] for r in body["ratings"]] == mine["item_id"].tolist()
    assert [r["rating"] for r in body["ratings"]] == mine["rating"].astype(float).tolist()
    assert [r["title"] for r in body["ratings"]] == [titles[i] for i in mine["item_id"]]
    first = body["ratings"][0]
    assert first["date"] == time.strftime("%Y-%m-%d", time.gmtime(first["timestamp"]))
    assert isinstance(first["genres"], list)
    assert (
        len(client.get(f"/ui/api/users/{user}/history", params={"limit": 2}).json()["ratings"]) == 2
    )


def test_a_rating_posted_now_heads_the_history(client: TestClient, history: pd.DataFrame) -> None:
    user = int(history["user_id"].iloc[7])
    answer = client.post("/recommend", json={"user_id": user, "k": 1}).json()
    movie = answer["recommendations"][0]["item_id"]
    assert client.post(
        "/events", json={"events": [{"user_id": user, "item_id": movie, "rating": 2.5}]}
    ).json() == {"accepted": 1}
    latest = client.get(f"/ui/api/users/{user}/history").json()["ratings"][0]
    assert (latest["item_id"], latest["rating"]) == (movie, 2.5)


def test_a_new_user_has_no_history(client: TestClient) -> None:
    body = client.get("/ui/api/users/987654321/history").json()
    assert body == {"user_id": 987654321, "known": False, "ratings": []}


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/ui/api/users/abc/history", 400),  # not an integer
        ("/ui/api/users/99999999999999999999/history", 400),  # beyond int64
        ("/ui/api/users/1/history?limit=0", 400),  # limit out of 1..500
        ("/ui/api/users/1/history?limit=501", 400),
        ("/ui/static/..%2Fauth.py", 404),  # no path out of services/ui
        ("/ui/static/.env", 404),  # no dot-files
        ("/ui/static/ui_routes.py", 404),  # only the page's own file types
    ],
)
def test_bad_page_requests_get_a_4xx(client: TestClient, path: str, status: int) -> None:
    response = client.get(path)
    assert response.status_code == status, response.text
    assert "error" in response.json()


def test_random_user_is_known(client: TestClient, history: pd.DataFrame) -> None:
    known = set(history["user_id"].tolist())
    assert all(client.get("/ui/api/users/random").json()["user_id"] in known for _ in range(5))


def test_status_and_labels(client: TestClient, history: pd.DataFrame) -> None:
    from models.ranker import FEATURE_NAMES

    for user in history["user_id"].unique()[:5]:
        client.post("/recommend", json={"user_id": int(user)})
    status = client.get("/ui/api/status")
    body = status.json()
    assert body["stages"] == "embedded"
    assert body["feature_store"]["mode"] == "parquet"
    assert body["latency_ms"]["requests"] >= 5
    assert 0 < body["latency_ms"]["p50"] <= body["latency_ms"]["p99"]
    assert body["auth"] == {"enabled": False}
    assert "script-src 'self'" in status.headers["content-security-policy"]
    assert status.headers["x-content-type-options"] == "nosniff"
    labels = client.get("/ui/labels.json").json()
    assert set(labels) == set(FEATURE_NAMES)


def test_explained_answers_carry_the_place_before_ranking(
    client: TestClient, history: pd.DataFrame
) -> None:
    user = int(history["user_id"].iloc[0])
    body = client.post("/recommend", json={"user_id": user, "k": 10, "explain": True}).json()
    places = [r["retrieval_rank"] for r in body["recommendations"]]
    assert all(isinstance(p, int) and p >= 1 for p in places)
    assert len(set(places)) == len(places)
    plain = client.post("/recommend", json={"user_id": user, "k": 10}).json()
    assert all(r["retrieval_rank"] is None for r in plain["recommendations"])


@pytest.mark.parametrize(
    ("buckets", "q", "expected"),
    [
        ([(0.001, 0.0), (0.002, 10.0), (float("inf"), 10.0)], 0.5, 1.5),  # mid of 1..2 ms
        ([(0.001, 5.0), (0.002, 10.0), (float("inf"), 10.0)], 0.99, 1.98),
        ([(0.001, 0.0), (float("inf"), 4.0)], 0.5, 1.0),  # past the last bound: the bound
        ([(0.001, 0.0), (float("inf"), 0.0)], 0.5, None),  # no requests yet
    ],
)
def test_quantiles_follow_prometheus_histogram_quantile(buckets, q, expected) -> None:
    assert _quantile(buckets, q) == (pytest.approx(expected) if expected is not None else None)
