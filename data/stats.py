"""Summary figures of a MovieLens directory (`recsys data stats`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from data.movielens import load_movielens


def dataset_stats(directory: str | Path) -> dict[str, Any]:
    """Format and size of a dataset, as DESIGN.md's `recsys data stats --json` defines them.

    `users` counts distinct users with ratings, `items` the movies in the catalog file (rated or
    not), `ratings` the rating rows kept after loading.
    """
    dataset = load_movielens(directory)
    ts = dataset.interactions["timestamp"]
    return {
        "format": dataset.format.value,
        "users": dataset.n_users,
        "items": len(dataset.items),
        "ratings": len(dataset.interactions),
        "has_demographics": dataset.has_demographics,
        "first_timestamp": int(ts.min()),
        "last_timestamp": int(ts.max()),
        "rated_items": int(dataset.interactions["item_id"].nunique()),
        "dropped_unknown_item_ratings": dataset.dropped_unknown_item_ratings,
    }
