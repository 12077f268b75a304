"""The RecommendationService under a real `bentoml serve`: stages in their own processes.

This is the path `make serve` runs: BentoML starts the retriever and ranker as dependency
processes and the recommendation service reaches them over their sockets. The in-process API
tests (test_api.py) cover the request/response contract; these cover what only the real server
shows: Prometheus metrics, health and info across the processes.
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


@pytest.fixture(scope="module")
def served(
    served_client: Callable[..., AbstractContextManager[httpx.Client]],
    trained_models: TrainReport,
    service_env: dict[str, str],
) -> Iterator[httpx.Client]:
    """The composed service, pinned to the session's models."""
    with served_client(
        "services.recommendation:RecommendationService", trained_models.tags, service_env
    ) as client:
        yield client


def _metric(text: str, name: str, labels: str = "") -> float:
    """Sum of a metric's samples whose label set contains `labels`."""
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})? (\S+)$", re.MULTILINE)
    return sum(float(v) for lbl, v in pattern.findall(text) if labels in (lbl or ""))


def test_recommend_across_processes(served: httpx.Client, history: pd.DataFrame) -> None:
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


def test_health_and_info_across_processes(
    served: httpx.Client, trained_models: TrainReport
) -> None:
    health = served.get("/health").json()
    assert "pending_redis" not in health.pop("events")  # parquet mode: the log is the state
    assert health == {
        "status": "ok",
        "feature_store": {"mode": "parquet", "backend": "memory", "circuit": "disabled"},
    }
    info = served.get("/info").json()
    assert info["retriever"]["model"] == trained_models.tags["two-tower"]
    assert info["ranker"]["model"] == trained_models.tags["ranker"]
    assert served.get("/ready").status_code == 200
