"""Features: hand-computed values on a tiny dataset, and no leakage from after the period."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from data.features import ITEM_COLUMNS, MEAN_SMOOTHING, USER_COLUMNS, build_snapshot
from data.movielens import load_movielens
from data.schema import GENRES, DataFormat, Dataset
from data.snapshot import FeatureSnapshot
from data.split import temporal_split
from data.synth import SyntheticData, write_movielens

DAY = 86_400


@pytest.fixture
def tiny() -> Dataset:
    """Two users, three movies, three ratings: every figure is computed by hand below."""
    interactions = pd.DataFrame(
        {"user_id": [1, 1, 2], "item_id": [10, 20, 10], "rating": [4.0, 2.0, 5.0],
         "timestamp": [0, DAY, 2 * DAY]}
    ).astype({"rating": "float32"})  # fmt: skip
    users = pd.DataFrame(
        {"user_id": [1, 2], "gender": ["F", "M"], "age_bucket": ["25", "unknown"],
         "occupation": ["programmer", "other"], "zip_code": ["55455", "unknown"]}
    )  # fmt: skip
    items = pd.DataFrame(
        {"item_id": [10, 20, 30], "title": ["A (1990)", "B (1991)", "C (1992)"],
         "year": [1990.0, 1991.0, 1992.0],
         "genres": [("Action", "Comedy"), ("Comedy",), ("Drama",)]}
    )  # fmt: skip
    return Dataset(DataFormat.ML_1M, interactions, users, items, has_demographics=True)


def _user(snapshot: FeatureSnapshot, user_id: int, column: str) -> float:
    rows, _ = snapshot.user_rows(np.array([user_id]))
    return float(rows[0, USER_COLUMNS.index(column)])


def _item(snapshot: FeatureSnapshot, item_id: int, column: str) -> float:
    rows, _ = snapshot.item_rows(np.array([item_id]))
    return float(rows[0, ITEM_COLUMNS.index(column)])


def test_user_features_by_hand(tiny: Dataset):
    snap = build_snapshot(tiny, tiny.interactions)
    assert _user(snap, 1, "user_count") == 2
    assert _user(snap, 1, "user_mean_rating") == pytest.approx(3.0)
    assert _user(snap, 1, "user_std_rating") == pytest.approx(1.0)  # population std of 4, 2
    assert _user(snap, 1, "user_days_since_last") == pytest.approx(1.0)  # now = day 2
    assert _user(snap, 1, "user_days_active") == pytest.approx(1.0)
    assert _user(snap, 1, "user_aff_action") == pytest.approx(0.5)  # 1 of 2 ratings
    assert _user(snap, 1, "user_aff_comedy") == pytest.approx(1.0)  # 2 of 2 ratings
    assert _user(snap, 1, "user_aff_drama") == 0.0
    assert _user(snap, 2, "user_std_rating") == 0.0  # one rating: no spread
    assert _user(snap, 1, "user_gender") == 2  # F; 0 is unknown
    assert _user(snap, 2, "user_age_bucket") == 0  # unknown
    assert _user(snap, 1, "user_zip_region") == 6  # first digit 5, plus one


def test_item_features_by_hand(tiny: Dataset):
    snap = build_snapshot(tiny, tiny.interactions)
    global_mean = 11 / 3
    assert _item(snap, 10, "item_count") == 2
    assert _item(snap, 30, "item_count") == 0
    assert _item(snap, 10, "item_mean_rating") == pytest.approx(
        (9 + MEAN_SMOOTHING * global_mean) / (2 + MEAN_SMOOTHING)
    )
    assert _item(snap, 30, "item_mean_rating") == pytest.approx(global_mean)  # prior only
    assert [_item(snap, i, "item_pop_rank") for i in (10, 20, 30)] == [1, 2, 3]
    assert _item(snap, 10, "item_recent_count") == 2
    assert _item(snap, 10, "item_days_since_first") == pytest.approx(2.0)
    assert _item(snap, 20, "item_year") == 1991
    genre_flags = [_item(snap, 10, f"item_genre_{g}") for g in ("action", "comedy", "drama")]
    assert genre_flags == [1, 1, 0]


def test_unknown_ids_get_default_rows(tiny: Dataset):
    snap = build_snapshot(tiny, tiny.interactions)
    rows, found = snap.user_rows(np.array([1, 999]))
    assert found.tolist() == [True, False]
    np.testing.assert_array_equal(rows[1], snap.default_user)
    assert snap.default_item[ITEM_COLUMNS.index("item_pop_rank")] == 4  # after every item


@pytest.fixture
def dataset(small_synth: SyntheticData, tmp_path) -> Dataset:
    return load_movielens(write_movielens(small_synth, tmp_path / "ml-1m", "ml-1m"))


def _assert_same_features(a: FeatureSnapshot, b: FeatureSnapshot) -> None:
    np.testing.assert_array_equal(a.user_ids, b.user_ids)
    np.testing.assert_array_equal(a.user_matrix, b.user_matrix)
    np.testing.assert_array_equal(a.item_matrix, b.item_matrix)
    np.testing.assert_array_equal(a.default_user, b.default_user)
    np.testing.assert_array_equal(a.default_item, b.default_item)
    assert a.version == b.version


def test_no_leakage_from_after_the_period(dataset: Dataset):
    inter = dataset.interactions
    cutoff = int(inter["timestamp"].quantile(0.7))
    period = inter[inter["timestamp"] <= cutoff]
    before = build_snapshot(dataset, period)

    # Later history changes: later ratings rewritten, new later ratings of known users/movies.
    later = inter["timestamp"] > cutoff
    changed = inter.copy()
    changed.loc[later, "rating"] = 5.0 - changed.loc[later, "rating"] + 0.5
    rng = np.random.default_rng(0)
    added = pd.DataFrame(
        {
            "user_id": rng.choice(inter["user_id"].unique(), 200),
            "item_id": rng.choice(dataset.items["item_id"], 200),
            "rating": np.full(200, 5.0, dtype=np.float32),
            "timestamp": cutoff + 1 + rng.integers(0, 10 * DAY, 200),
        }
    )
    future = dataclasses.replace(dataset, interactions=pd.concat([changed, added]))
    future_period = future.interactions[future.interactions["timestamp"] <= cutoff]
    _assert_same_features(before, build_snapshot(future, future_period))


def test_no_leakage_from_the_test_window(dataset: Dataset):
    split = temporal_split(dataset.interactions)
    before = build_snapshot(dataset, split.train)
    shuffled_test = split.test.assign(
        rating=split.test["rating"].sample(frac=1.0, random_state=0).to_numpy()
    )
    other = dataclasses.replace(
        dataset, interactions=pd.concat([split.train, shuffled_test], ignore_index=True)
    )
    _assert_same_features(before, build_snapshot(other, temporal_split(other.interactions).train))


def test_a_change_inside_the_period_shows(dataset: Dataset):
    """The leakage tests above are not vacuous: features do follow the period."""
    split = temporal_split(dataset.interactions)
    before = build_snapshot(dataset, split.train)
    changed = split.train.copy()
    changed.loc[changed.index[0], "rating"] = 0.5 if changed["rating"].iloc[0] > 1 else 5.0
    assert build_snapshot(dataset, changed).version != before.version


def test_columns_are_the_published_order(dataset: Dataset):
    snap = build_snapshot(dataset, temporal_split(dataset.interactions).train)
    assert snap.user_columns == USER_COLUMNS
    assert snap.item_columns == ITEM_COLUMNS
    assert sum(c.startswith("item_genre_") for c in ITEM_COLUMNS) == len(GENRES)
    assert snap.metadata["period_ratings"] == len(temporal_split(dataset.interactions).train)
