"""Online quality from events (issue 19): what the service remembers and how events score."""

from __future__ import annotations

import itertools

import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError

from services.online_quality import (
    MAX_RANK,
    OnlineQuality,
    OnlineQualitySettings,
    model_label,
)
from services.tooling.replay_online import online_delta

TOP10 = tuple(range(101, 111))  # movie 101 at rank 1 ... movie 110 at rank 10
_labels = (f"model-{n}" for n in itertools.count())  # each test its own counter series


class Clock:
    """A hand-moved monotonic clock."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_settings_defaults_are_frozen() -> None:
    settings = OnlineQualitySettings()
    assert settings.model_dump() == {
        "horizon_s": 3600,
        "max_users": 100_000,
        "window_events": 10_000,
    }
    with pytest.raises(ValidationError):
        settings.horizon_s = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "bad",
    [
        {"horizon_s": 0},  # nothing could ever match
        {"max_users": 0},  # nothing remembered
        {"window_events": 0},  # an empty window
    ],
)
def test_settings_reject_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        OnlineQualitySettings(**bad)  # type: ignore[arg-type]


def test_ranks_hits_and_mrr_match_a_hand_computed_answer() -> None:
    model = next(_labels)
    online = OnlineQuality()
    online.remember(1, TOP10, cold_start=False, model=model)
    # ranks 1, 5, 10, a miss; user 2 was never answered: not an opportunity.
    matched = online.observe([(1, 101), (1, 105), (1, 110), (1, 999), (2, 101)])
    assert matched == 4
    overall = online.figures()["since_start"]["overall"]
    assert overall["events"] == 4
    assert overall["hits"] == {"1": 1, "5": 2, "10": 3}
    assert overall["hit_rate"] == {"1": 0.25, "5": 0.5, "10": 0.75}
    assert overall["reciprocal_rank_sum"] == pytest.approx(1 + 1 / 5 + 1 / 10)
    assert overall["mrr"] == pytest.approx(1.3 / 4)
    # The Prometheus counters hold the same counts.
    assert _sample("recsys_online_events_total", segment="warm", model=model) == 4
    for k, hits in (("1", 1), ("5", 2), ("10", 3)):
        assert _sample("recsys_online_hits_total", segment="warm", model=model, k=k) == hits
    rr = _sample("recsys_online_reciprocal_rank_total", segment="warm", model=model)
    assert rr == pytest.approx(1.3)


def test_only_the_top_ten_are_remembered() -> None:
    online = OnlineQuality()
    online.remember(1, tuple(range(201, 221)), cold_start=False, model=next(_labels))
    online.observe([(1, 215), (1, 210)])  # rank 15: an opportunity, no hit; rank 10: a hit
    overall = online.figures()["since_start"]["overall"]
    assert (overall["events"], overall["hits"]["10"]) == (2, 1)
    assert overall["mrr"] == pytest.approx(0.1 / 2)
    assert MAX_RANK == 10


def test_the_latest_answer_is_the_one_scored() -> None:
    online = OnlineQuality()
    model = next(_labels)
    online.remember(1, TOP10, cold_start=False, model=model)
    online.remember(1, (110, 101), cold_start=False, model=model)
    online.observe([(1, 101)])
    assert online.figures()["since_start"]["overall"]["mrr"] == pytest.approx(0.5)


def test_memory_is_bounded_least_recently_answered_first() -> None:
    online = OnlineQuality(OnlineQualitySettings(max_users=3))
    model = next(_labels)
    for user in (1, 2, 3):
        online.remember(user, TOP10, cold_start=False, model=model)
    online.remember(1, TOP10, cold_start=False, model=model)  # 1 answered again: 2 is oldest
    online.remember(4, TOP10, cold_start=False, model=model)
    assert len(online) == 3
    assert online.observe([(2, 101)]) == 0  # evicted
    assert online.observe([(1, 101), (3, 101), (4, 101)]) == 3


def test_answers_older_than_the_horizon_are_ignored_and_dropped() -> None:
    clock = Clock()
    online = OnlineQuality(OnlineQualitySettings(horizon_s=10), clock=clock)
    model = next(_labels)
    online.remember(1, TOP10, cold_start=False, model=model)
    clock.now += 5
    online.remember(2, TOP10, cold_start=False, model=model)
    clock.now += 5  # user 1's answer is exactly 10 s old: still counts
    assert online.observe([(1, 101)]) == 1
    clock.now += 0.5  # 10.5 s: ignored, and forgotten
    assert online.observe([(1, 101)]) == 0
    assert len(online) == 1
    clock.now += 5  # user 2's answer is 10.5 s old; a new answer sweeps it out
    online.remember(3, TOP10, cold_start=False, model=model)
    assert len(online) == 1
    assert online.observe([(2, 101), (3, 102)]) == 1


def test_cold_and_warm_users_and_models_are_split() -> None:
    old, new = next(_labels), next(_labels)
    online = OnlineQuality()
    online.remember(1, TOP10, cold_start=True, model=old)
    online.remember(2, TOP10, cold_start=False, model=old)
    online.remember(3, TOP10, cold_start=False, model=new)
    online.observe([(1, 102), (2, 999), (3, 101), (3, 103)])
    since = online.figures()["since_start"]
    cold, warm = since["by_segment"]["cold"], since["by_segment"]["warm"]
    assert (cold["events"], cold["hits"]["1"], cold["mrr"]) == (1, 0, 0.5)
    assert (warm["events"], warm["hits"]["10"]) == (3, 2)
    assert warm["mrr"] == pytest.approx((1 + 1 / 3) / 3)
    assert since["by_model"][old]["events"] == 2
    assert since["by_model"][new]["hit_rate"]["1"] == 0.5
    assert _sample("recsys_online_events_total", segment="cold", model=old) == 1
    assert _sample("recsys_online_hits_total", segment="cold", model=old, k="1") == 0
    assert _sample("recsys_online_hits_total", segment="cold", model=old, k="5") == 1


def test_the_window_keeps_the_last_matched_events() -> None:
    online = OnlineQuality(OnlineQualitySettings(window_events=3))
    online.remember(1, TOP10, cold_start=False, model=next(_labels))
    online.observe([(1, 101), (1, 101), (1, 999), (1, 999), (1, 102)])  # 1, 1, miss, miss, 2
    figures = online.figures()
    window = figures["window"]["overall"]
    assert (window["events"], window["hits"]["10"], window["mrr"]) == (3, 1, pytest.approx(0.5 / 3))
    assert figures["since_start"]["overall"]["events"] == 5
    assert figures["remembered_users"] == 1


def test_no_events_no_rates() -> None:
    overall = OnlineQuality().figures()["window"]["overall"]
    assert overall["events"] == 0
    assert overall["hit_rate"] == {"1": None, "5": None, "10": None}
    assert overall["mrr"] is None


@pytest.mark.parametrize(
    ("model_version", "label"),
    [
        ({"two_tower": "two-tower:a", "ranker": "ranker:b"}, "ranker:b"),  # a full answer
        ({"two_tower": "two-tower:a"}, "two-tower:a"),  # degraded: retrieval order
        ({}, "popular"),  # degraded: the popularity fallback
    ],
)
def test_model_label(model_version: dict[str, str], label: str) -> None:
    assert model_label(model_version) == label


def test_replay_reads_the_service_counts_as_a_difference() -> None:
    online = OnlineQuality()
    online.remember(1, TOP10, cold_start=False, model=next(_labels))
    online.observe([(1, 101), (1, 999)])
    before = online.figures()["since_start"]["overall"]
    online.observe([(1, 102), (1, 999), (1, 999), (1, 110)])  # ranks 2, -, -, 10
    after = online.figures()["since_start"]["overall"]
    delta = online_delta(before, after)
    assert delta.events == 4
    assert delta.hits == {"1": 0, "5": 1, "10": 2}
    assert delta.hit_rate["10"] == 0.5
    assert delta.mrr == pytest.approx((1 / 2 + 1 / 10) / 4)
    missing = online_delta("GET /info answered 403", after)
    assert (missing.events, missing.mrr, missing.note) == (0, None, "GET /info answered 403")
