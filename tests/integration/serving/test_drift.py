"""Drift monitoring through the served API (issue 7): generated traffic, monitor and Evidently.

The session's service has a 60-request window folded in blocks of 10 (see conftest). Other tests
share the service, so each kind of traffic is sent WINDOW + BLOCK times: the block that still
holds earlier requests has then left the window.
"""

from __future__ import annotations

import os
import time

import pandas as pd
import pytest
from starlette.testclient import TestClient

pytestmark = [pytest.mark.integration, pytest.mark.slow]

WINDOW = 60  # RECSYS_DRIFT__WINDOW in conftest.DRIFT_ENV
BLOCK = 10  # RECSYS_DRIFT__BLOCK_REQUESTS there
SENT = WINDOW + BLOCK  # enough to push every earlier request out of the window
USER_FEATURES = ("user_count", "user_mean_rating", "user_days_active")


def _send(client: TestClient, user_ids: list[int]) -> None:
    for user_id in user_ids:
        response = client.post("/recommend", json={"user_id": int(user_id), "k": 10})
        assert response.status_code == 200


def _wait_for_report(client: TestClient, timeout_s: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        report = client.get("/drift/report")
        if report.status_code == 200:
            return report.json()
        time.sleep(0.5)
    raise AssertionError(f"no drift report within {timeout_s} s: {report.text}")


def _drifted(status: dict) -> set[str]:
    return {name for name, f in status["features"].items() if f["status"] == "drift"}


def test_training_like_then_cold_start_traffic(client: TestClient, history: pd.DataFrame) -> None:
    known = history["user_id"].drop_duplicates().sample(SENT, random_state=0).tolist()
    _send(client, known)
    status = client.get("/drift/status").json()
    assert status["window"]["requests"] >= WINDOW // 2
    assert status["status"] != "insufficient_data"
    psi = {name: round(status["features"][name]["psi"], 3) for name in USER_FEATURES}
    assert not _drifted(status) & set(USER_FEATURES), (status["drifted"], psi)
    # evidence in requests: the user's features once per request, candidate features per row
    window = status["window"]
    assert status["features"]["user_count"]["scope"] == "request"
    assert status["features"]["user_count"]["observations"] == window["requests"]
    assert status["features"]["retrieval_rank"]["scope"] == "candidate"
    assert status["features"]["retrieval_rank"]["observations"] == window["rows_monitored"]
    assert window["rows_monitored"] > window["requests"]

    report = client.get("/drift/report")
    assert report.status_code == 404  # nothing run yet: says so instead of failing
    assert "no drift report yet" in report.json()["error"]

    cold = list(range(9_000_000, 9_000_000 + SENT))
    _send(client, cold)
    status = client.get("/drift/status").json()
    assert "user_count" in _drifted(status)
    assert status["status"] == "drift"

    check = client.post("/drift/check")
    assert check.status_code in (200, 202), check.text
    latest = _wait_for_report(client)
    assert "user_count" in latest["drifted"]
    assert latest["status"] == "drift"
    assert latest["current_requests"] >= 2 * SENT  # every request of this test was logged
    observed = {c["column"]: c["observations"] for c in latest["columns"]}
    assert observed["user_count"] == latest["current_requests"]
    assert observed["retrieval_rank"] == latest["current_rows"]
    if check.status_code == 200:
        assert check.json()["drifted"] == latest["drifted"]
    html = client.get("/drift/report", params={"format": "html"})
    assert html.status_code == 200
    assert "<html" in html.text.lower()
    # the job ran in a process of its own, never on the serving interpreter
    assert latest["pid"] != os.getpid()
    kept = client.get("/drift/reports").json()["reports"]
    assert kept[0]["status"] == "drift"
    assert "user_count" in kept[0]["drifted"]
    assert kept[0]["current_requests"] == latest["current_requests"]
    from prometheus_client import REGISTRY  # in process, the service's metrics are this registry's

    deadline = time.monotonic() + 10  # the exporter publishes the new report within a tick
    labels = {"feature": "user_count", "source": "report"}
    while REGISTRY.get_sample_value("recsys_drift_status", labels) != 2:
        assert time.monotonic() < deadline, "the report's figures never reached /metrics"
        time.sleep(0.2)
    assert REGISTRY.get_sample_value("recsys_drift_report_timestamp_seconds") > 0


def test_drift_is_exported_as_time_series(client: TestClient, history: pd.DataFrame) -> None:
    from prometheus_client import REGISTRY  # in process, the service's metrics are this registry's

    def gauge(name: str, **labels: str) -> float | None:
        return REGISTRY.get_sample_value(name, labels)

    _send(client, list(range(9_100_000, 9_100_000 + SENT)))  # cold users: user_count drifts
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if gauge("recsys_drift_status", feature="user_count", source="monitor") == 2:
            break
        time.sleep(0.2)
    assert gauge("recsys_drift_status", feature="user_count", source="monitor") == 2  # drift
    psi = gauge("recsys_drift_psi", feature="user_count", source="monitor")
    assert psi is not None
    assert psi >= 0.25
    observations = gauge("recsys_drift_observations", feature="user_count", source="monitor")
    assert observations is not None
    assert observations >= WINDOW // 2  # one per request
    drifted = gauge("recsys_drift_drifted_features", source="monitor")
    assert drifted is not None
    assert drifted >= 1
    # predictions are monitored like features
    assert "ranker_score" in client.get("/drift/status").json()["features"]
