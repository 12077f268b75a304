"""Training the candidate sources besides the two-tower model, at one time cut.

`tune_sources(dataset, windows)` chooses each source's parameters on the recipe's windows (built
on ``fit``, judged on ``valid``): the item-to-item neighbours by validation Recall@100, the
content neighbours by validation recall of movies with few ratings. `build_sources(dataset,
period, params)` then builds every source from one period: ``fit`` for the ranker's training
candidates, ``known`` for serving.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from data.schema import Dataset
from data.split import Windows
from models.sources import CandidateSource, RankedListSource, popularity_counts, ranked_list

logger = logging.getLogger(__name__)


@dataclass
class SourceParams:
    """Chosen parameters of each source, and what validation measured."""

    item_knn: dict[str, Any] = field(default_factory=dict)
    content: dict[str, Any] = field(default_factory=dict)
    validation: dict[str, dict[str, float]] = field(default_factory=dict)


def catalog_ids(dataset: Dataset) -> np.ndarray:
    """(I,) sorted catalog item ids: the row order of every source."""
    return np.sort(dataset.items["item_id"].to_numpy(np.int64))


def user_item_matrix(period: pd.DataFrame, item_ids: np.ndarray) -> sp.csr_matrix:
    """Binary users × catalog rows matrix of a period (users in sorted id order)."""
    users, owner = np.unique(period["user_id"].to_numpy(np.int64), return_inverse=True)
    rows = np.searchsorted(item_ids, period["item_id"].to_numpy(np.int64))
    data = np.ones(len(rows), dtype=np.float32)
    matrix = sp.csr_matrix((data, (owner, rows)), shape=(len(users), len(item_ids)))
    matrix.data[:] = 1.0  # a user rating a movie twice is still one co-occurrence
    return matrix


# Untuned parameters (`quick` training: tests and smoke runs).
QUICK_ITEM_KNN: dict[str, Any] = {"method": "cosine", "n_neighbours": 50, "history": 20,
                                  "shrink": 10.0, "decay": 0.9}  # fmt: skip
QUICK_CONTENT: dict[str, Any] = {
    "genres": 1.0, "year": 1.0, "title": 0.5, "year_scale": 2.0, "cold_threshold": 5,
    "history": 20, "n_neighbours": 50,
}  # fmt: skip


def tune_sources(dataset: Dataset, windows: Windows, quick: bool = False) -> SourceParams:
    """Each source's parameters, chosen on fit -> valid (`quick`: fixed ones, no search)."""
    from models.content_bench import tune as tune_content
    from models.item_neighbours import tune_item_neighbours

    if quick:
        return SourceParams(dict(QUICK_ITEM_KNN), dict(QUICK_CONTENT))
    item_ids = catalog_ids(dataset)
    params = SourceParams()
    params.item_knn, params.validation["item_knn"] = tune_item_neighbours(
        windows.fit, windows.valid, item_ids
    )
    tuned, recall = tune_content(dataset.items, windows.fit, windows.valid, item_ids)
    if not tuned:
        logger.warning("no cold movie in validation: the content source keeps its defaults")
    params.content = tuned or dict(QUICK_CONTENT)
    params.validation["content"] = {"cold_recall@100": recall.recall, "pairs": recall.pairs}
    logger.info("candidate sources tuned: %s", params)
    return params


def build_sources(
    dataset: Dataset, period: pd.DataFrame, params: SourceParams
) -> dict[str, CandidateSource]:
    """Every source besides the two-tower model, from the ratings of `period`."""
    from models.content_neighbours import BlockWeights, ContentSource, build_content_neighbours
    from models.item_neighbours import ItemNeighbourSource, build_item_neighbours

    item_ids = catalog_ids(dataset)
    rows = np.searchsorted(item_ids, period["item_id"].to_numpy(np.int64))
    popular, trending = popularity_counts(
        rows, period["timestamp"].to_numpy(np.int64), len(item_ids)
    )
    sources: dict[str, CandidateSource] = {
        "popular": RankedListSource("popular", *ranked_list(popular)),
        "trending": RankedListSource("trending", *ranked_list(trending)),
    }
    knn = params.item_knn
    table = build_item_neighbours(
        user_item_matrix(period, item_ids),
        n_neighbours=int(knn["n_neighbours"]),
        method=str(knn["method"]),
        **{name: float(knn[name]) for name in ("shrink", "lam") if name in knn},
    )
    sources["item_knn"] = ItemNeighbourSource(table, knn["history"], float(knn.get("decay", 1.0)))
    content = params.content
    weights = BlockWeights(
        genres=float(content["genres"]),
        year=float(content["year"]),
        title=float(content["title"]),
        year_scale=float(content["year_scale"]),
    )
    content_table = build_content_neighbours(
        dataset.items, popular, int(content["n_neighbours"]), int(content["cold_threshold"]),
        weights,
    )  # fmt: skip
    sources["content"] = ContentSource(content_table, int(content["history"]))
    return sources
