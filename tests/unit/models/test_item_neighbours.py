"""The item-to-item neighbour source: its table against a dense reference, and its candidates."""

from __future__ import annotations

from functools import cache

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from data.split import temporal_split
from data.synth import generate
from models.baselines import EASE_MAX_ITEMS, EASERecommender, KnownItems, PopularRecommender
from models.evaluation import evaluate_recommender
from models.item_neighbours import (
    ItemNeighbourRecommender,
    ItemNeighbourSource,
    NeighbourTable,
    build_item_neighbours,
    tune_item_neighbours,
)
from models.sources import UserContext

N = 20


@cache
def _data() -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
    """Binary (U, I), twice the ratings (U, I), and each user's rated rows, oldest first."""
    data = generate(300, 200, 8000, seed=1)
    inter = data.interactions  # sorted by user and time
    item_ids = data.items["item_id"].to_numpy(np.int64)
    users = inter["user_id"].to_numpy() - 1
    cols = np.searchsorted(item_ids, inter["item_id"].to_numpy())
    binary = np.zeros((300, len(item_ids)), dtype=np.float32)
    binary[users, cols] = 1.0
    ratings = np.zeros_like(binary)
    ratings[users, cols] = inter["rating"].to_numpy() * 2  # whole numbers: sums are exact
    histories = tuple(np.split(cols, np.flatnonzero(np.diff(users)) + 1))
    return binary, ratings, histories


def _reference_similarity(x: np.ndarray, shrink: float) -> np.ndarray:
    """Dense (I, I) cosine with shrinkage and a zero diagonal, from a plain numpy product."""
    gram = x.T @ x
    norms = np.sqrt((x * x).sum(axis=0))
    denom = np.outer(norms, norms) + np.float32(shrink)
    sim = np.where(denom > 0, gram / np.where(denom > 0, denom, 1), 0).astype(np.float32)
    np.fill_diagonal(sim, 0.0)
    return sim


def _reference_table(sim: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Row by row: positive entries by weight, lower column first on ties, the first n."""
    n_items = sim.shape[0]
    neighbours = np.full((n_items, n), -1, dtype=np.int32)
    weights = np.zeros((n_items, n), dtype=np.float32)
    for i in range(n_items):
        order = np.lexsort((np.arange(n_items), -sim[i]))
        order = order[sim[i, order] > 0][:n]
        neighbours[i, : len(order)] = order
        weights[i, : len(order)] = sim[i, order]
    return neighbours, weights


def _dense(table: NeighbourTable) -> np.ndarray:
    """The table as a dense (I, I) weight matrix."""
    n_items = table.neighbours.shape[0]
    out = np.zeros((n_items, n_items), dtype=np.float64)
    rows = np.repeat(np.arange(n_items), table.n_neighbours)
    found = table.neighbours.ravel() >= 0
    out[rows[found], table.neighbours.ravel()[found]] = table.weights.ravel()[found]
    return out


@pytest.mark.parametrize("shrink", [0.0, 10.0, 100.0])
@pytest.mark.parametrize("weighting", ["binary", "ratings"])
def test_cosine_table_equals_dense_reference(shrink: float, weighting: str) -> None:
    binary, ratings, _ = _data()
    x = binary if weighting == "binary" else ratings
    table = build_item_neighbours(sp.csr_matrix(x), N, "cosine", shrink=shrink)
    neighbours, weights = _reference_table(_reference_similarity(x, shrink), N)
    np.testing.assert_array_equal(table.neighbours, neighbours)
    np.testing.assert_array_equal(table.weights, weights)
    assert table.neighbours.dtype == np.int32
    assert table.weights.dtype == np.float32


@pytest.mark.parametrize("chunk_rows", [1, 7, 64, 1000])
def test_chunk_size_does_not_change_the_table(chunk_rows: int) -> None:
    x = sp.csr_matrix(_data()[0])
    whole = build_item_neighbours(x, N, shrink=10.0)
    chunked = build_item_neighbours(x, N, shrink=10.0, chunk_rows=chunk_rows)
    np.testing.assert_array_equal(chunked.neighbours, whole.neighbours)
    np.testing.assert_array_equal(chunked.weights, whole.weights)


def test_first_columns_are_the_narrower_table() -> None:
    x = sp.csr_matrix(_data()[0])
    wide = build_item_neighbours(x, 3 * N, shrink=3.0)
    narrow = build_item_neighbours(x, N, shrink=3.0)
    np.testing.assert_array_equal(wide.truncated(N).neighbours, narrow.neighbours)
    np.testing.assert_array_equal(wide.truncated(N).weights, narrow.weights)


@pytest.mark.parametrize(
    "width",
    [
        0,  # an empty table
        N + 1,  # wider than what was built: the extra neighbours are unknown
    ],
)
def test_truncated_rejects_widths_outside_the_table(width: int) -> None:
    table = build_item_neighbours(sp.csr_matrix(_data()[0]), N)
    with pytest.raises(ValueError, match="neighbours"):
        table.truncated(width)


@pytest.mark.parametrize("method", ["cosine", "ease"])
def test_self_never_a_neighbour_and_rows_best_first(method: str) -> None:
    x = sp.csr_matrix(_data()[0])
    n_items = x.shape[1]
    table = build_item_neighbours(x, n_items + 5, method)  # wider than the catalog: pads
    assert not np.any(table.neighbours == np.arange(n_items)[:, None])
    pads = table.neighbours < 0
    assert pads[:, -5:].all()
    assert np.all(table.weights[pads] == 0)
    assert np.all(table.weights[~pads] > 0)
    assert np.all(np.diff(table.weights, axis=1) <= 0)


def test_ease_table_is_top_of_ease_weights() -> None:
    binary = _data()[0]
    table = build_item_neighbours(sp.csr_matrix(binary), N, "ease", lam=200.0)
    users, cols = np.nonzero(binary)
    frame = pd.DataFrame({"user_id": users, "item_id": cols})
    ease = EASERecommender(200.0).fit(frame, np.arange(binary.shape[1]))
    neighbours, weights = _reference_table(ease.weights, N)
    np.testing.assert_array_equal(table.neighbours, neighbours)
    np.testing.assert_array_equal(table.weights, weights)


def test_ease_refuses_catalogs_above_the_limit() -> None:
    too_many = sp.csr_matrix((3, EASE_MAX_ITEMS + 1), dtype=np.float32)
    with pytest.raises(ValueError, match="EASE_MAX_ITEMS"):
        build_item_neighbours(too_many, N, "ease")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "svd"}, "unknown neighbour method"),  # not a method
        ({"n_neighbours": 0}, "n_neighbours must be"),  # an empty table
        ({"shrink": -1.0}, "shrink must be"),  # would boost pairs with few co-raters
    ],
)
def test_build_rejects_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"n_neighbours": N, **kwargs}
    with pytest.raises(ValueError, match=message):
        build_item_neighbours(sp.csr_matrix(_data()[0]), **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("history", "decay"),
    [
        (0, 1.0),  # no rows would count
        (5, 0.0),  # every row but the last would weigh nothing
        (5, 1.5),  # older rows would outweigh recent ones
    ],
)
def test_source_rejects_bad_arguments(history: int, decay: float) -> None:
    table = build_item_neighbours(sp.csr_matrix(_data()[0]), N)
    with pytest.raises(ValueError, match="must be"):
        ItemNeighbourSource(table, history, decay)


@pytest.mark.parametrize(("history", "decay"), [(5, 1.0), (20, 0.9), (None, 1.0)])
@pytest.mark.parametrize("user", [0, 17, 123])
@pytest.mark.parametrize("dense_factor", [0, 10**9])  # sort the gathered rows / accumulate densely
def test_candidates_equal_brute_force_sum(
    history: int | None, decay: float, user: int, dense_factor: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    import models.item_neighbours

    monkeypatch.setattr(models.item_neighbours, "DENSE_FACTOR", dense_factor)
    binary = _data()[0]
    table = build_item_neighbours(sp.csr_matrix(binary), N, shrink=10.0)
    rated = _data()[2][user]
    seen = np.unique(rated)
    recent = rated if history is None else rated[-history:]
    factors = decay ** np.arange(len(recent) - 1, -1, -1.0)
    dense = _dense(table)
    expected = (dense[recent] * factors[:, None]).sum(axis=0)
    expected[seen] = 0.0
    source = ItemNeighbourSource(table, history, decay)
    context = UserContext(recent_rows=rated, seen_rows=seen)

    everything = source.candidates(context, binary.shape[1])
    np.testing.assert_array_equal(np.sort(everything.rows), np.flatnonzero(expected > 0))
    np.testing.assert_allclose(everything.scores, expected[everything.rows], rtol=1e-5)
    assert np.all(np.diff(everything.scores) <= 0)
    assert not np.isin(everything.rows, seen).any()

    top = source.candidates(context, 10)
    assert len(top.rows) == 10
    np.testing.assert_allclose(top.scores, np.sort(expected)[::-1][:10], rtol=1e-5)
    np.testing.assert_allclose(top.scores, expected[top.rows], rtol=1e-5)


def test_empty_history_gives_nothing() -> None:
    table = build_item_neighbours(sp.csr_matrix(_data()[0]), N)
    empty = UserContext(recent_rows=np.empty(0, np.int64), seen_rows=np.empty(0, np.int64))
    found = ItemNeighbourSource(table, 20).candidates(empty, 100)
    assert len(found.rows) == 0
    assert len(found.scores) == 0


def test_recommender_excludes_known_items_and_beats_popularity() -> None:
    data = generate(400, 300, 12_000, seed=3)
    split = temporal_split(data.interactions)
    item_ids = data.items["item_id"].to_numpy(np.int64)
    model = ItemNeighbourRecommender(n_neighbours=50, history=20).fit(split.train, item_ids)
    users = np.unique(split.test["user_id"].to_numpy())[:50]
    items, scores = model.recommend(np.append(users, 10_000), 100)  # plus an unknown user
    known = KnownItems(split.train, item_ids).rows(users).toarray() > 0
    for i in range(len(users)):
        recommended = items[i][items[i] >= 0]
        assert not known[i, np.searchsorted(item_ids, recommended)].any()
    assert np.all(items[-1] == -1)
    assert np.all(np.isneginf(scores[-1]))
    ours = evaluate_recommender(model, split.test, len(item_ids))
    popular = PopularRecommender().fit(split.train, item_ids)
    assert (
        ours["recall@100"] > evaluate_recommender(popular, split.test, len(item_ids))["recall@100"]
    )


def test_tune_picks_from_the_grid() -> None:
    data = generate(300, 200, 8000, seed=1)
    split = temporal_split(data.interactions)
    item_ids = data.items["item_id"].to_numpy(np.int64)
    params, metrics = tune_item_neighbours(
        split.fit, split.valid, item_ids, neighbours=(10, 30), histories=(5, None),
        shrinks=(0.0, 10.0), lambdas=(300.0,), decays=(1.0,),
    )  # fmt: skip
    assert params["method"] in {"cosine", "ease"}
    assert params["n_neighbours"] in {10, 30}
    assert params["history"] in {5, None}
    assert 0.0 < metrics["recall@100"] <= 1.0
