"""Incremental user rows and the embedded live state, against features computed from scratch.

The reference is `data.features.build_snapshot` over the raw ML-100K ratings with the events
included: a batch computation, written independently of the incremental fold.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.features import DAY, build_snapshot
from data.movielens import load_movielens
from feature_store.events import EventLog, EventLogReader, RatingEvent
from feature_store.live_users import LiveUsers, UserRowUpdater, known_events


@pytest.fixture(scope="module")
def ml100k_cut(ml100k_dir: Path) -> tuple[object, pd.DataFrame, pd.DataFrame]:
    """ML-100K, its ratings minus each of 40 users' last 5, and those held-out ratings."""
    dataset = load_movielens(ml100k_dir)
    ratings = dataset.interactions.sort_values(["user_id", "timestamp", "item_id"])
    users = np.sort(ratings["user_id"].unique())[::23][:40]
    tail = ratings[ratings["user_id"].isin(users)].groupby("user_id").tail(5)
    # one user gives every rating after the cut: absent from the period, known by demographics
    newcomer = int(users[0])
    tail = pd.concat([tail, ratings[ratings["user_id"] == newcomer]]).drop_duplicates()
    period = ratings.drop(tail.index)
    return dataset, period, tail


def _events(frame: pd.DataFrame) -> list[RatingEvent]:
    return [
        RatingEvent(int(u), int(i), float(r), int(t))
        for u, i, r, t in frame[["user_id", "item_id", "rating", "timestamp"]].itertuples(
            index=False
        )
    ]


def test_folded_rows_equal_features_computed_with_the_events(ml100k_cut) -> None:
    dataset, period, tail = ml100k_cut
    before = build_snapshot(dataset, period)
    after = build_snapshot(dataset, pd.concat([period, tail]))
    updater = UserRowUpdater.from_snapshot(before)
    columns = list(before.user_columns)
    since = columns.index("user_days_since_last")
    # `after` measures days from its own (later) end; the fold keeps the snapshot's end.
    shift = (after.metadata["period_end"] - before.metadata["period_end"]) / DAY
    for user, user_tail in tail.groupby("user_id"):
        base, _ = before.user_rows(np.array([user]))
        events = _events(user_tail.sample(frac=1.0, random_state=int(user)))  # any order
        folded = updater.fold(base[0], events)
        expected, found = after.user_rows(np.array([user]))
        assert found[0]
        expected = expected[0].copy()
        expected[since] -= shift
        np.testing.assert_allclose(folded, expected, rtol=2e-5, atol=2e-3, err_msg=str(user))


def test_one_event_at_a_time_equals_all_at_once(ml100k_cut) -> None:
    dataset, period, tail = ml100k_cut
    before = build_snapshot(dataset, period)
    updater = UserRowUpdater.from_snapshot(before)
    user = int(tail["user_id"].iloc[-1])
    events = _events(tail[tail["user_id"] == user])
    base = before.user_rows(np.array([user]))[0][0]
    stepwise = base
    for event in events:
        stepwise = updater.fold(stepwise, [event])
    np.testing.assert_allclose(stepwise, updater.fold(base, events), rtol=1e-5, atol=1e-3)


def test_an_unrated_event_keeps_the_mean_and_counts(ml100k_cut) -> None:
    dataset, period, tail = ml100k_cut
    before = build_snapshot(dataset, period)
    updater = UserRowUpdater.from_snapshot(before)
    user = int(tail["user_id"].iloc[-1])
    base = before.user_rows(np.array([user]))[0][0]
    item = int(tail["item_id"].iloc[-1])
    row = updater.fold(base, [RatingEvent(user, item, None, before.metadata["period_end"])])
    col = before.user_columns.index
    assert row[col("user_count")] == base[col("user_count")] + 1
    assert row[col("user_mean_rating")] == pytest.approx(base[col("user_mean_rating")])
    assert row[col("user_days_since_last")] == pytest.approx(0.0, abs=1e-6)


def test_live_users_follow_the_log_and_drop_duplicates(ml100k_cut, tmp_path: Path) -> None:
    dataset, period, tail = ml100k_cut
    before = build_snapshot(dataset, period)
    updater = UserRowUpdater.from_snapshot(before)
    log = EventLog(tmp_path, segment_bytes=200, max_segments=1000)  # rotates every few events
    live = LiveUsers(
        lambda u: before.user_rows(np.array([u]))[0][0],
        updater,
        known_events(before),
        EventLogReader(tmp_path),
    )
    events = _events(tail)
    already_known = _events(period.head(3))  # in the snapshot's history: dropped
    for start in range(0, len(events), 7):
        log.append(events[start : start + 7])
    log.append(already_known + events[:4])  # duplicates of applied events: dropped
    live.sync()
    assert len(list(tmp_path.glob("events-*.jsonl"))) > 3  # the reader crossed segments
    assert live.applied == len(events)
    user = int(tail["user_id"].iloc[0])
    expected_items = sorted(tail.loc[tail["user_id"] == user, "item_id"].tolist())
    assert sorted(e.item_id for e in live.events_of(user)) == expected_items
    stamps = [e.timestamp for e in live.events_of(user)]
    assert stamps == sorted(stamps)
    base = before.user_rows(np.array([user]))[0][0]
    np.testing.assert_allclose(
        live.row(user), updater.fold(base, live.events_of(user)), rtol=1e-5, atol=1e-3
    )
    assert live.row(10**9) is None
    assert live.events_of(10**9) == []
