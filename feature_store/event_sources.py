"""Closing the loop: logged events back into training data, or out as a MovieLens ratings file.

`load_events(source)` reads a replica's event log directory or, for a ``redis://`` /
``rediss://`` URL, the Redis stream of the active feature version. `merge_events` adds them to a
dataset's interactions (deduplicated by user, item and timestamp; an unrated event gets the
user's mean rating, as the served features count it), so `recsys train --events SOURCE` learns
from them. `export_ratings` writes them as an ml-latest ``ratings.csv``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from data.errors import DataError
from data.schema import Dataset
from feature_store.config import RedisSettings
from feature_store.events import RatingEvent, read_log


def load_events(source: str, redis: RedisSettings | None = None) -> list[RatingEvent]:
    """The events of an event log directory, or of the Redis stream at a redis:// URL.

    Raises:
        DataError: the directory does not exist.
        FeatureStoreUnavailable, NoActiveVersion: Redis could not be read.
    """
    if source.startswith(("redis://", "rediss://", "unix://")):
        from feature_store.redis_events import read_stream
        from feature_store.redis_store import RedisFeatureStore

        settings = (redis or RedisSettings()).model_copy(update={"url": source})
        store = RedisFeatureStore(settings)
        try:
            return read_stream(store)
        finally:
            store.close()
    path = Path(source)
    if not path.is_dir():
        raise DataError(
            f"no event log at {path}: give the events directory of a served replica "
            "(RECSYS_EVENTS__DIR) or a redis:// URL"
        )
    return read_log(path)


def events_frame(events: list[RatingEvent]) -> pd.DataFrame:
    """``user_id, item_id, rating, timestamp`` (rating NaN when unrated)."""
    return pd.DataFrame(
        {
            "user_id": np.array([e.user_id for e in events], dtype=np.int64),
            "item_id": np.array([e.item_id for e in events], dtype=np.int64),
            "rating": np.array(
                [np.nan if e.rating is None else e.rating for e in events], dtype=np.float32
            ),
            "timestamp": np.array([e.timestamp for e in events], dtype=np.int64),
        }
    )


def merge_events(dataset: Dataset, events: list[RatingEvent]) -> tuple[Dataset, int]:
    """`dataset` with `events` added to its interactions; returns it and how many were new.

    Events of movies outside the catalog are dropped; duplicates of a rating the data has (same
    user, item, timestamp) or of another event are dropped; an unrated event gets the user's
    mean rating (the data's mean for users with none).
    """
    if not events:
        return dataset, 0
    frame = events_frame(events)
    frame = frame[frame["item_id"].isin(dataset.items["item_id"])]
    inter = dataset.interactions
    means = inter.groupby("user_id")["rating"].mean()
    fill = frame["user_id"].map(means).fillna(float(inter["rating"].mean()))
    frame["rating"] = frame["rating"].fillna(fill).astype(inter["rating"].dtype)
    key = ["user_id", "item_id", "timestamp"]
    merged = pd.concat([inter, frame[inter.columns]], ignore_index=True)
    merged = merged.drop_duplicates(subset=key, keep="first").reset_index(drop=True)
    added = len(merged) - len(inter)
    return dataclasses.replace(dataset, interactions=merged), added


def export_ratings(events: list[RatingEvent], path: Path) -> tuple[int, int]:
    """Write rated events as an ml-latest ``ratings.csv`` (userId,movieId,rating,timestamp).

    Returns (rows written, unrated events skipped: MovieLens has no unrated rows).
    """
    frame = events_frame(events).drop_duplicates(["user_id", "item_id", "timestamp"])
    rated = frame.dropna(subset=["rating"]).sort_values(["user_id", "timestamp", "item_id"])
    path.parent.mkdir(parents=True, exist_ok=True)
    rated.rename(columns={"user_id": "userId", "item_id": "movieId"}).to_csv(
        path, index=False, float_format="%g"
    )
    return len(rated), len(frame) - len(rated)
