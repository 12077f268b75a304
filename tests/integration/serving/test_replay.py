"""`recsys replay` against a real `bentoml serve` of the RecommendationService.

The served models were trained on all of the synthetic data, so its ratings cannot be replayed
(they would be duplicates, accepted but never logged). The held-out window is built instead from
the served service's own answers before the replay: for each of 20 users, its top-1 and top-2
movies and its 30th, at timestamps after the user's last rating, interleaved across users. With
the state frozen every answer is the one seen before, so the frozen figures are known exactly;
the applied pass is checked against the /recommend answers recorded during it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pandas as pd
import pytest

from models.train import TrainReport
from services.tooling.replay import load_rows, replay

pytestmark = [pytest.mark.integration, pytest.mark.slow]

USERS = 20
PICKED_RANKS = (1, 2, 30)  # the 30th movie cannot be in a top 10 of the frozen state


def _logged(http: httpx.Client) -> int:
    """Events in the served service's log, counted from its files."""
    log_dir = Path(http.get("/health").json()["events"]["log"])
    return sum(len(p.read_text().splitlines()) for p in log_dir.glob("events-*.jsonl"))


def _items(answer: dict) -> list[int]:
    return [int(r["item_id"]) for r in answer["recommendations"]]


def _held_out(http: httpx.Client, history: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Write a test.csv of movies the service ranks 1st, 2nd and 30th for the last 20 users."""
    last = history.groupby("user_id")["timestamp"].max()
    rows = []
    for user in [int(u) for u in history["user_id"].drop_duplicates().iloc[-USERS:]]:
        answer = http.post("/recommend", json={"user_id": user, "k": 50}).json()
        for n, rank in enumerate(PICKED_RANKS):
            # Row n of every user at the same offset: the sequence interleaves the users.
            ts = int(last[user]) + 60 * (n + 1)
            rows.append((user, _items(answer)[rank - 1], 4.0 + 0.5 * (n % 2), ts))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    frame.to_csv(path, index=False)
    return frame


def test_replay_frozen_then_applied_scores_the_answers_it_got(
    served_client: Callable[..., AbstractContextManager[httpx.Client]],
    trained_models: TrainReport,
    service_env: dict[str, str],
    history: pd.DataFrame,
    tmp_path: Path,
) -> None:
    with served_client(
        "services.recommendation:RecommendationService", trained_models.tags, service_env
    ) as http:
        test_csv = tmp_path / "test.csv"
        held_out = _held_out(http, history, test_csv)
        sequence = load_rows(test_csv)
        assert len(sequence.rows) == len(held_out)
        keys = [(r.timestamp, r.user_id, r.item_id) for r in sequence.rows]
        assert keys == sorted(keys)

        recorded: list[tuple[dict, dict]] = []  # (request body, answer) of every /recommend

        def record(response: httpx.Response) -> None:
            if response.request.url.path == "/recommend":
                response.read()
                recorded.append((json.loads(response.request.content), response.json()))

        http.event_hooks = {"response": [record]}
        logged = _logged(http)

        frozen = replay(http, sequence, k=10, modes=("frozen",)).passes["frozen"]
        assert _logged(http) == logged  # the frozen pass posts nothing
        assert frozen.events_posted == 0
        assert frozen.requests == frozen.rows == len(held_out)
        assert frozen.users == USERS
        # Frozen: every answer is the one the picks came from, so ranks 1, 2 hit and 30 misses.
        assert frozen.hits == 2 * USERS
        assert frozen.hit_rate == pytest.approx(2 / 3)
        assert frozen.ndcg == pytest.approx((1 + 1 / math.log2(3)) / 3)
        assert frozen.cold_start_answers == 0

        recorded.clear()
        applied = replay(http, sequence, k=10, modes=("applied",)).passes["applied"]
        assert _logged(http) == logged + len(held_out)  # every row posted, each logged once
        assert applied.events_posted == len(held_out)
        assert applied.requests == 2 * len(held_out)

    # The applied figures are those of the answers the service gave during the pass.
    assert [body["user_id"] for body, _ in recorded] == [r.user_id for r in sequence.rows]
    ranks = [
        _items(answer).index(row.item_id) + 1 if row.item_id in _items(answer) else None
        for row, (_, answer) in zip(sequence.rows, recorded, strict=True)
    ]
    assert applied.hits == sum(rank is not None for rank in ranks)
    assert applied.ndcg == pytest.approx(
        sum(1 / math.log2(rank + 1) for rank in ranks if rank is not None) / len(ranks)
    )
    assert 0.0 <= applied.hit_rate <= 1.0
    assert 0.0 <= applied.ndcg <= 1.0
    assert applied.repeats == 0  # an event's movie never comes back for its user
