"""`Retriever`: the serving side of the two-tower model.

It holds the trained towers, the item embeddings and their FAISS index, the id maps and the user
histories it serves with (seen items to exclude, recent items pooled into the query). Queries of
known users are computed once per history in numpy (`with_history`); a single `retrieve` call is
then a row lookup, one FAISS search of k + (excluded items) and a filter.

Events since the snapshot (`retrieve(..., live=events)`) change one request: their movies are
excluded with the seen ones, and the query is computed again from the user's last `history_len`
ratings, the events included; a user unknown to the snapshot who has events is a known user.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from data.features import encode_demographics
from models.retrieval import ItemIndex
from models.sources import UserContext
from models.two_tower_arrays import ItemInputs, TwoTowerConfig, UserTowerArrays

if TYPE_CHECKING:
    from feature_store.events import RatingEvent
    from models.two_tower import TwoTowerModel

logger = logging.getLogger(__name__)

POPULAR_QUERY_ITEMS = 50  # cold users without demographics: mean of the most popular items
CONTEXT_ROWS = 100  # latest ratings per user kept for the other candidate sources
DEMOGRAPHIC_KEYS = ("age_bucket", "gender", "occupation", "zip_code")


@dataclass(frozen=True)
class RetrievalResult:
    """Candidates for one user, best first."""

    item_ids: np.ndarray  # (n,) int64 MovieLens ids, n <= k
    scores: np.ndarray  # (n,) float32 inner products
    cold_start: bool  # the user had no history and no trained embedding


@dataclass(frozen=True)
class UserState:
    """What one request knows about a user (see `Retriever.user_state`)."""

    query: np.ndarray  # (1, D) float32 unit-norm user-tower output
    cold: bool  # no history and no trained embedding: the cold-start query answered
    context: UserContext  # recent rows (oldest first) and sorted rows to exclude


@dataclass(frozen=True)
class RetrieverParts:
    """Everything a `Retriever` is made of except the user histories."""

    user_tower: UserTowerArrays  # the query side, in numpy
    config: TwoTowerConfig
    item_ids: np.ndarray  # (I,) int64 sorted MovieLens ids; row r of the index is item_ids[r]
    inputs: ItemInputs  # item tower inputs in the same row order
    item_embeddings: np.ndarray  # (I, D) float32
    index: ItemIndex
    popularity: np.ndarray  # (I,) float32 training ratings per item
    user_ids: np.ndarray  # (U,) int64 sorted users with a trained id embedding (row + 1)
    demo_user_ids: np.ndarray  # (Ud,) int64 sorted users with known demographics
    demo_codes: np.ndarray  # (Ud, 4) int64 demographic codes (0 = unknown)
    model: TwoTowerModel | None = None  # the torch model: after training, or loaded on request


def _sorted_lookup(keys: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions of `wanted` in sorted `keys` and a mask of which were found."""
    if len(keys) == 0:
        return np.zeros(len(wanted), dtype=np.int64), np.zeros(len(wanted), dtype=bool)
    pos = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return pos, keys[pos] == wanted


def demographic_codes(demographics: dict[str, str]) -> np.ndarray:
    """(4,) codes from canonical demographics (keys gender, age_bucket, occupation, zip_code).

    Missing keys and unknown values become 0 (unknown).
    """
    row = {key: [str(demographics.get(key, "unknown"))] for key in DEMOGRAPHIC_KEYS}
    return encode_demographics(pd.DataFrame(row))[0].astype(np.int64)


class Retriever:
    """Top-k candidate items for a user from the two-tower model and the FAISS index."""

    def __init__(self, parts: RetrieverParts, history: pd.DataFrame) -> None:
        """Args:
        parts: trained model, item side and id maps.
        history: ``user_id``, ``item_id``, ``timestamp`` rows: what each user has seen.
        """
        self.parts = parts
        self.tower = parts.user_tower
        self._set_history(history)

    @property
    def item_ids(self) -> np.ndarray:
        """(I,) MovieLens ids of the catalog, in index row order."""
        return self.parts.item_ids

    @property
    def config(self) -> TwoTowerConfig:
        """The model's configuration."""
        return self.parts.config

    def with_history(self, history: pd.DataFrame) -> Retriever:
        """The same weights and index serving other user histories."""
        return Retriever(self.parts, history)

    def _set_history(self, history: pd.DataFrame) -> None:
        parts = self.parts
        hist = history[["user_id", "item_id", "timestamp"]]
        rows, known = _sorted_lookup(parts.item_ids, hist["item_id"].to_numpy(np.int64))
        hist = hist.assign(row=rows)[known]
        hist = hist.sort_values(["user_id", "timestamp", "item_id"], kind="mergesort")
        users = np.union1d(parts.user_ids, hist["user_id"].to_numpy(np.int64))
        owner = np.searchsorted(users, hist["user_id"].to_numpy(np.int64))
        item_rows = hist["row"].to_numpy(np.int64)
        # Seen items: sorted unique rows per user (CSR), for exclusion by binary search.
        seen = np.unique(owner * len(parts.item_ids) + item_rows)
        seen_owner = seen // len(parts.item_ids)
        self._seen_rows = seen % len(parts.item_ids)
        self._seen_ptr = np.searchsorted(seen_owner, np.arange(len(users) + 1))
        # Recent items: the last `history_len` ratings per user, pooled into the query.
        n = self.config.history_len
        ptr = np.searchsorted(owner, np.arange(len(users) + 1))
        rank_from_end = ptr[owner + 1] - 1 - np.arange(len(owner))
        recent = rank_from_end < n
        self._recent_rows = item_rows[recent] + 1
        self._recent_ptr = np.searchsorted(owner[recent], np.arange(len(users) + 1))
        # Each user's last CONTEXT_ROWS ratings, oldest first, with their timestamps (CSR): what
        # the other candidate sources read, and what events are merged with.
        context = rank_from_end < max(n, CONTEXT_ROWS)
        self._context_rows = item_rows[context]
        self._context_ts = hist["timestamp"].to_numpy(np.int64)[context]
        self._context_ptr = np.searchsorted(owner[context], np.arange(len(users) + 1))
        self._history_counts = np.bincount(item_rows, minlength=len(parts.item_ids))
        user_pos, trained = _sorted_lookup(parts.user_ids, users)
        self._user_index = np.where(trained, user_pos + 1, 0)
        self._demo = self._stored_demographics(users)
        self._users = users
        self._compute_queries()
        logger.debug("retriever history: %d users, %d ratings", len(users), len(hist))

    def _compute_queries(self) -> None:
        """The weights' side of the history: pooled queries of known users, the cold query."""
        pooled = self.tower.pooled_history(self._recent_rows, self._recent_ptr)
        self._popular_query = self._popular(self._history_counts)
        self._queries = self.tower.query(self._user_index, self._demo, pooled)  # (Uq, D)

    def reweighted(self, parts: RetrieverParts) -> Retriever:
        """Other weights of the same model shape serving the same histories.

        Cheaper than a new `Retriever` on the same history: the tables built from the history
        (seen items, recent items, demographics) are shared and only the queries are computed
        again. Training's per-epoch validation uses it.
        """
        if len(parts.item_ids) != len(self.parts.item_ids) or not np.array_equal(
            parts.user_ids, self.parts.user_ids
        ):
            raise ValueError("reweighted() needs the same catalog and users; use with_history()")
        other = copy.copy(self)
        other.parts, other.tower = parts, parts.user_tower
        other._compute_queries()
        return other

    def _popular(self, history_counts: np.ndarray) -> np.ndarray:
        """(1, D) cold-start query: the mean of the items most rated in the served history.

        The served history (not the training window) decides, so the fallback knows the latest
        ratings; with no history at all, the training counts stored with the model do.
        """
        counts = history_counts.astype(np.float32)
        if not counts.any():
            counts = self.parts.popularity
        top = np.argsort(-counts, kind="stable")[:POPULAR_QUERY_ITEMS]
        popular = self.parts.item_embeddings[top].mean(axis=0, keepdims=True)
        return np.ascontiguousarray(popular / np.linalg.norm(popular), np.float32)

    def _stored_demographics(self, users: np.ndarray) -> np.ndarray:
        pos, found = _sorted_lookup(self.parts.demo_user_ids, users)
        if len(self.parts.demo_codes) == 0:
            return np.zeros((len(users), 4), dtype=np.int64)
        return np.where(found[:, None], self.parts.demo_codes[pos], 0)

    def _cold_query(self, user_id: int, demographics: dict[str, str] | None) -> np.ndarray:
        if demographics is not None:
            codes = demographic_codes(demographics)
        else:
            codes = self._stored_demographics(np.array([user_id], dtype=np.int64))[0]
        if not codes.any():
            return self._popular_query
        pooled = np.zeros((1, self.tower.dim), dtype=np.float32)
        return self.tower.query(np.zeros(1, dtype=np.int64), codes[None, :], pooled)

    def _exclusion(
        self, pos: int, known: bool, exclude_seen: bool, exclude_item_ids: Iterable[int]
    ) -> np.ndarray:
        """Sorted catalog rows to drop for one user."""
        seen = self._seen_rows[self._seen_ptr[pos] : self._seen_ptr[pos + 1]]
        seen = seen if (known and exclude_seen) else seen[:0]
        extra = np.fromiter(exclude_item_ids, dtype=np.int64)
        if len(extra) == 0:
            return seen
        rows, found = _sorted_lookup(self.parts.item_ids, extra)
        return np.union1d(seen, rows[found])

    def user_state(
        self,
        user_id: int,
        exclude_item_ids: Iterable[int] = (),
        exclude_seen: bool = True,
        demographics: dict[str, str] | None = None,
        live: Sequence[RatingEvent] = (),
    ) -> UserState:
        """What one request knows about a user: the query, recent rows, rows to exclude.

        Args:
            user_id: MovieLens user id; unknown users get a cold-start query.
            exclude_item_ids: item ids never to return.
            exclude_seen: drop the items in the user's history.
            demographics: canonical demographics for a cold-start user (ignored for known users).
            live: the user's events since the snapshot (their movies are seen; they join the
                history the query is computed from).
        """
        pos_arr, found_arr = _sorted_lookup(self._users, np.array([user_id], dtype=np.int64))
        pos, found = int(pos_arr[0]), bool(found_arr[0])
        excluded = self._exclusion(pos, found, exclude_seen, exclude_item_ids)
        start, end = (self._context_ptr[pos], self._context_ptr[pos + 1]) if found else (0, 0)
        recent, stamps = self._context_rows[start:end], self._context_ts[start:end]
        if not live:
            cold = not found  # users are known by a trained embedding or a history
            query = (
                self._queries[pos : pos + 1] if found else self._cold_query(user_id, demographics)
            )
            return UserState(query, cold, UserContext(recent, excluded))
        items = np.array([e.item_id for e in live], dtype=np.int64)
        live_ts = np.array([e.timestamp for e in live], dtype=np.int64)
        rows, in_catalog = _sorted_lookup(self.parts.item_ids, items)
        rows, live_ts = rows[in_catalog], live_ts[in_catalog]
        merged, merged_ts = np.concatenate([recent, rows]), np.concatenate([stamps, live_ts])
        order = np.lexsort((self.parts.item_ids[merged], merged_ts))
        merged = merged[order][-max(self.config.history_len, CONTEXT_ROWS) :]
        query = self._query_from(user_id, merged[-self.config.history_len :])
        if exclude_seen:
            excluded = np.union1d(excluded, rows)
        return UserState(query, False, UserContext(merged, excluded))

    def _query_from(self, user_id: int, recent: np.ndarray) -> np.ndarray:
        """(1, D) query of a user whose last ratings are the catalog rows `recent`."""
        pooled = self.tower.pooled_history(recent + 1, np.array([0, len(recent)]))
        trained_pos, trained = _sorted_lookup(self.parts.user_ids, np.array([user_id]))
        user_index = np.where(trained, trained_pos + 1, 0)
        demo = self._stored_demographics(np.array([user_id], dtype=np.int64))
        return self.tower.query(user_index, demo, pooled)

    def retrieve(
        self,
        user_id: int,
        k: int = 100,
        exclude_item_ids: Iterable[int] = (),
        exclude_seen: bool = True,
        demographics: dict[str, str] | None = None,
        live: Sequence[RatingEvent] = (),
    ) -> RetrievalResult:
        """Top-k items for one user (arguments as `user_state`).

        Returns:
            Item ids and scores, best first, and whether the cold-start path answered.
        """
        state = self.user_state(user_id, exclude_item_ids, exclude_seen, demographics, live)
        return self.search(state, k)

    def search(self, state: UserState, k: int) -> RetrievalResult:
        """The two-tower model's top `k` for a user state."""
        return self._search(state.query, k, state.context.seen_rows, state.cold)

    def scores_of(self, state: UserState, rows: np.ndarray) -> np.ndarray:
        """(n,) two-tower scores (inner products) of catalog `rows` for a user state."""
        return (self.parts.item_embeddings[rows] @ state.query[0]).astype(np.float32)

    def _search(
        self, query: np.ndarray, k: int, excluded: np.ndarray, cold: bool
    ) -> RetrievalResult:
        """The best `k` catalog rows for a (1, D) query, `excluded` (sorted rows) left out."""
        if self.parts.index.exact:
            return self._exact_top_k(query[0], k, excluded, cold)
        scores, rows = self.parts.index.search(query, k + len(excluded))
        scores, rows = scores[0], rows[0]
        keep = rows >= 0
        if len(excluded):
            at = np.minimum(np.searchsorted(excluded, rows), len(excluded) - 1)
            keep &= excluded[at] != rows
        rows, scores = rows[keep][:k], scores[keep][:k]
        return RetrievalResult(self.parts.item_ids[rows], scores.astype(np.float32), cold)

    def _exact_top_k(
        self, query: np.ndarray, k: int, excluded: np.ndarray, cold: bool
    ) -> RetrievalResult:
        """Exhaustive scoring in numpy: its cost does not grow with k + excluded, FAISS's does."""
        scores = self.parts.item_embeddings @ query  # (I,)
        scores[excluded] = -np.inf
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        top = top[np.isfinite(scores[top])]
        return RetrievalResult(self.parts.item_ids[top], scores[top].astype(np.float32), cold)

    def queries(self, user_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(B, D) queries, positions in the history tables and a known-user mask."""
        user_ids = np.asarray(user_ids, dtype=np.int64)
        pos, found = _sorted_lookup(self._users, user_ids)
        out = self._queries[pos].copy()
        for i in np.flatnonzero(~found):
            out[i] = self._cold_query(int(user_ids[i]), None)[0]
        return out, pos, found

    def recommend(self, user_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Batched retrieval excluding seen items: (B, k) item ids (-1 padded) and scores."""
        queries, pos, found = self.queries(user_ids)
        n_items = len(self.parts.item_ids)
        k = min(k, n_items)
        items = np.full((len(queries), k), -1, dtype=np.int64)
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        if self.parts.index.exact:
            scores = queries @ self.parts.item_embeddings.T  # (B, I)
            for i in range(len(queries)):
                if found[i]:
                    scores[
                        i, self._seen_rows[self._seen_ptr[pos[i]] : self._seen_ptr[pos[i] + 1]]
                    ] = -np.inf
            part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            part_scores = np.take_along_axis(scores, part, axis=1)
            order = np.argsort(-part_scores, axis=1, kind="stable")
            rows = np.take_along_axis(part, order, axis=1)
            top = np.take_along_axis(part_scores, order, axis=1)
            valid = np.isfinite(top)
            items[valid] = self.parts.item_ids[rows[valid]]
            out_scores[valid] = top[valid]
            return items, out_scores
        n_seen = np.where(found, self._seen_ptr[pos + 1] - self._seen_ptr[pos], 0)
        scores, rows = self.parts.index.search(queries, k + int(n_seen.max(initial=0)))
        for i in range(len(queries)):
            excluded = self._exclusion(int(pos[i]), bool(found[i]), True, ())
            keep = rows[i] >= 0
            if len(excluded):
                at = np.minimum(np.searchsorted(excluded, rows[i]), len(excluded) - 1)
                keep &= excluded[at] != rows[i]
            r = rows[i][keep][:k]
            items[i, : len(r)] = self.parts.item_ids[r]
            out_scores[i, : len(r)] = scores[i][keep][:k]
        return items, out_scores
