"""The evaluation protocol's per-user temporal split (DESIGN.md), on generated data."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from data.split import holdout_last, recipe_windows, temporal_split
from data.synth import SyntheticData

KEY = ["user_id", "item_id"]


def _keys(frame: pd.DataFrame) -> set[tuple[int, int]]:
    return set(frame[KEY].itertuples(index=False, name=None))


@pytest.fixture
def interactions(small_synth: SyntheticData) -> pd.DataFrame:
    """Generated ratings plus a user with one rating and a user with two."""
    extra = pd.DataFrame(
        {"user_id": [900, 901, 901], "item_id": [1, 1, 3], "rating": [4.0, 3.0, 5.0],
         "timestamp": [1_000_000_000, 1_000_000_000, 1_000_000_500]}
    ).astype(small_synth.interactions.dtypes.to_dict())  # fmt: skip
    shuffled = small_synth.interactions.sample(frac=1.0, random_state=0)
    return pd.concat([shuffled, extra], ignore_index=True)


def test_test_is_the_last_fifth_rounded_up(interactions: pd.DataFrame):
    split = temporal_split(interactions)
    sizes = interactions.groupby("user_id").size()
    test_sizes = split.test.groupby("user_id").size().reindex(sizes.index, fill_value=0)
    for user, n in sizes.items():
        expected = 0 if n == 1 else max(1, math.ceil(0.2 * n))
        assert test_sizes[user] == expected, user


@pytest.mark.parametrize(("earlier", "later"), [("train", "test"), ("fit", "valid")])
def test_held_out_window_comes_after(interactions: pd.DataFrame, earlier: str, later: str):
    split = temporal_split(interactions)
    last = getattr(split, earlier).groupby("user_id")["timestamp"].max()
    first = getattr(split, later).groupby("user_id")["timestamp"].min()
    both = first.index.intersection(last.index)
    assert (first[both] >= last[both]).all()


def test_valid_is_carved_from_train_the_same_way(interactions: pd.DataFrame):
    split = temporal_split(interactions)
    fit, valid = holdout_last(split.train)
    assert _keys(fit) == _keys(split.fit)
    assert _keys(valid) == _keys(split.valid)
    sizes = split.train.groupby("user_id").size()
    valid_sizes = split.valid.groupby("user_id").size().reindex(sizes.index, fill_value=0)
    for user, n in sizes.items():
        assert valid_sizes[user] == (0 if n == 1 else max(1, math.ceil(0.2 * n)))


def test_parts_are_disjoint_and_cover_everything(interactions: pd.DataFrame):
    split = temporal_split(interactions)
    train, test, fit, valid = (_keys(f) for f in (split.train, split.test, split.fit, split.valid))
    assert train | test == _keys(interactions)
    assert not train & test
    assert fit | valid == train
    assert not fit & valid
    assert len(split.train) + len(split.test) == len(interactions)


def test_deterministic_whatever_the_row_order(interactions: pd.DataFrame):
    a = temporal_split(interactions)
    b = temporal_split(interactions.sample(frac=1.0, random_state=1))
    for part in ("train", "fit", "valid", "test"):
        pd.testing.assert_frame_equal(getattr(a, part), getattr(b, part))


def test_single_rating_stays_in_train(interactions: pd.DataFrame):
    split = temporal_split(interactions)
    assert (900, 1) in _keys(split.train)
    assert 900 not in set(split.test["user_id"])
    assert _keys(split.test[split.test["user_id"] == 901]) == {(901, 3)}  # the later one


def test_ties_in_time_are_broken_by_item_id():
    same_time = pd.DataFrame(
        {"user_id": [1] * 5, "item_id": [5, 3, 9, 1, 7], "rating": [3.0] * 5, "timestamp": [10] * 5}
    )
    _, held = holdout_last(same_time)
    assert list(held["item_id"]) == [9]


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1])  # outside (0, 1)
def test_bad_fraction_is_refused(interactions: pd.DataFrame, fraction: float):
    with pytest.raises(ValueError, match="fraction"):
        holdout_last(interactions, fraction)


def _last_fifth_by_hand(frame: pd.DataFrame) -> set[tuple[int, int]]:
    """Each user's last ceil(20%) ratings by (timestamp, item id), written without pandas."""
    by_user: dict[int, list[tuple[int, int]]] = {}
    for user, item, ts in frame[["user_id", "item_id", "timestamp"]].itertuples(index=False):
        by_user.setdefault(int(user), []).append((int(ts), int(item)))
    held = set()
    for user, rows in by_user.items():
        if len(rows) < 2:
            continue
        rows.sort()
        n = max(1, math.ceil(0.2 * len(rows)))
        held |= {(user, item) for _, item in rows[-n:]}
    return held


def test_deploy_windows_know_everything(interactions: pd.DataFrame):
    """Issue 11: `recsys train` serves all the data; it learns on all but each user's last 20%."""
    windows = recipe_windows(interactions)
    assert _keys(windows.known) == _keys(interactions)
    assert len(windows.known) == len(interactions)
    assert _keys(windows.valid) == _last_fifth_by_hand(interactions)
    assert _keys(windows.fit) == _keys(interactions) - _last_fifth_by_hand(interactions)


def test_backtest_windows_are_the_deploy_recipe_one_step_earlier(interactions: pd.DataFrame):
    """Issue 11: the backtest applies the same recipe to all but the test window."""
    split = temporal_split(interactions)
    test = _last_fifth_by_hand(interactions)
    assert _keys(split.test) == test
    backtest = split.windows
    assert _keys(backtest.known) == _keys(interactions) - test
    earlier = interactions[[k not in test for k in interactions[KEY].itertuples(index=False)]]
    again = recipe_windows(earlier)
    for part in ("known", "fit", "valid"):
        assert _keys(getattr(backtest, part)) == _keys(getattr(again, part)), part
