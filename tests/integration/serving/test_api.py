"""The RecommendationService HTTP API (DESIGN.md): every route, bad input, cold start, seen items.

Runs the real service ASGI app (`to_asgi()`), with the retriever and ranker services composed in
process as BentoML does when no URLs are configured, over models trained in the session.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd
import pytest
from starlette.testclient import TestClient

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _post(client: TestClient, body: Any) -> Any:
    return client.post("/recommend", json=body)


def test_recommend_returns_ranked_titled_items(client: TestClient, history: pd.DataFrame) -> None:
    user_id = int(history["user_id"].iloc[0])
    response = _post(client, {"user_id": user_id, "k": 10})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["user_id"] == user_id
    assert body["cold_start"] is False
    recs = body["recommendations"]
    assert len(recs) == 10
    assert [r["rank"] for r in recs] == list(range(1, 11))
    assert all(r["title"] for r in recs)
    scores = [r["score"] for r in recs]
    assert scores == sorted(scores, reverse=True)
    assert len({r["item_id"] for r in recs}) == 10
    assert set(body["timings_ms"]) == {"retrieval", "features", "ranking", "total"}
    assert body["timings_ms"]["total"] > 0
    assert {"two_tower", "ranker", "feature_version"} <= set(body["model_version"])


def test_exclude_seen_never_returns_rated_movies(client: TestClient, history: pd.DataFrame) -> None:
    heavy = history["user_id"].value_counts().index[:5]
    for user_id in heavy:
        seen = set(history.loc[history["user_id"] == user_id, "item_id"])
        body = _post(client, {"user_id": int(user_id), "k": 100}).json()
        returned = {r["item_id"] for r in body["recommendations"]}
        assert returned, "a known user gets recommendations"
        assert not returned & seen


def test_exclude_seen_false_may_return_rated_movies(
    client: TestClient, history: pd.DataFrame
) -> None:
    user_id = int(history["user_id"].value_counts().index[0])
    seen = set(history.loc[history["user_id"] == user_id, "item_id"])
    body = _post(client, {"user_id": user_id, "k": 100, "exclude_seen": False}).json()
    assert {r["item_id"] for r in body["recommendations"]} & seen


def test_unknown_user_gets_cold_start_list(client: TestClient) -> None:
    response = _post(client, {"user_id": 10_000_000, "k": 5})
    assert response.status_code == 200
    body = response.json()
    assert body["cold_start"] is True
    assert len(body["recommendations"]) == 5


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"k": 10}, "user_id"),  # missing user_id
        ({"user_id": "635"}, "user_id"),  # user_id of the wrong type (string)
        ({"user_id": 6.5}, "user_id"),  # user_id of the wrong type (float)
        ({"user_id": 1, "k": 0}, "k"),  # k below 1
        ({"user_id": 1, "k": 101}, "k"),  # k above 100
        ({"user_id": 1, "k": "ten"}, "k"),  # k a string
        ({"user_id": 1, "exclude_seen": "no"}, "exclude_seen"),  # not a boolean
        ({"user_id": 1, "colour": "red"}, "colour"),  # unknown fields are rejected
        ({"user_id": 2**63}, "user_id"),  # beyond int64 (was a 500)
        ({"user_id": -(2**63) - 1}, "user_id"),
    ],
)
def test_bad_input_gets_400_naming_the_field(
    client: TestClient, body: dict[str, Any], field: str
) -> None:
    response = _post(client, body)
    assert response.status_code == 400
    assert field in response.text


@pytest.mark.parametrize(
    ("content", "status"),
    [
        (b"this is not json", 400),  # a body that is not JSON
        (b"", 400),  # an empty body
        (b"[1, 2, 3]", 400),  # JSON that is not an object
        (b'{"user_id": 1, "pad": "' + b"x" * 70_000 + b'"}', 413),  # a body over 64 KB
    ],
)
def test_malformed_bodies_get_4xx(client: TestClient, content: bytes, status: int) -> None:
    response = client.post(
        "/recommend", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == status


@pytest.mark.parametrize(
    "media",
    ["multipart/form-data", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded",
     "application/xml", "image/png"],
)  # fmt: skip
@pytest.mark.parametrize("route", ["/recommend", "/events"])
def test_bodies_that_are_not_json_get_415(client: TestClient, media: str, route: str) -> None:
    response = client.post(route, content=b'{"user_id": 1}', headers={"content-type": media})
    assert response.status_code == 415  # a multipart type without a boundary was a 500
    assert media.split(";")[0] in response.json()["error"]


@pytest.mark.parametrize(
    "media", [None, "application/json", "application/json; charset=utf-8", "text/plain"]
)
def test_json_like_bodies_are_read(client: TestClient, media: str | None) -> None:
    headers = {"content-type": media} if media else {}
    response = client.post("/recommend", content=b'{"user_id": 1, "k": 2}', headers=headers)
    assert response.status_code == 200
    assert len(response.json()["recommendations"]) == 2


def test_health_reports_feature_store(client: TestClient) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok"
    assert body["feature_store"]["mode"] == "parquet"


def test_ready_and_probes(client: TestClient) -> None:
    assert client.get("/ready").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert client.get("/livez").status_code == 200


def test_info_names_models_and_features(client: TestClient, trained_models: Any) -> None:
    body = client.get("/info").json()
    assert body["feature_snapshot"] == trained_models.tags["feature-snapshot"]
    assert body["dataset_fingerprint"] == trained_models.info["fingerprint"]
    assert body["retriever"]["model"] == trained_models.tags["two-tower"]
    assert body["ranker"]["model"] == trained_models.tags["ranker"]
    assert "password" not in body["config"]["redis"]


def test_drift_report_format_is_validated(client: TestClient) -> None:
    assert client.get("/drift/report", params={"format": "pdf"}).status_code == 400


def test_explain_shows_reasons_and_the_sources_behind_each_movie(
    client: TestClient, history: pd.DataFrame
) -> None:
    user = int(history["user_id"].iloc[0])
    body = client.post("/recommend", json={"user_id": user, "k": 10, "explain": True}).json()
    info = client.get("/info").json()["retriever"]
    in_force = set(info["sources"])
    assert in_force == {"two_tower", "item_knn", "content", "popular", "trending"}
    for rec in body["recommendations"]:
        assert rec["sources"]
        assert set(rec["sources"]) <= in_force
        assert len(rec["reasons"]) == 3
    plain = client.post("/recommend", json={"user_id": user, "k": 10}).json()
    assert [r["item_id"] for r in plain["recommendations"]] == [
        r["item_id"] for r in body["recommendations"]
    ]
    assert all(r["sources"] is None for r in plain["recommendations"])
    from prometheus_client import REGISTRY  # in process, the stages' metrics are this registry's

    proposed = REGISTRY.get_sample_value("recsys_candidates_total", {"source": "two_tower"})
    assert proposed is not None
    assert proposed >= 2 * 100  # two requests, 100 two-tower candidates each


def test_a_rejected_request_is_one_log_line_without_traceback(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="bentoml._internal.server.http_app"):
        assert _post(client, {"user_id": "x"}).status_code == 400
    records = [r for r in caplog.records if r.name == "bentoml._internal.server.http_app"]
    assert len(records) == 1
    assert records[0].levelname == "WARNING"
    assert records[0].exc_info is None
    assert "rejected POST /recommend" in records[0].getMessage()
    assert "user_id" in records[0].getMessage()


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/nope", 404), ("GET", "/recommend", 405), ("POST", "/health", 405),
     ("DELETE", "/events", 405), ("GET", "/drift/check", 405)],
)  # fmt: skip
def test_unknown_routes_and_methods_answer_the_error_model(
    client: TestClient, method: str, path: str, status: int
) -> None:
    response = client.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    assert path in response.json()["error"]
    if status == 405:
        assert response.headers["allow"]  # the methods the route takes


CONTRACT_CASES = [
    ("POST", "/recommend", {"json": {"user_id": 1, "k": 3}}),
    ("POST", "/recommend", {"json": {"user_id": 1, "k": 3, "explain": True}}),
    ("POST", "/recommend", {"json": {"user_id": "x"}}),
    ("POST", "/recommend", {"json": {"user_id": 2**64}}),
    ("POST", "/recommend", {"content": b"[" * 10, "headers": {"content-type": "application/json"}}),
    ("POST", "/recommend", {"content": b"x" * 70_000}),
    ("POST", "/recommend", {"content": b"x", "headers": {"content-type": "multipart/form-data"}}),
    ("GET", "/recommend", {}),
    ("POST", "/events", {"json": {"events": [{"user_id": 1, "item_id": 1, "rating": 9}]}}),
    ("POST", "/events", {"json": {"events": []}}),
    ("GET", "/health", {}),
    ("GET", "/ready", {}),
    ("GET", "/info", {}),
    ("GET", "/drift/status", {}),
    ("GET", "/drift/report", {"params": {"format": "xml"}}),
    ("GET", "/drift/report", {}),
    ("POST", "/health", {}),
]


def test_every_answer_is_declared_in_the_openapi_document(client: TestClient) -> None:
    """Each route's answers (good and bad input) have a declared status whose schema they
    match; every route served is in the document, with the one error model."""
    import jsonschema

    spec = client.get("/docs.json").json()
    assert {"/recommend", "/events", "/health", "/ready", "/info", "/drift/status",
            "/drift/check", "/drift/report"} <= set(spec["paths"])  # fmt: skip
    for method, path, kwargs in CONTRACT_CASES:
        response = client.request(method, path, **kwargs)
        operations = spec["paths"][path]
        declared_method = method.lower() if method.lower() in operations else next(iter(operations))
        declared = operations[declared_method]["responses"]
        status = str(response.status_code)
        assert status in declared, f"{method} {path} answered undeclared {status}"
        media = response.headers["content-type"].split(";")[0]
        if media != "application/json":
            assert media in declared[status]["content"], (method, path, media)
            continue
        schema = declared[status]["content"]["application/json"]["schema"]
        document = {"components": spec["components"], **schema}
        jsonschema.validate(response.json(), document)
        if response.status_code >= 400:
            assert isinstance(response.json()["error"], str)
