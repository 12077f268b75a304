"""Retrieval followed by ranking, as one batch recommender (used by evaluation and batch jobs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from feature_store.base import FeatureStore
    from models.ranker import Ranker, RankResult
    from models.retriever import Retriever


class TwoStageRecommender:
    """Retrieves `candidates` items per user, then lets the ranker order them."""

    def __init__(
        self, retriever: Retriever, ranker: Ranker, store: FeatureStore, candidates: int = 100
    ) -> None:
        self.retriever = retriever
        self.ranker = ranker
        self.store = store
        self.candidates = candidates

    def rank_user(self, user_id: int, k: int) -> RankResult | None:
        """Retrieve then rank for one user (None when retrieval finds nothing)."""
        found = self.retriever.retrieve(int(user_id), k=max(k, self.candidates))
        if len(found.item_ids) == 0:
            return None
        return self.ranker.rank(int(user_id), found.item_ids, found.scores, self.store, k=k)

    def recommend(self, user_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(U, k) ranked item ids (-1 padding) and ranker scores, seen items excluded."""
        items = np.full((len(user_ids), k), -1, dtype=np.int64)
        scores = np.full((len(user_ids), k), -np.inf, dtype=np.float32)
        for row, user_id in enumerate(np.asarray(user_ids, dtype=np.int64)):
            ranked = self.rank_user(int(user_id), k)
            if ranked is None:
                continue
            n = len(ranked.item_ids)
            items[row, :n] = ranked.item_ids
            scores[row, :n] = ranked.scores
        return items, scores
