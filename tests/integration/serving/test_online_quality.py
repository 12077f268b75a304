"""Issue 19, online quality from events: the served service scores the events it receives against
what it recommended, and agrees with `recsys replay` on ML-100K.

The models are trained on the train/ side of `recsys data split` of ML-100K; the first held-out
ratings in time order are replayed (applied pass: /recommend, then the rating as an event)
against a real `bentoml serve`. The service's own HitRate@10 and MRR@10 over the pass (GET /info)
must match the replay's within 0.005 (the issue's target), and /metrics' counters must hold the
same counts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

import httpx
import pytest

from data.split_files import SplitFiles
from models.train import TrainReport
from services.auth import key_lines, new_key
from services.tooling.replay import ReplayError, ReplaySequence, load_rows, replay

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROWS = 300
TARGET = 0.005
SERVICE = "services.recommendation:RecommendationService"
COLD_USER = 1_000_000_000


def _counter(text: str, name: str, **labels: str) -> float:
    """Sum of a counter's samples on /metrics whose labels include `labels`."""
    pattern = re.compile(rf"^{re.escape(name)}\{{([^}}]*)\}} (\S+)$", re.MULTILINE)
    wanted = [f'{key}="{value}"' for key, value in labels.items()]
    return sum(float(v) for lbl, v in pattern.findall(text) if all(w in lbl for w in wanted))


def _grew(before: str, after: str, name: str, **labels: str) -> float:
    return _counter(after, name, **labels) - _counter(before, name, **labels)


def test_online_figures_match_the_replay_on_ml100k(
    served_client: Callable[..., AbstractContextManager[httpx.Client]],
    ml100k_split: SplitFiles,
    ml100k_split_models: TrainReport,
) -> None:
    sequence = load_rows(ml100k_split.test_file, limit=ROWS)
    ranker = ml100k_split_models.tags["ranker"]
    with served_client(SERVICE, ml100k_split_models.tags) as http:
        before = http.get("/metrics").text
        report = replay(http, sequence, k=10, modes=("applied",))
        after = http.get("/metrics").text
        online_info = http.get("/info").json()["online_quality"]

        # A cold user: answered, then rates its third movie; a user never answered: no match.
        answer = http.post("/recommend", json={"user_id": COLD_USER, "k": 10}).json()
        assert answer["cold_start"] is True
        third = answer["recommendations"][2]["item_id"]
        events = [{"user_id": COLD_USER, "item_id": third}, {"user_id": 7_777_777, "item_id": 1}]
        assert http.post("/events", json={"events": events}).json() == {"accepted": 2}
        segments = http.get("/info").json()["online_quality"]["since_start"]["by_segment"]
        cold_metrics = http.get("/metrics").text

    applied, online = report.passes["applied"], report.online
    assert online is not None
    assert online.note is None
    assert applied.events_posted == applied.rows == ROWS
    assert applied.hits > 0  # a figure worth comparing
    # Every event follows its user's /recommend: each one is matched, and scored alike.
    assert online.events == ROWS
    assert online.hit_rate["10"] is not None
    assert online.mrr is not None
    assert abs(online.hit_rate["10"] - applied.hit_rate) <= TARGET
    assert abs(online.mrr - applied.mrr) <= TARGET
    assert online.hits["10"] == applied.hits
    assert online.hits == applied.hits_at
    assert online.mrr == pytest.approx(applied.mrr)

    # Prometheus: the same counts, all for warm users and the served ranker.
    name = "recsys_online_"
    assert _grew(before, after, f"{name}events_total") == ROWS
    assert _grew(before, after, f"{name}events_total", segment="warm", model=ranker) == ROWS
    for k in ("1", "5", "10"):
        assert _grew(before, after, f"{name}hits_total", k=k) == applied.hits_at[k]
    rr = _grew(before, after, f"{name}reciprocal_rank_total")
    assert rr / ROWS == pytest.approx(applied.mrr)

    # /info: the window (it holds every matched event so far) says the same, per segment too.
    window = online_info["window"]
    assert window["overall"]["events"] == ROWS
    assert window["overall"]["hit_rate"]["10"] == pytest.approx(applied.hit_rate)
    assert window["by_segment"]["warm"]["mrr"] == pytest.approx(applied.mrr)
    assert window["by_model"][ranker]["events"] == ROWS
    assert online_info["remembered_users"] == applied.users

    cold = segments["cold"]
    assert (cold["events"], cold["hits"], cold["mrr"]) == (1, {"1": 0, "5": 1, "10": 1}, 1 / 3)
    assert _counter(cold_metrics, f"{name}events_total") == ROWS + 1
    assert _counter(cold_metrics, f"{name}hits_total", segment="cold", k="5") == 1


def test_replay_sends_its_key_and_reads_online_figures_with_admin(
    served_client: Callable[..., AbstractContextManager[httpx.Client]],
    ml100k_split: SplitFiles,
    ml100k_split_models: TrainReport,
    tmp_path: Path,
) -> None:
    user_key, admin_key = new_key(), new_key()
    keys_file = tmp_path / "api-keys"
    lines = key_lines(user_key, ["recommend", "events"])
    lines += key_lines(admin_key, ["recommend", "events", "admin"])
    keys_file.write_text("\n".join(lines) + "\n")
    env = {"RECSYS_AUTH__ENABLED": "true", "RECSYS_AUTH__KEYS_FILE": str(keys_file)}
    rows = load_rows(ml100k_split.test_file, limit=40).rows
    first, second = (ReplaySequence("test.csv", "a part", part) for part in (rows[:20], rows[20:]))
    with served_client(SERVICE, ml100k_split_models.tags, env) as http:
        with pytest.raises(ReplayError, match="--api-key"):
            replay(http, first, modes=("applied",))  # no key: 401, said how to fix it

        without_admin = replay(http, first, modes=("applied",), api_key=user_key)
        assert without_admin.passes["applied"].events_posted == 20
        assert without_admin.online is not None
        assert without_admin.online.note is not None
        assert "admin" in without_admin.online.note

        report = replay(http, second, modes=("applied",), api_key=admin_key)
    applied, online = report.passes["applied"], report.online
    assert online is not None
    assert online.note is None
    assert online.events == applied.rows == 20
    assert online.hits == applied.hits_at
    assert online.mrr == pytest.approx(applied.mrr)
    table = report.online_table()
    assert table is not None
    assert [row[0] for row in table[1]] == ["events", "HitRate@1", "HitRate@5", "HitRate@10",
                                            "MRR@10"]  # fmt: skip
