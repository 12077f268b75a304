"""The RecommendationService under a real `bentoml serve`, in both stage placements.

`embedded` (what `make serve` runs): one process holds the retriever and ranker. `remote`: BentoML
starts them as dependency processes and the recommendation service reaches them over their
sockets. Each test runs against each placement, and one test checks that the two answer the same
requests identically. The in-process API tests (test_api.py) cover the
request/response contract; these cover what only the real server shows: Prometheus metrics,
health and info, the placement in force.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import httpx
import pandas as pd
import pytest

from models.train import TrainReport

pytestmark = [pytest.mark.integration, pytest.mark.slow]


SERVICE = "services.recommendation:RecommendationService"
PLACEMENTS = ("embedded", "remote")


@pytest.fixture(scope="module", params=PLACEMENTS)
def placement(request: pytest.FixtureRequest) -> str:
    """The placement the module's tests run against (each served once, one after the other)."""
    return str(request.param)


@pytest.fixture(scope="module")
def served(
    placement: str,
    served_client: Callable[..., AbstractContextManager[httpx.Client]],
    trained_models: TrainReport,
    service_env: dict[str, str],
) -> Iterator[httpx.Client]:
    """The service in `placement`, pinned to the session's models.

    One server at a time: two `bentoml serve` with one BENTOML_HOME share its Prometheus
    multiprocess directory, and the second start wipes the first's metrics.
    """
    env = {**service_env, "RECSYS_STAGES": placement}
    with served_client(SERVICE, trained_models.tags, env) as client:
        yield client


def _answer(body: dict) -> dict:
    """A /recommend answer without its timings (the only field that may differ)."""
    return {key: value for key, value in body.items() if key != "timings_ms"}


def test_both_placements_answer_the_same_requests_identically(
    served_client: Callable[..., AbstractContextManager[httpx.Client]],
    trained_models: TrainReport,
    service_env: dict[str, str],
    history: pd.DataFrame,
) -> None:
    users = [int(u) for u in history["user_id"].unique()[:15]]
    requests = [
        *({"user_id": u, "k": 10} for u in users),
        {"user_id": users[0], "k": 25, "explain": True},
        {"user_id": users[1], "k": 5, "exclude_seen": False},
        {"user_id": 91_000_001, "k": 10},  # cold
        {"user_id": 91_000_002, "k": 3, "explain": True},
    ]
    answers, after = {}, {}
    for placement in PLACEMENTS:
        env = {**service_env, "RECSYS_STAGES": placement}
        with served_client(SERVICE, trained_models.tags, env) as client:
            assert client.get("/info").json()["stages"] == placement
            answers[placement] = [
                _answer(client.post("/recommend", json=r).json()) for r in requests
            ]
            # An event changes both the same way: the rated movie leaves the list.
            top = answers[placement][2]["recommendations"][0]["item_id"]
            event = {"events": [{"user_id": users[2], "item_id": top, "rating": 5.0}]}
            assert client.post("/events", json=event).status_code == 200
            body = client.post("/recommend", json={"user_id": users[2], "k": 10}).json()
            after[placement] = _answer(body)
            assert top not in {r["item_id"] for r in body["recommendations"]}
    assert answers["embedded"] == answers["remote"]
    assert after["embedded"] == after["remote"]
    assert all(a["recommendations"] for a in answers["embedded"])
    assert answers["embedded"][15]["recommendations"][0]["reasons"]  # explain=true explains


def _metric(text: str, name: str, labels: str = "") -> float:
    """Sum of a metric's samples whose label set contains `labels`."""
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", re.MULTILINE)
    return sum(float(v) for lbl, v in pattern.findall(text) if labels in (lbl or ""))


def test_recommend_served(served: httpx.Client, history: pd.DataFrame) -> None:
    user_id = int(history["user_id"].value_counts().index[0])
    seen = set(history.loc[history["user_id"] == user_id, "item_id"])
    body = served.post("/recommend", json={"user_id": user_id, "k": 20}).json()
    assert body["cold_start"] is False
    assert len(body["recommendations"]) == 20
    assert not {r["item_id"] for r in body["recommendations"]} & seen
    cold = served.post("/recommend", json={"user_id": 77_000_000, "k": 3}).json()
    assert cold["cold_start"] is True
    assert len(cold["recommendations"]) == 3
    assert served.post("/recommend", json={"user_id": "x"}).status_code == 400


def test_metrics_count_requests_stages_cold_starts_and_feature_reads(
    served: httpx.Client, history: pd.DataFrame
) -> None:
    before = served.get("/metrics").text
    users = [int(u) for u in history["user_id"].unique()[:10]]
    for user_id in [*users, 88_000_001, 88_000_002]:
        assert served.post("/recommend", json={"user_id": user_id, "k": 5}).status_code == 200
    after = served.get("/metrics").text

    def grew(name: str, labels: str = "") -> float:
        return _metric(after, name, labels) - _metric(before, name, labels)

    assert grew("recsys_requests_total", 'outcome="ok"') == 12
    assert grew("recsys_cold_starts_total") == 2
    assert grew("recsys_stage_seconds_count", 'stage="retrieval"') == 12
    assert grew("recsys_stage_seconds_count", 'stage="ranking"') == 12
    assert grew("recsys_feature_store_reads_total", 'backend="memory"') == 12
    assert "recsys_feature_store_circuit_state" in after
    assert grew("bentoml_service_request_total", 'endpoint="/recommend"') == 12


def test_health_and_info_say_the_placement(
    served: httpx.Client, placement: str, trained_models: TrainReport
) -> None:
    health = served.get("/health").json()
    assert "pending_redis" not in health.pop("events")  # parquet mode: the log is the state
    assert health.pop("stages") == placement
    if placement == "remote":
        assert health.pop("stage_circuits") == {"retriever": "closed", "ranker": "closed"}
    assert health == {
        "status": "ok",
        "feature_store": {"mode": "parquet", "backend": "memory", "circuit": "disabled"},
    }
    info = served.get("/info").json()
    assert info["stages"] == placement
    assert info["config"]["stages"] == placement
    assert info["retriever"]["model"] == trained_models.tags["two-tower"]
    assert info["ranker"]["model"] == trained_models.tags["ranker"]
    assert served.get("/ready").status_code == 200
