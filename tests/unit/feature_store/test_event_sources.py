"""Events back into training data and out as a ratings file, checked against u.data itself."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from data.movielens import load_movielens
from feature_store.event_sources import export_ratings, load_events, merge_events
from feature_store.events import EventLog, RatingEvent


def _u_data(ml100k_dir: Path) -> list[tuple[int, int, int, int]]:
    rows = (ml100k_dir / "u.data").read_text().split("\n")
    return [tuple(int(f) for f in line.split("\t")) for line in rows if line]  # type: ignore[misc]


def test_merged_events_are_new_ratings_deduplicated(ml100k_dir: Path) -> None:
    raw = _u_data(ml100k_dir)
    user, item, rating, stamp = raw[0]
    user_ratings = [r for u, _, r, _ in raw if u == user]
    rated_by_user = {i for u, i, _, _ in raw if u == user}
    unrated_item = next(i for i in range(1, 1683) if i not in rated_by_user)
    events = [
        RatingEvent(user, item, float(rating), stamp),  # already in u.data
        RatingEvent(944, 50, 5.0, 900_000_000),  # a new user
        RatingEvent(944, 50, 5.0, 900_000_000),  # the same event twice
        RatingEvent(944, 181, 4.0, 900_000_100),
        RatingEvent(user, unrated_item, None, 900_000_200),  # unrated: the user's mean
        RatingEvent(user, 99_999, 3.0, 900_000_300),  # not a movie of the catalog
    ]
    dataset = load_movielens(ml100k_dir)
    merged, added = merge_events(dataset, events)
    assert added == 3
    assert len(merged.interactions) == len(raw) + 3
    inter = merged.interactions
    filled = inter[(inter["user_id"] == user) & (inter["item_id"] == unrated_item)]["rating"]
    assert float(filled.iloc[0]) == pytest.approx(sum(user_ratings) / len(user_ratings), rel=1e-5)
    assert set(inter[inter["user_id"] == 944]["item_id"]) == {50, 181}


def test_export_writes_rated_events_as_ratings_csv(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "log", 1 << 20, 2)
    log.append([RatingEvent(3, 10, 4.5, 100), RatingEvent(1, 20, None, 50)])
    log.append([RatingEvent(1, 30, 2.0, 60), RatingEvent(3, 10, 4.5, 100)])
    events = load_events(str(tmp_path / "log"))
    assert len(events) == 4
    written, unrated = export_ratings(events, tmp_path / "ratings.csv")
    assert (written, unrated) == (2, 1)
    with (tmp_path / "ratings.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows == [
        ["userId", "movieId", "rating", "timestamp"],
        ["1", "30", "2", "60"],
        ["3", "10", "4.5", "100"],
    ]


def test_a_missing_log_directory_says_what_to_give(tmp_path: Path) -> None:
    from data.errors import DataError

    with pytest.raises(DataError, match="RECSYS_EVENTS__DIR"):
        load_events(str(tmp_path / "nowhere"))
