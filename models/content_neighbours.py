"""Content neighbours: a candidate source that can propose movies with few or no ratings.

Each catalog movie gets a content vector of three blocks, each L2-normalised and then weighted
(`BlockWeights`):

- genres: multi-hot over `data.schema.GENRES`;
- year: a smooth year kernel, Gaussian bumps every `YEAR_STEP` years, so that after
  normalisation two movies `d` years apart have a year similarity of about
  ``exp(-d**2 / (4 * year_scale**2))``;
- title: TF-IDF of the lower-cased word tokens of the title, the trailing "(year)" and English
  stop words dropped (`title_tokens`), sparse.

Similarity is the cosine of the concatenated vectors. `build_content_neighbours` keeps, for every
movie, its top-N most similar COLD movies (fewer than `cold_threshold` training ratings), itself
excluded. It works in row chunks and never holds an I x I matrix, so a 62k catalog fits.
`ContentSource` then proposes, for a user, the sum of the neighbour weights of the user's last
`history` rated rows, seen rows excluded: only cold movies, which the collaborative sources
cannot propose at all.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from data.features import genre_matrix
from models.sources import (
    DENSE_FACTOR,
    SourceCandidates,
    UserContext,
    dense_top_k,
    pads_past_catalog,
    top_k_unseen,
)

YEAR_STEP = 2.0  # years between two centres of the year kernel
YEAR_MARGIN = 20.0  # kernel centres reach this far beyond the catalog's years
KERNEL_FLOOR = 1e-6  # year-kernel values below this are dropped
MIN_SIMILARITY = 1e-4  # weaker neighbours are dropped (far tails of the year kernel)
CHUNK_CELLS = 8_000_000  # similarity cells (rows x cold movies) computed at once, ~32 MB
_TRAILING_YEAR = re.compile(r"\s*\(\s*\d{4}(?:\s*[-–]\s*\d{0,4})?\s*\)\s*$")
_POSSESSIVE = re.compile(r"['’]s\b")
_WORD = re.compile(r"[^\W_]+")


@cache
def stop_words() -> frozenset[str]:
    """scikit-learn's English stop words (imported on first use: serving never needs them)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


@dataclass(frozen=True)
class BlockWeights:
    """How much each L2-normalised block counts in the cosine (only ratios matter).

    The defaults won the validation grid of `models.content_bench` on ML-100K and
    ml-latest-small alike.
    """

    genres: float = 1.0
    year: float = 1.0
    title: float = 0.5
    year_scale: float = 2.0  # years; the width of the year kernel


@dataclass(frozen=True)
class ContentTable:
    """Each catalog row's most similar cold movies, best first.

    Rows index the sorted catalog item ids, as in `models.sources`.
    """

    neighbours: np.ndarray  # (I, N) int32 catalog rows of cold movies, -1 padded
    weights: np.ndarray  # (I, N) float32 cosine similarities (>= MIN_SIMILARITY), 0 if padded
    params: dict[str, Any]

    @property
    def n_items(self) -> int:
        """Catalog size I."""
        return int(self.neighbours.shape[0])

    def truncated(self, n_neighbours: int) -> ContentTable:
        """The same table keeping only the first `n_neighbours` columns (rows are sorted)."""
        if n_neighbours > self.neighbours.shape[1]:
            raise ValueError(
                f"table holds {self.neighbours.shape[1]} neighbours, asked for {n_neighbours}"
            )
        params = {**self.params, "n_neighbours": n_neighbours}
        return ContentTable(
            np.ascontiguousarray(self.neighbours[:, :n_neighbours]),
            np.ascontiguousarray(self.weights[:, :n_neighbours]),
            params,
        )


def title_tokens(title: str) -> list[str]:
    """Lower-cased word tokens of a title, without the trailing "(year)", "'s" and stop words.

    >>> title_tokens("Star Wars: Episode IV - A New Hope (1977)")
    ['star', 'wars', 'episode', 'iv', 'new', 'hope']
    """
    stripped = _POSSESSIVE.sub("", _TRAILING_YEAR.sub("", title).lower())
    stop = stop_words()
    return [t for t in _WORD.findall(stripped) if t not in stop]


def title_tfidf(titles: list[str]) -> sp.csr_matrix:
    """(I, V) float32 TF-IDF of `title_tokens`, rows L2-normalised (empty titles stay zero).

    IDF is smoothed as in scikit-learn: ``log((1 + I) / (1 + df)) + 1``.
    """
    vocab: dict[str, int] = {}
    indptr, indices = [0], []
    for title in titles:
        for token in title_tokens(title):
            indices.append(vocab.setdefault(token, len(vocab)))
        indptr.append(len(indices))
    data = np.ones(len(indices), dtype=np.float32)
    counts = sp.csr_matrix(
        (data, np.asarray(indices, np.int64), np.asarray(indptr, np.int64)),
        shape=(len(titles), len(vocab)),
    )
    counts.sum_duplicates()  # a repeated token counts twice
    df = np.bincount(counts.indices, minlength=len(vocab))
    idf = (np.log((1.0 + len(titles)) / (1.0 + df)) + 1.0).astype(np.float32)
    tfidf = sp.csr_matrix(counts @ sp.diags(idf), dtype=np.float32)
    norms = np.sqrt(np.asarray(tfidf.multiply(tfidf).sum(axis=1))[:, 0])
    inv = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0)
    return sp.csr_matrix(sp.diags(inv.astype(np.float32)) @ tfidf, dtype=np.float32)


def year_kernel(years: np.ndarray, scale: float) -> np.ndarray:
    """(I, K) float32 smooth year encoding, rows L2-normalised; unknown years (NaN) are zero."""
    known = np.isfinite(years)
    if not known.any():
        return np.zeros((len(years), 1), np.float32)
    low, high = np.min(years[known]) - YEAR_MARGIN, np.max(years[known]) + YEAR_MARGIN
    centres = np.arange(low, high + YEAR_STEP, YEAR_STEP)
    filled = np.where(known, years, 0.0)
    # Bumps of width scale / sqrt(2) make the normalised dot product ~ exp(-d^2 / (4 scale^2)).
    out = np.exp(-((filled[:, None] - centres[None, :]) ** 2) / (scale**2)) * known[:, None]
    out[out < KERNEL_FLOOR] = 0.0  # tiny tails would be float32 denormals, ~20x slower matmuls
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return (out / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def content_vectors(items: pd.DataFrame, weights: BlockWeights) -> tuple[np.ndarray, sp.csr_matrix]:
    """Unit content vectors of `items` (in their order), split in a dense and a sparse part.

    Returns:
        (dense (I, G + K) genres and year blocks, sparse (I, V) title block); the concatenation
        of the two has unit rows (or zero rows for a movie with no content at all).
    """
    genres = genre_matrix(items)
    g_norm = np.linalg.norm(genres, axis=1, keepdims=True)
    genres = genres / np.where(g_norm > 0, g_norm, 1.0)
    years = year_kernel(items["year"].to_numpy(np.float64), weights.year_scale)
    titles = title_tfidf(items["title"].astype(str).tolist())
    dense = np.hstack([weights.genres * genres, weights.year * years]).astype(np.float32)
    sparse = sp.csr_matrix(titles * np.float32(weights.title), dtype=np.float32)
    norms = np.sqrt((dense**2).sum(axis=1) + np.asarray(sparse.multiply(sparse).sum(axis=1))[:, 0])
    inv = np.where(norms > 0, 1.0 / np.where(norms > 0, norms, 1.0), 0.0).astype(np.float32)
    return dense * inv[:, None], sp.csr_matrix(sp.diags(inv) @ sparse, dtype=np.float32)


def build_content_neighbours(
    items: pd.DataFrame,
    item_counts: np.ndarray,
    n_neighbours: int,
    cold_threshold: int = 5,
    weights: BlockWeights | None = None,
) -> ContentTable:
    """Each movie's `n_neighbours` most content-similar cold movies.

    Args:
        items: the catalog (item_id, title, year, genres), in any order; rows of the result follow
            the sorted item ids.
        item_counts: (I,) training ratings per movie, in sorted item-id order.
        n_neighbours: neighbours kept per movie (fewer when fewer cold movies are similar at all).
        cold_threshold: a movie is cold, so it may be a neighbour, with fewer training ratings.
        weights: block weights and the year kernel's width.

    Returns:
        The table; a movie is never its own neighbour and only similarities of at least
        `MIN_SIMILARITY` are kept.

    Raises:
        ValueError: `item_counts` does not match the catalog, or `n_neighbours` < 1.
    """
    weights = weights or BlockWeights()
    items = items.sort_values("item_id").reset_index(drop=True)
    n_items = len(items)
    if item_counts.shape != (n_items,):
        raise ValueError(f"item_counts has shape {item_counts.shape}, catalog has {n_items} items")
    if n_neighbours < 1:
        raise ValueError(f"n_neighbours must be >= 1, got {n_neighbours}")
    dense, sparse = content_vectors(items, weights)
    cold = np.flatnonzero(item_counts < cold_threshold)
    n_cols = min(n_neighbours, len(cold))
    neighbours = np.full((n_items, n_neighbours), -1, np.int32)
    sims = np.zeros((n_items, n_neighbours), np.float32)
    if n_cols > 0:
        cold_dense_t = np.ascontiguousarray(dense[cold].T)  # (D, C)
        cold_sparse_t = sp.csc_matrix(sparse[cold].T)  # (V, C)
        cold_pos = np.full(n_items, -1, np.int64)
        cold_pos[cold] = np.arange(len(cold))
        chunk = max(1, CHUNK_CELLS // len(cold))
        for start in range(0, n_items, chunk):
            rows = np.arange(start, min(start + chunk, n_items))
            block = dense[rows] @ cold_dense_t  # (R, C)
            titles = sp.coo_matrix(sparse[rows] @ cold_sparse_t)
            block[titles.row, titles.col] += titles.data
            own = cold_pos[rows]
            block[np.flatnonzero(own >= 0), own[own >= 0]] = -np.inf  # never itself
            top = np.argpartition(-block, n_cols - 1, axis=1)[:, :n_cols]  # (R, n_cols)
            top_sims = np.take_along_axis(block, top, axis=1)
            order = np.argsort(-top_sims, axis=1, kind="stable")
            top = np.take_along_axis(top, order, axis=1)
            top_sims = np.take_along_axis(top_sims, order, axis=1)
            keep = top_sims >= MIN_SIMILARITY
            neighbours[rows, :n_cols] = np.where(keep, cold[top], -1)
            sims[rows, :n_cols] = np.where(keep, top_sims, 0.0)
    params = {
        **asdict(weights),
        "n_neighbours": n_neighbours,
        "cold_threshold": cold_threshold,
        "n_cold": len(cold),
        "title_vocabulary": sparse.shape[1],
    }
    return ContentTable(neighbours, sims, params)


class ContentSource:
    """Proposes the cold movies most content-similar to the user's latest ratings."""

    name = "content"

    def __init__(self, table: ContentTable, history: int) -> None:
        """Serve `table`, reading the user's last `history` rated rows."""
        if history < 1:
            raise ValueError(f"history must be >= 1, got {history}")
        self.table = table
        self.history = history
        n_items = table.n_items
        self._neighbours = pads_past_catalog(table.neighbours, n_items)

    def candidates(self, user: UserContext, k: int) -> SourceCandidates:
        """Cold movies by the summed neighbour weight of the user's recent rows, seen excluded.

        A user without recent rows gets no candidates.
        """
        recent = user.recent_rows[-self.history :]
        neighbours = self._neighbours[recent].ravel()  # (h * N,), pads = n_items
        weights = self.table.weights[recent].ravel()
        n_items = self.table.n_items
        seen = user.seen_rows
        if neighbours.size * DENSE_FACTOR >= n_items:
            # Accumulate over the catalog (weights are > 0: unreached rows stay at 0).
            return dense_top_k(neighbours, weights, n_items, np.asarray(seen, np.int64), k)
        valid = neighbours < n_items
        if not valid.any():
            return SourceCandidates(np.empty(0, np.int64), np.empty(0, np.float32))
        rows, inverse = np.unique(neighbours[valid], return_inverse=True)
        scores = np.bincount(inverse, weights=weights[valid], minlength=len(rows))  # (n,)
        at = np.minimum(np.searchsorted(seen, rows), max(len(seen) - 1, 0))
        seen_local = np.flatnonzero(seen[at] == rows) if len(seen) else np.empty(0, np.int64)
        best = top_k_unseen(scores, seen_local, k)
        return SourceCandidates(rows[best.rows], best.scores)
