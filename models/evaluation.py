"""The offline evaluation protocol's metrics (DESIGN.md).

Every rating is an implicit positive. For each user with held-out ratings, a model ranks the whole
catalog minus the user's known (training) items; the held-out items are the relevant ones.
Metrics: Recall@10, NDCG@10, HitRate@10, MRR@10, Recall@100 and catalog coverage@10.

Definitions (per user, then averaged over users; coverage is over all users at once):
- Recall@k = |top-k ∩ relevant| / |relevant|
- NDCG@k = DCG@k / IDCG@k with binary gains, DCG = Σ 1/log2(rank + 1), IDCG over min(|rel|, k)
- HitRate@k = 1 if any relevant item is in the top k
- MRR@k = 1 / rank of the first relevant item in the top k (0 if none)
- Coverage@k = distinct items recommended in anyone's top k / catalog size
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import pandas as pd

METRIC_NAMES = ("recall@10", "ndcg@10", "hit_rate@10", "mrr@10", "recall@100", "coverage@10")
EVAL_DEPTH = 100


class BatchRecommender(Protocol):
    """A model that ranks the catalog for a batch of users."""

    def recommend(self, user_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(U, k) ranked MovieLens item ids (-1 padding) and their scores.

        Each user's known items (the ones the model was given as history) are excluded.
        """
        ...


def ranking_metrics(
    recommended: np.ndarray, relevant: Sequence[np.ndarray], n_catalog: int
) -> dict[str, float]:
    """Protocol metrics of ranked lists against held-out items.

    Args:
        recommended: (U, K) ranked item ids, K >= 100 for recall@100 to be meaningful; -1 pads.
        relevant: held-out item ids for each of the U users (each non-empty).
        n_catalog: number of items in the catalog, for coverage.

    Returns:
        A dict with every name in `METRIC_NAMES`.
    """
    if len(recommended) != len(relevant):
        raise ValueError(f"{len(recommended)} ranked lists for {len(relevant)} users")
    if len(relevant) == 0:
        raise ValueError("no users to evaluate")
    n_users, depth = recommended.shape
    hits = np.zeros((n_users, depth), dtype=bool)
    n_relevant = np.empty(n_users, dtype=np.float64)
    for u, rel in enumerate(relevant):
        hits[u] = np.isin(recommended[u], rel) & (recommended[u] >= 0)
        n_relevant[u] = len(np.unique(rel))
    if np.any(n_relevant == 0):
        raise ValueError("every evaluated user needs at least one held-out item")

    top10 = hits[:, :10]
    discounts = 1.0 / np.log2(np.arange(2, 12))
    dcg = (top10 * discounts[: top10.shape[1]]).sum(axis=1)
    ideal = np.cumsum(discounts)[np.minimum(n_relevant, 10).astype(int) - 1]
    first = np.argmax(top10, axis=1)
    any_hit = top10.any(axis=1)
    top10_items = recommended[:, :10]
    covered = np.unique(top10_items[top10_items >= 0]).size
    return {
        "recall@10": float(np.mean(top10.sum(axis=1) / n_relevant)),
        "ndcg@10": float(np.mean(dcg / ideal)),
        "hit_rate@10": float(np.mean(any_hit)),
        "mrr@10": float(np.mean(np.where(any_hit, 1.0 / (first + 1), 0.0))),
        "recall@100": float(np.mean(hits[:, :EVAL_DEPTH].sum(axis=1) / n_relevant)),
        "coverage@10": covered / n_catalog,
    }


def heldout_lists(heldout: pd.DataFrame) -> tuple[np.ndarray, list[np.ndarray]]:
    """Users with held-out ratings (sorted) and each one's held-out item ids."""
    grouped = heldout.groupby("user_id", sort=True)["item_id"]
    users = np.asarray(list(grouped.groups.keys()), dtype=np.int64)
    return users, [g.to_numpy(np.int64) for _, g in grouped]


def evaluate_recommender(
    model: BatchRecommender,
    heldout: pd.DataFrame,
    n_catalog: int,
    batch_size: int = 1024,
) -> dict[str, float]:
    """Run `model` for every user in `heldout` and compute the protocol metrics.

    The model must already exclude each user's known items (its history); see
    `BatchRecommender`.
    """
    users, relevant = heldout_lists(heldout)
    return evaluate_lists(model, users, relevant, n_catalog, batch_size)


def evaluate_lists(
    model: BatchRecommender,
    users: np.ndarray,
    relevant: list[np.ndarray],
    n_catalog: int,
    batch_size: int = 1024,
) -> dict[str, float]:
    """`evaluate_recommender` on held-out lists already grouped (`heldout_lists`)."""
    ranked = [
        model.recommend(users[start : start + batch_size], EVAL_DEPTH)[0]
        for start in range(0, len(users), batch_size)
    ]
    return ranking_metrics(np.concatenate(ranked, axis=0), relevant, n_catalog)


def recall_at(model: BatchRecommender, heldout: pd.DataFrame, k: int) -> float:
    """Mean Recall@k over the users of `heldout` (for candidate sets deeper than 100)."""
    users, relevant = heldout_lists(heldout)
    ranked, _ = model.recommend(users, k)
    hits = [np.isin(np.unique(rel), ranked[u]).mean() for u, rel in enumerate(relevant)]
    return float(np.mean(hits))


def few_ratings_recall(
    model: BatchRecommender,
    heldout: pd.DataFrame,
    train: pd.DataFrame,
    below: int = 5,
    k: int = EVAL_DEPTH,
) -> tuple[float, int]:
    """Recall@k over held-out (user, movie) pairs whose movie had fewer than `below` ratings in
    `train`: can the model propose movies it knows little about? Returns (recall, pairs)."""
    counts = train["item_id"].value_counts()
    few = heldout[heldout["item_id"].map(counts).fillna(0) < below]
    if few.empty:
        return float("nan"), 0
    users = np.unique(few["user_id"].to_numpy(np.int64))
    ranked, _ = model.recommend(users, k)
    row = np.searchsorted(users, few["user_id"].to_numpy(np.int64))
    items = few["item_id"].to_numpy(np.int64)
    hits = [items[n] in set(ranked[row[n]].tolist()) for n in range(len(few))]
    return float(np.mean(hits)), len(few)
