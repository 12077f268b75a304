"""Reference recommenders reported beside the models: most-popular and EASE^R.

EASE^R (Steck, 2019): item-item weights B = I - P·diag(1/diag(P)), P = (XᵀX + λI)⁻¹, scores
X_u·B. λ is tuned on the validation window; the Gram matrix is eigendecomposed once so each λ
costs one matrix product instead of an inversion.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.sparse as sp

from models.evaluation import evaluate_recommender

logger = logging.getLogger(__name__)

EASE_LAMBDAS = (50.0, 100.0, 200.0, 300.0, 500.0, 800.0, 1200.0, 2000.0)
EASE_MAX_ITEMS = 20_000  # keeps the dense item-item matrix within memory on large catalogs


class KnownItems:
    """Binary user x item matrix of what each user has seen, keyed by MovieLens ids."""

    def __init__(self, interactions: pd.DataFrame, item_ids: np.ndarray) -> None:
        self.item_ids = np.asarray(item_ids, dtype=np.int64)
        self.user_ids = np.unique(interactions["user_id"].to_numpy(np.int64))
        rows = np.searchsorted(self.user_ids, interactions["user_id"].to_numpy())
        cols = np.searchsorted(self.item_ids, interactions["item_id"].to_numpy())
        data = np.ones(len(rows), dtype=np.float32)
        shape = (len(self.user_ids), len(self.item_ids))
        self.matrix = sp.csr_matrix((data, (rows, cols)), shape=shape)
        self.matrix.data[:] = 1.0  # duplicates summed by csr: back to binary

    def rows(self, user_ids: np.ndarray) -> sp.csr_matrix:
        """(B, I) rows for `user_ids`; users never seen get empty rows."""
        user_ids = np.asarray(user_ids, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.user_ids, user_ids), len(self.user_ids) - 1)
        found = self.user_ids[pos] == user_ids
        out = self.matrix[pos]
        return sp.diags(found.astype(np.float32)) @ out

    def top_k(
        self, scores: np.ndarray, user_ids: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k item ids per row of `scores` (B, I), excluding each user's known items."""
        scores = np.array(scores, dtype=np.float32, copy=True)
        known = self.rows(user_ids).tocoo()
        scores[known.row, known.col] = -np.inf
        k = min(k, scores.shape[1])
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        part_scores = np.take_along_axis(scores, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        idx = np.take_along_axis(part, order, axis=1)
        top_scores = np.take_along_axis(part_scores, order, axis=1)
        items = np.where(np.isfinite(top_scores), self.item_ids[idx], -1)
        return items, top_scores


class PopularRecommender:
    """Recommends the most-rated items each user has not seen."""

    def fit(self, interactions: pd.DataFrame, item_ids: np.ndarray) -> PopularRecommender:
        """Count ratings per item over `interactions`."""
        self.known = KnownItems(interactions, item_ids)
        self.popularity = np.asarray(self.known.matrix.sum(axis=0), dtype=np.float32).ravel()
        return self

    def recommend(self, user_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Most popular unseen items per user."""
        scores = np.broadcast_to(self.popularity, (len(user_ids), len(self.popularity)))
        return self.known.top_k(scores, user_ids, k)


class EASERecommender:
    """EASE^R with a closed-form item-item weight matrix."""

    def __init__(self, lam: float = 300.0, max_items: int = EASE_MAX_ITEMS) -> None:
        self.lam = lam
        self.max_items = max_items

    def fit(self, interactions: pd.DataFrame, item_ids: np.ndarray) -> EASERecommender:
        """Solve for the item-item weights on `interactions`."""
        self._prepare(interactions, item_ids)
        self.weights = self._solve(self.lam)
        return self

    def _prepare(self, interactions: pd.DataFrame, item_ids: np.ndarray) -> None:
        self.known = KnownItems(interactions, item_ids)
        counts = np.asarray(self.known.matrix.sum(axis=0)).ravel()
        # Only the most rated `max_items` items take part (all of them on MovieLens <= 1M).
        self.columns = np.sort(np.argsort(-counts, kind="stable")[: self.max_items])
        x = self.known.matrix[:, self.columns]
        gram = (x.T @ x).toarray().astype(np.float64)
        self._eigvals, self._eigvecs = np.linalg.eigh(gram)

    def _solve(self, lam: float) -> np.ndarray:
        inverse = (self._eigvecs / (self._eigvals + lam)) @ self._eigvecs.T
        weights = -inverse / np.diag(inverse)
        np.fill_diagonal(weights, 0.0)
        return weights.astype(np.float32)

    def recommend(self, user_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Highest-scoring unseen items per user."""
        x = self.known.rows(user_ids)[:, self.columns]
        scores = np.full((len(user_ids), len(self.known.item_ids)), -np.inf, dtype=np.float32)
        scores[:, self.columns] = np.asarray(x @ self.weights)
        return self.known.top_k(scores, user_ids, k)


def tune_ease(
    fit: pd.DataFrame,
    valid: pd.DataFrame,
    item_ids: np.ndarray,
    lambdas: Sequence[float] = EASE_LAMBDAS,
    metric: str = "ndcg@10",
) -> tuple[float, dict[float, float]]:
    """Pick λ by `metric` on the validation window (model fitted on `fit`).

    Returns:
        The best λ and the metric for every λ tried.
    """
    model = EASERecommender(max_items=EASE_MAX_ITEMS)
    model._prepare(fit, item_ids)
    results: dict[float, float] = {}
    for lam in lambdas:
        model.weights = model._solve(lam)
        results[lam] = evaluate_recommender(model, valid, len(item_ids))[metric]
        logger.info("EASE lambda=%g: validation %s=%.4f", lam, metric, results[lam])
    best = max(results, key=lambda lam: results[lam])
    return best, results
