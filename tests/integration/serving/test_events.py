"""POST /events on the composed service (stages in process, the embedded store + event log).

Expected "already rated" sets come from the ratings file the service was trained on plus what the
test itself posted. Users are taken from the end of the file so that tests comparing answers of
the first users with another backend are not affected.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from starlette.testclient import TestClient

pytestmark = pytest.mark.integration


def _recommend(client: TestClient, user_id: int, k: int = 10) -> dict:
    response = client.post("/recommend", json={"user_id": user_id, "k": k})
    assert response.status_code == 200, response.text
    return response.json()


def _items(answer: dict) -> list[int]:
    return [r["item_id"] for r in answer["recommendations"]]


def _logged(client: TestClient) -> int:
    """Events in the service's log, counted from its files."""
    log_dir = Path(client.get("/health").json()["events"]["log"])
    return sum(len(p.read_text().splitlines()) for p in log_dir.glob("events-*.jsonl"))


@pytest.fixture(scope="module")
def catalog_ids(synth_dir: Path) -> list[int]:
    """Movie ids of the served catalog, from movies.dat."""
    lines = (synth_dir / "movies.dat").read_text(encoding="latin-1").splitlines()
    return [int(line.split("::")[0]) for line in lines if line]


def test_a_rated_movie_is_gone_from_the_very_next_answer(
    client: TestClient, history: pd.DataFrame
) -> None:
    users = [int(u) for u in history["user_id"].drop_duplicates().iloc[-25:]]
    rated = history.groupby("user_id")["item_id"].agg(set).to_dict()
    before = _logged(client)
    trials = 0
    for user in users:
        for _ in range(2):
            top = _items(_recommend(client, user))
            assert not set(top) & rated[user]
            response = client.post(
                "/events", json={"events": [{"user_id": user, "item_id": top[0], "rating": 4.5}]}
            )
            assert response.status_code == 200, response.text
            assert response.json() == {"accepted": 1}
            rated[user].add(top[0])
            assert top[0] not in _items(_recommend(client, user))
            trials += 1
    assert _logged(client) == before + trials


def test_a_new_user_turns_known_with_a_history(client: TestClient, catalog_ids: list[int]) -> None:
    user = 70_000_123
    cold = _recommend(client, user)
    assert cold["cold_start"] is True
    picked = catalog_ids[3:8]
    events = [
        {"user_id": user, "item_id": item, "rating": 5, "timestamp": 1_000_000_000 + n}
        for n, item in enumerate(picked)
    ]
    assert client.post("/events", json={"events": events}).json() == {"accepted": 5}
    warm = _recommend(client, user, k=50)
    assert warm["cold_start"] is False
    assert not set(_items(warm)) & set(picked)
    assert _items(warm) != _items(_recommend(client, 70_000_124, k=50))  # no longer the fallback


def test_reposting_an_event_is_accepted_and_applied_once(
    client: TestClient, catalog_ids: list[int]
) -> None:
    event = {"user_id": 70_000_200, "item_id": catalog_ids[0], "rating": 3, "timestamp": 1234}
    before = _logged(client)
    for _ in range(3):
        assert client.post("/events", json={"events": [event]}).json() == {"accepted": 1}
    assert _logged(client) == before + 1


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"user_id": 1, "item_id": 10**9}, "item_id"),  # not in the catalog
        ({"user_id": 1, "item_id": "ITEM", "rating": 7}, "rating"),
        ({"user_id": 1, "item_id": "ITEM", "rating": 0}, "rating"),
        ({"user_id": "12", "item_id": "ITEM"}, "user_id"),  # a string is not an id
        ({"user_id": 1.5, "item_id": "ITEM"}, "user_id"),
        ({"user_id": 2**64, "item_id": "ITEM"}, "user_id"),  # beyond int64
        ({"item_id": "ITEM"}, "user_id"),  # missing
        ({"user_id": 1, "item_id": "ITEM", "stars": 4}, "stars"),  # unknown field
        ({"user_id": 1, "item_id": "ITEM", "timestamp": 2**38}, "timestamp"),  # year 10680
    ],
)
def test_a_bad_event_rejects_the_whole_call_naming_it(
    client: TestClient, catalog_ids: list[int], bad: dict, field: str
) -> None:
    bad = {k: catalog_ids[1] if v == "ITEM" else v for k, v in bad.items()}
    good = {"user_id": 70_000_300, "item_id": catalog_ids[2], "rating": 4}
    before = _logged(client)
    response = client.post("/events", json={"events": [good, good, bad, good]})
    assert response.status_code == 400, response.text
    assert [e["loc"] for e in response.json()["detail"]] == [["events", 2, field]]
    assert _logged(client) == before  # the good events of the call are not applied either


@pytest.mark.parametrize("events", [[], [{"user_id": 1, "item_id": 1}] * 1001])
def test_zero_or_more_than_a_thousand_events_are_rejected(
    client: TestClient, events: list[dict]
) -> None:
    before = _logged(client)
    response = client.post("/events", json={"events": events})
    assert response.status_code == 400, response.text
    assert response.json()["detail"][0]["loc"] == ["events"]
    assert _logged(client) == before


def test_malformed_bodies_are_4xx(client: TestClient) -> None:
    for raw in (b"not json", b"", b"[1, 2]", b'{"events": {"user_id": 1}}', b'{"event": []}'):
        response = client.post("/events", content=raw, headers={"content-type": "application/json"})
        assert 400 <= response.status_code < 500, (raw, response.status_code, response.text)


def test_events_is_in_the_openapi_document(client: TestClient) -> None:
    document = client.get("/docs.json").json()
    operation = document["paths"]["/events"]["post"]
    schema = json.dumps(operation["requestBody"])
    assert "events" in schema or "$ref" in schema
    assert "200" in operation["responses"]
