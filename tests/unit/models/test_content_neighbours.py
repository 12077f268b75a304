"""Content neighbours: tokenisation, the chunked table against a dense reference, the source."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.metrics.pairwise import cosine_similarity

import models.content_neighbours as content
from data.features import genre_matrix
from data.movielens import load_movielens
from models.content_neighbours import (
    BlockWeights,
    ContentSource,
    ContentTable,
    build_content_neighbours,
    title_tokens,
    year_kernel,
)
from models.sources import UserContext

# ML-100K ids checked in u.item: two Star Trek films (Action|Adventure|Sci-Fi) and unrelated ones.
WRATH_OF_KHAN, SEARCH_FOR_SPOCK = 228, 229
GODFATHER, TOY_STORY = 127, 1
STAR_WARS, RETURN_OF_THE_JEDI = 50, 181


@cache
def ml100k_items(directory: Path) -> pd.DataFrame:
    """The ML-100K catalog sorted by item id (row = item id - 1)."""
    items = load_movielens(directory).items.sort_values("item_id").reset_index(drop=True)
    assert (items["item_id"].to_numpy() == np.arange(1, len(items) + 1)).all()
    return items


def user(recent: list[int], seen: list[int] | None = None) -> UserContext:
    """A user context over catalog rows (seen defaults to the recent rows)."""
    seen_rows = np.unique(np.asarray(recent if seen is None else seen, np.int64))
    return UserContext(np.asarray(recent, np.int64), seen_rows)


@pytest.mark.parametrize(
    ("title", "tokens"),
    [
        # trailing year, colon, dash and the stop words "the", "of" go
        ("Star Trek: The Wrath of Khan - II (1982)", ["star", "trek", "wrath", "khan", "ii"]),
        # only the trailing parenthesis is a year; the alternative title stays
        ("Seven (Se7en) (1995)", ["seven", "se7en"]),
        # MovieLens' moved article and a comma
        ("Shawshank Redemption, The (1994)", ["shawshank", "redemption"]),
        # digits are words (sequels, titles that are years); "'s" goes
        ("2001: A Space Odyssey (1968)", ["2001", "space", "odyssey"]),
        ("Monty Python's Life of Brian (1979)", ["monty", "python", "life", "brian"]),
        # a year range and trailing spaces
        ("Band of Brothers (2001-2001) ", ["band", "brothers"]),
        # no year at all
        ("Die Hard 2", ["die", "hard", "2"]),
    ],
)  # fmt: skip
def test_title_tokens_drop_year_and_punctuation(title: str, tokens: list[str]) -> None:
    assert title_tokens(title) == tokens


def reference_similarity(items: pd.DataFrame, weights: BlockWeights) -> np.ndarray:
    """Dense (I, I) cosine from per-block cosines, with scikit-learn's TF-IDF for titles."""
    blocks = [
        (weights.genres, genre_matrix(items)),
        (weights.year, year_kernel(items["year"].to_numpy(np.float64), weights.year_scale)),
        (
            weights.title,
            TfidfVectorizer(tokenizer=title_tokens, lowercase=False, token_pattern=None)
            .fit_transform(items["title"].tolist())
            .toarray(),
        ),
    ]
    numerator = np.zeros((len(items), len(items)))
    squared_norm = np.zeros(len(items))
    for weight, block in blocks:
        present = np.linalg.norm(block, axis=1) > 0
        numerator += weight**2 * cosine_similarity(block)
        squared_norm += weight**2 * present
    norm = np.sqrt(squared_norm)
    return numerator / np.outer(norm, norm)


def test_chunked_table_matches_dense_cosine(
    ml100k_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = ml100k_items(ml100k_dir).iloc[:300].reset_index(drop=True)
    counts = np.random.default_rng(0).integers(0, 10, len(items))
    weights, n = BlockWeights(genres=1.0, year=0.7, title=1.3, year_scale=4.0), 25
    monkeypatch.setattr(content, "CHUNK_CELLS", 1_000)  # many chunks of a few rows
    table = build_content_neighbours(items, counts, n, cold_threshold=5, weights=weights)

    reference = reference_similarity(items, weights)
    cold = counts < 5
    assert table.neighbours.shape == table.weights.shape == (len(items), n)
    for row in range(len(items)):
        candidates = reference[row, cold & (np.arange(len(items)) != row)]
        expected = np.sort(candidates[candidates >= content.MIN_SIMILARITY])[::-1][:n]
        listed = table.neighbours[row] >= 0
        np.testing.assert_allclose(table.weights[row, listed], expected, atol=1e-5)
        # ties may be broken either way; every listed neighbour has its reference similarity
        np.testing.assert_allclose(
            table.weights[row, listed], reference[row, table.neighbours[row, listed]], atol=1e-5
        )
        assert (table.weights[row, ~listed] == 0).all()


def test_neighbours_are_cold_and_never_the_movie_itself(ml100k_dir: Path) -> None:
    items = ml100k_items(ml100k_dir)
    counts = np.random.default_rng(1).integers(0, 20, len(items))
    table = build_content_neighbours(items, counts, 50, cold_threshold=5)
    rows, cols = np.nonzero(table.neighbours >= 0)
    neighbours = table.neighbours[rows, cols]
    assert len(neighbours) > 0.9 * table.neighbours.size
    assert (counts[neighbours] < 5).all()
    assert (neighbours != rows).all()
    assert (np.diff(table.weights, axis=1) <= 0).all()  # best first


def test_movie_with_no_rating_is_proposed(ml100k_dir: Path) -> None:
    items = ml100k_items(ml100k_dir)
    counts = np.full(len(items), 100)
    counts[RETURN_OF_THE_JEDI - 1] = 0  # only one cold movie in the whole catalog
    source = ContentSource(build_content_neighbours(items, counts, 10), history=5)
    found = source.candidates(user([STAR_WARS - 1]), k=10)
    assert found.rows.tolist() == [RETURN_OF_THE_JEDI - 1]
    assert found.scores[0] > 0


def test_seen_rows_are_excluded(ml100k_dir: Path) -> None:
    items = ml100k_items(ml100k_dir)
    table = build_content_neighbours(items, np.zeros(len(items), np.int64), 20)
    source = ContentSource(table, history=5)
    recent = [WRATH_OF_KHAN - 1]
    everything = source.candidates(user(recent), k=20).rows
    seen = [*recent, *everything[:3].tolist()]
    found = source.candidates(user(recent, seen), k=20)
    assert not np.isin(found.rows, seen).any()
    assert found.rows[:5].tolist() == everything[3:8].tolist()


def test_only_the_last_history_rows_count(ml100k_dir: Path) -> None:
    items = ml100k_items(ml100k_dir)
    table = build_content_neighbours(items, np.zeros(len(items), np.int64), 20)
    source = ContentSource(table, history=1)
    older, latest = TOY_STORY - 1, WRATH_OF_KHAN - 1
    seen = [older, latest]
    assert np.array_equal(
        source.candidates(user([older, latest], seen), k=10).rows,
        source.candidates(user([latest], seen), k=10).rows,
    )


def test_empty_history_gives_no_candidates() -> None:
    table = ContentTable(np.zeros((4, 2), np.int32), np.ones((4, 2), np.float32), {})
    found = ContentSource(table, history=10).candidates(user([]), k=10)
    assert len(found.rows) == len(found.scores) == 0


def test_shared_title_words_and_genres_score_higher(ml100k_dir: Path) -> None:
    items = ml100k_items(ml100k_dir)
    table = build_content_neighbours(items, np.zeros(len(items), np.int64), len(items) - 1)
    source = ContentSource(table, history=1)
    found = source.candidates(user([WRATH_OF_KHAN - 1]), k=len(items))
    score = dict(zip(found.rows.tolist(), found.scores.tolist(), strict=True))
    spock = score[SEARCH_FOR_SPOCK - 1]
    assert spock > score.get(GODFATHER - 1, 0.0)
    assert spock > score.get(TOY_STORY - 1, 0.0)
    assert spock > np.quantile(found.scores, 0.99)


@pytest.mark.parametrize(
    ("counts", "n_neighbours", "message"),
    [
        (np.zeros(3), 5, "item_counts has shape"),  # counts of another catalog
        (None, 0, "n_neighbours must be >= 1"),  # nothing to keep
    ],
)
def test_bad_build_arguments_raise(
    ml100k_dir: Path, counts: np.ndarray | None, n_neighbours: int, message: str
) -> None:
    items = ml100k_items(ml100k_dir).iloc[:20]
    item_counts = np.zeros(len(items)) if counts is None else counts
    with pytest.raises(ValueError, match=message):
        build_content_neighbours(items, item_counts, n_neighbours)


def test_history_must_be_positive() -> None:
    table = ContentTable(np.zeros((1, 1), np.int32), np.zeros((1, 1), np.float32), {})
    with pytest.raises(ValueError, match="history must be >= 1"):
        ContentSource(table, history=0)


@pytest.mark.parametrize("recent", [[WRATH_OF_KHAN - 1], [TOY_STORY - 1, 99, 180, 49]])
def test_dense_and_sorted_accumulation_agree(
    ml100k_dir: Path, recent: list[int], monkeypatch: pytest.MonkeyPatch
) -> None:
    items = ml100k_items(ml100k_dir)
    table = build_content_neighbours(items, np.zeros(len(items), np.int64), 20)
    source = ContentSource(table, history=5)
    found = {}
    for factor in (0, 10**9):  # sort the gathered rows / accumulate over the whole catalog
        monkeypatch.setattr(content, "DENSE_FACTOR", factor)
        got = source.candidates(user(recent, [recent[0]]), k=len(items))
        found[factor] = dict(zip(got.rows.tolist(), got.scores.tolist(), strict=True))
    assert found[0] == found[10**9]
    assert len(found[0]) > 10
