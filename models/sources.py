"""Candidate sources: the small interface every first-stage source answers.

A source proposes catalog rows for one user, best first, with its own score. Rows index the sorted
catalog (`item_ids[row]` is the MovieLens id), as in `models.retriever`. What a source may know
about the user at a request is a `UserContext`: the user's most recent rated rows (oldest first)
and the rows to exclude (everything the user has rated, when `exclude_seen`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

SOURCE_ORDER = ("two_tower", "item_knn", "content", "popular", "trending")
# Ranker inputs from fusion, a fixed list whatever sources are switched on (absent = NaN).
SOURCE_FEATURES: tuple[str, ...] = (
    *(f"src_{name}_rank" for name in SOURCE_ORDER),
    *(f"src_{name}_score" for name in SOURCE_ORDER if name != "two_tower"),
    "n_sources",
)


def source_features(ranks: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """(n, len(SOURCE_FEATURES)) from (n, S) ranks and scores in SOURCE_ORDER (NaN = absent)."""
    n = ranks.shape[0]
    out = np.empty((n, len(SOURCE_FEATURES)), dtype=np.float32)
    s = len(SOURCE_ORDER)
    out[:, :s] = ranks
    out[:, s : 2 * s - 1] = scores[:, 1:]
    out[:, -1] = (~np.isnan(ranks)).sum(axis=1)
    return out


@dataclass(frozen=True)
class UserContext:
    """One user at one request."""

    recent_rows: np.ndarray  # (h,) int64 catalog rows of the latest ratings, oldest first
    seen_rows: np.ndarray  # sorted unique int64 catalog rows never to propose


@dataclass(frozen=True)
class SourceCandidates:
    """What one source proposes, best first."""

    rows: np.ndarray  # (n,) int64 catalog rows, n <= k, none of them seen
    scores: np.ndarray  # (n,) float32, higher is better (comparable within one source only)


class CandidateSource(Protocol):
    """Anything that proposes candidates for a user."""

    name: str

    def candidates(self, user: UserContext, k: int) -> SourceCandidates:
        """The best `k` unseen catalog rows for `user`."""
        ...


def top_k_unseen(scores: np.ndarray, seen_rows: np.ndarray, k: int) -> SourceCandidates:
    """The `k` best rows of a dense (I,) score vector, seen rows and -inf scores left out.

    `scores` is modified (seen rows set to -inf).
    """
    scores[seen_rows] = -np.inf
    k = min(k, len(scores))
    if k <= 0:
        return SourceCandidates(np.empty(0, np.int64), np.empty(0, np.float32))
    top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    top = top[np.argsort(-scores[top], kind="stable")]
    top = top[np.isfinite(scores[top])]
    return SourceCandidates(top.astype(np.int64), scores[top].astype(np.float32))


def pads_past_catalog(neighbours: np.ndarray, n_items: int) -> np.ndarray:
    """A neighbour table whose -1 pads point at row `n_items`, one bin past the catalog, so a
    request can accumulate gathered rows without filtering the pads out first."""
    return np.where(neighbours < 0, n_items, neighbours).astype(neighbours.dtype)


def dense_top_k(
    rows: np.ndarray, weights: np.ndarray, n_items: int, seen_rows: np.ndarray, k: int
) -> SourceCandidates:
    """The best `k` unseen rows by summed positive `weights`, accumulated over the catalog.

    `rows` may hold the pad row `n_items` (its weights are dropped); a row no weight reached
    is never proposed.
    """
    dense = np.bincount(rows, weights=weights, minlength=n_items + 1)[:n_items]
    dense[dense <= 0] = -np.inf  # untouched (weights are > 0)
    return top_k_unseen(dense, seen_rows, k)


TRENDING_DAYS = 30
# Neighbour sources accumulate over the whole catalog (bincount) rather than sort the gathered
# entries (np.unique) once these reach 1/8 of the catalog.
DENSE_FACTOR = 8


class RankedListSource:
    """A source that proposes the same ranked list to everyone, minus what they have seen.

    Args:
        name: ``popular`` or ``trending``.
        rows: (I,) catalog rows, best first.
        scores: (I,) their scores (ratings counted).
    """

    def __init__(self, name: str, rows: np.ndarray, scores: np.ndarray) -> None:
        self.name = name
        self.rows = np.asarray(rows, dtype=np.int64)
        self.scores = np.asarray(scores, dtype=np.float32)

    def candidates(self, user: UserContext, k: int) -> SourceCandidates:
        """The first `k` rows of the list the user has not seen."""
        head = self.rows[: k + len(user.seen_rows)]
        keep = np.ones(len(head), dtype=bool)
        seen = user.seen_rows
        if len(seen):
            at = np.minimum(np.searchsorted(seen, head), len(seen) - 1)
            keep = seen[at] != head
        rows = head[keep][:k]
        return SourceCandidates(rows, self.scores[: len(head)][keep][:k])


def ranked_list(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows by decreasing count (ties by row), with their counts; rows with 0 left out."""
    order = np.lexsort((np.arange(len(counts)), -counts))
    order = order[counts[order] > 0]
    return order.astype(np.int64), counts[order].astype(np.float32)


def popularity_counts(
    item_rows: np.ndarray, timestamps: np.ndarray, n_items: int
) -> tuple[np.ndarray, np.ndarray]:
    """(all-time counts, counts in the last TRENDING_DAYS) per catalog row of some ratings."""
    popular = np.bincount(item_rows, minlength=n_items).astype(np.float64)
    recent = timestamps > timestamps.max(initial=0) - TRENDING_DAYS * 86_400
    trending = np.bincount(item_rows[recent], minlength=n_items).astype(np.float64)
    return popular, trending


def encode_sources(
    ranks: np.ndarray, scores: np.ndarray
) -> tuple[dict[str, list[int]], dict[str, list[float]]]:
    """Compact wire form of (n, S) ranks/scores: per source, the candidate positions it
    proposed in its own rank order, and their scores."""
    positions: dict[str, list[int]] = {}
    values: dict[str, list[float]] = {}
    for j, name in enumerate(SOURCE_ORDER):
        hit = np.flatnonzero(~np.isnan(ranks[:, j]))
        if len(hit) == 0:
            continue
        hit = hit[np.argsort(ranks[hit, j], kind="stable")]
        positions[name] = hit.tolist()
        values[name] = scores[hit, j].astype(float).tolist()
    return positions, values


def decode_sources(
    n: int, positions: dict[str, list[int]], values: dict[str, list[float]]
) -> tuple[np.ndarray, np.ndarray]:
    """(n, S) ranks and scores (NaN where absent) from `encode_sources`' wire form.

    Raises:
        ValueError: an unknown source, a position outside 0..n-1, or scores not aligned.
    """
    ranks = np.full((n, len(SOURCE_ORDER)), np.nan, dtype=np.float32)
    scores = np.full((n, len(SOURCE_ORDER)), np.nan, dtype=np.float32)
    for name, pos in positions.items():
        if name not in SOURCE_ORDER:
            raise ValueError(f"unknown candidate source {name!r}; known: {SOURCE_ORDER}")
        got = values.get(name, [])
        if len(got) != len(pos):
            raise ValueError(f"source {name}: {len(pos)} positions but {len(got)} scores")
        at = np.asarray(pos, dtype=np.int64)
        if len(at) and (at.min() < 0 or at.max() >= n):
            raise ValueError(f"source {name}: positions must be within 0..{n - 1}")
        j = SOURCE_ORDER.index(name)
        ranks[at, j] = np.arange(len(at), dtype=np.float32)
        scores[at, j] = np.asarray(got, dtype=np.float32)
    return ranks, scores
