"""Retriever behaviour: exclusions, cold start, batch = single, histories move the query."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from data.split import Split
from models.retriever import Retriever

pytestmark = pytest.mark.slow  # every test here needs the trained retriever fixture


def _seen(split: Split, user_id: int) -> set[int]:
    train = split.train
    return set(train.loc[train["user_id"] == user_id, "item_id"].tolist())


def test_seen_items_are_excluded(retriever: Retriever, synth_split: Split) -> None:
    for user_id in synth_split.test["user_id"].unique()[:20]:
        result = retriever.retrieve(int(user_id), k=50)
        assert len(result.item_ids) == 50
        assert not result.cold_start
        assert not set(result.item_ids.tolist()) & _seen(synth_split, int(user_id))
        assert np.all(np.diff(result.scores) <= 1e-6)  # best first


def test_exclude_seen_false_keeps_seen_items(retriever: Retriever, synth_split: Split) -> None:
    user_id = int(synth_split.train["user_id"].value_counts().index[0])  # heaviest user
    result = retriever.retrieve(user_id, k=len(retriever.item_ids), exclude_seen=False)
    assert set(result.item_ids.tolist()) >= _seen(synth_split, user_id)


def test_exclude_item_ids_respected(retriever: Retriever) -> None:
    user_id = 1
    first = retriever.retrieve(user_id, k=10)
    banned = [int(i) for i in first.item_ids[:5]] + [999_999]  # an id not in the catalog too
    second = retriever.retrieve(user_id, k=10, exclude_item_ids=banned)
    assert len(second.item_ids) == 10
    assert not set(second.item_ids.tolist()) & set(banned)
    assert second.item_ids[:5].tolist() == first.item_ids[5:].tolist()


@pytest.mark.parametrize(
    "demographics",
    [
        None,  # nothing known: popularity query
        {"gender": "F", "age_bucket": "25", "occupation": "writer", "zip_code": "94110"},
        {"gender": "M"},  # partial demographics
        {"gender": "nonsense", "zip_code": "unknown"},  # unknown values: popularity query
    ],
)
def test_unknown_user_gets_cold_start_results(
    retriever: Retriever, demographics: dict[str, str] | None
) -> None:
    result = retriever.retrieve(10_000_000, k=20, demographics=demographics)
    assert result.cold_start
    assert len(result.item_ids) == 20
    assert len(set(result.item_ids.tolist())) == 20
    assert result.scores.dtype == np.float32


def test_cold_start_without_demographics_favours_popular_items(retriever: Retriever) -> None:
    result = retriever.retrieve(10_000_000, k=20)
    popularity = retriever.parts.popularity
    rows = np.searchsorted(retriever.item_ids, result.item_ids)
    assert popularity[rows].mean() > 2 * popularity.mean()


def test_batch_recommend_matches_single_retrieve(retriever: Retriever, synth_split: Split) -> None:
    users = np.array([*synth_split.test["user_id"].unique()[:10], 10_000_000], dtype=np.int64)
    items, scores = retriever.recommend(users, 30)
    assert items.shape == scores.shape == (len(users), 30)
    for row, user_id in enumerate(users):
        single = retriever.retrieve(int(user_id), k=30)
        assert items[row].tolist() == single.item_ids.tolist()
        np.testing.assert_allclose(scores[row], single.scores, rtol=1e-4, atol=1e-5)


def test_new_ratings_move_the_query(retriever: Retriever, synth_split: Split) -> None:
    user_id = 1
    before = retriever.retrieve(user_id, k=20)
    # The user suddenly rates ten items that are far from their current candidates.
    far = retriever.retrieve(user_id, k=len(retriever.item_ids)).item_ids[-10:]
    last = int(synth_split.train["timestamp"].max())
    extra = pd.DataFrame(
        {"user_id": user_id, "item_id": far, "rating": 5.0, "timestamp": last + np.arange(1, 11)}
    )
    moved = retriever.with_history(pd.concat([synth_split.train, extra], ignore_index=True))
    after = moved.retrieve(user_id, k=20)
    assert not set(after.item_ids.tolist()) & set(far.tolist())  # now seen
    assert len(set(after.item_ids.tolist()) & set(before.item_ids.tolist())) < 20


def test_new_user_with_history_is_not_cold(retriever: Retriever, synth_split: Split) -> None:
    items = synth_split.train["item_id"].unique()[:5]
    history = pd.DataFrame({"user_id": 5_000_000, "item_id": items, "timestamp": np.arange(5)})
    served = retriever.with_history(pd.concat([synth_split.train, history], ignore_index=True))
    result = served.retrieve(5_000_000, k=10)
    assert not result.cold_start
    assert not set(result.item_ids.tolist()) & set(items.tolist())


def test_cold_item_recall_counts_only_items_unseen_in_training(
    retriever: Retriever, synth_split: Split
) -> None:
    from models.train_retrieval import cold_item_recall

    # Pretend the test window's first items were never rated in training.
    hidden = set(synth_split.test["item_id"].unique()[:5].tolist())
    known = synth_split.train[~synth_split.train["item_id"].isin(hidden)]
    recall, pairs = cold_item_recall(retriever, known, synth_split.test)
    cold = synth_split.test[synth_split.test["item_id"].isin(hidden)]
    assert pairs == len(cold)
    # Reference: the single-user serving path, asked pair by pair.
    found = sum(
        int(item) in set(retriever.retrieve(int(user), 100).item_ids.tolist())
        for user, item in zip(cold["user_id"], cold["item_id"], strict=True)
    )
    assert recall == pytest.approx(found / pairs)
    assert cold_item_recall(retriever, synth_split.test, synth_split.test) == (0.0, 0)


def test_live_events_answer_as_a_history_rebuilt_with_them(
    retriever: Retriever, synth_split: Split
) -> None:
    """`retrieve(live=events)` equals a retriever whose served history holds the events."""
    from feature_store.events import RatingEvent

    test = synth_split.test.sort_values(["user_id", "timestamp", "item_id"])
    users = [*test["user_id"].drop_duplicates().iloc[:12].tolist(), 99_000_001]
    new_rows = []
    for n, user in enumerate(users):
        rows = test[test["user_id"] == user].head(3)
        if rows.empty:  # the new user: three movies of someone else's test window
            rows = test.head(3).assign(user_id=user)
        new_rows.append(rows.assign(timestamp=rows["timestamp"] + n))
    events_frame = pd.concat(new_rows)
    rebuilt = retriever.with_history(pd.concat([synth_split.train, events_frame]))
    for user in users:
        mine = events_frame[events_frame["user_id"] == user]
        live = [
            RatingEvent(int(u), int(i), float(r), int(t))
            for u, i, r, t in mine[["user_id", "item_id", "rating", "timestamp"]].itertuples(
                index=False
            )
        ]
        got = retriever.retrieve(int(user), 50, live=live)
        expected = rebuilt.retrieve(int(user), 50)
        assert not got.cold_start
        assert not set(got.item_ids.tolist()) & set(mine["item_id"].tolist())
        np.testing.assert_array_equal(got.item_ids, expected.item_ids)
        np.testing.assert_allclose(got.scores, expected.scores, rtol=1e-5, atol=1e-6)
