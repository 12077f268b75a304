"""Retrieval followed by ranking, as one batch recommender (used by evaluation and batch jobs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from feature_store.base import FeatureStore
    from models.candidates import CandidateGenerator
    from models.ranker import Ranker, RankResult


class TwoStageRecommender:
    """Fused candidates per user (`CandidateGenerator`), then the ranker orders them."""

    def __init__(self, generator: CandidateGenerator, ranker: Ranker, store: FeatureStore) -> None:
        self.generator = generator
        self.ranker = ranker
        self.store = store

    @property
    def candidates(self) -> int:
        """The fused list's cap."""
        return self.generator.fused_max

    def rank_user(self, user_id: int, k: int) -> RankResult | None:
        """Generate then rank for one user (None when no source proposes anything)."""
        fused = self.generator.generate(int(user_id))
        if len(fused.item_ids) == 0:
            return None
        return self.ranker.rank(
            int(user_id),
            fused.item_ids,
            fused.two_tower_scores,
            self.store,
            k=k,
            sources=fused.source_features(),
        )

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
