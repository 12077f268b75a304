"""The ranker: feature assembly, scoring, explanations, planted-signal gain and leakage."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from data.errors import ArtifactError
from data.features import build_snapshot
from data.schema import Dataset
from data.split import Split
from feature_store.base import FeatureRows
from feature_store.memory_store import MemoryFeatureStore
from models.baselines import PopularRecommender
from models.evaluation import evaluate_recommender
from models.ranker import FEATURE_NAMES, Ranker
from models.train_ranker import build_training_set


class _Reranked:
    """Popular candidates reordered by the ranker (a BatchRecommender for the protocol)."""

    def __init__(self, first: PopularRecommender, ranker: Ranker, store: MemoryFeatureStore):
        self.first, self.ranker, self.store = first, ranker, store

    def recommend(self, user_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        items, scores = self.first.recommend(user_ids, 100)
        out = np.full((len(user_ids), k), -1, dtype=np.int64)
        out_scores = np.zeros((len(user_ids), k), dtype=np.float32)
        for row, user_id in enumerate(user_ids):
            result = self.ranker.rank(int(user_id), items[row], scores[row], self.store, k=k)
            out[row, : len(result.item_ids)] = result.item_ids
            out_scores[row, : len(result.scores)] = result.scores
        return out, out_scores


def _first_user_rows(store: MemoryFeatureStore) -> tuple[int, np.ndarray, FeatureRows]:
    user_id = int(store.snapshot.user_ids[0])
    item_ids = store.snapshot.item_ids[:20]
    return user_id, item_ids, store.read(user_id, item_ids)


def test_feature_list_is_unique_and_sized_for_the_latency_budget() -> None:
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert 40 <= len(FEATURE_NAMES) <= 60


def test_features_copy_store_rows_and_compute_crosses(
    trained_ranker: tuple[Ranker, dict[str, float]], fit_store: MemoryFeatureStore
) -> None:
    ranker, _ = trained_ranker
    _, _, rows = _first_user_rows(fit_store)
    scores = np.linspace(2.0, 1.0, len(rows.items)).astype(np.float32)
    x = ranker.features(rows, scores)
    col = {name: j for j, name in enumerate(FEATURE_NAMES)}
    ucol = {name: j for j, name in enumerate(fit_store.user_columns)}
    icol = {name: j for j, name in enumerate(fit_store.item_columns)}
    assert x.shape == (len(rows.items), len(FEATURE_NAMES))
    assert np.all(x[:, col["user_count"]] == rows.user[ucol["user_count"]])
    np.testing.assert_array_equal(x[:, col["item_year"]], rows.items[:, icol["item_year"]])
    aff = rows.user[[j for name, j in ucol.items() if name.startswith("user_aff_")]]
    genres = rows.items[:, [j for name, j in icol.items() if name.startswith("item_genre_")]]
    np.testing.assert_allclose(x[:, col["genre_dot"]], genres @ aff, rtol=1e-5)
    np.testing.assert_array_equal(x[:, col["retrieval_rank"]], np.arange(len(rows.items)))
    np.testing.assert_allclose(x[:, col["retrieval_gap"]], 2.0 - scores, atol=1e-6)


def test_missing_retrieval_scores_are_nan_not_errors(
    trained_ranker: tuple[Ranker, dict[str, float]], fit_store: MemoryFeatureStore
) -> None:
    ranker, _ = trained_ranker
    user_id, item_ids, rows = _first_user_rows(fit_store)
    result = ranker.rank(user_id, item_ids, None, fit_store, k=5)
    assert len(result.item_ids) == 5
    assert np.all(np.isfinite(result.scores))
    assert result.features is not None
    missing = [FEATURE_NAMES.index(n) for n in ("retrieval_score", "retrieval_gap", "retrieval_z")]
    assert np.isnan(result.features[:, missing]).all()
    rank = FEATURE_NAMES.index("retrieval_rank")  # the candidates' order is still known
    np.testing.assert_array_equal(result.features[:, rank], np.arange(len(item_ids)))
    # XGBoost reads NaN as missing: scoring the same rows by hand gives the served scores.
    by_hand = np.sort(ranker.score(ranker.features(rows, None)))[::-1][:5]
    np.testing.assert_allclose(result.scores, by_hand, rtol=1e-6)


def test_rank_returns_best_k_of_the_candidates_in_order(
    trained_ranker: tuple[Ranker, dict[str, float]], fit_store: MemoryFeatureStore
) -> None:
    ranker, _ = trained_ranker
    user_id, item_ids, rows = _first_user_rows(fit_store)
    scores = np.linspace(1.0, 0.0, len(item_ids), dtype=np.float32)
    result = ranker.rank(user_id, item_ids, scores, fit_store, k=7)
    all_scores = ranker.score(ranker.features(rows, scores))
    assert set(result.item_ids) <= set(item_ids)
    assert np.all(np.diff(result.scores) <= 0)
    np.testing.assert_allclose(result.scores, np.sort(all_scores)[::-1][:7], rtol=1e-6)
    assert result.contributions is None


def test_contributions_plus_bias_sum_to_the_score(
    trained_ranker: tuple[Ranker, dict[str, float]], fit_store: MemoryFeatureStore
) -> None:
    ranker, _ = trained_ranker
    user_id, item_ids, rows = _first_user_rows(fit_store)
    scores = np.linspace(1.0, 0.0, len(item_ids), dtype=np.float32)
    x = ranker.features(rows, scores)
    contributions = ranker.contributions(x)  # (N, F + 1), bias last
    assert contributions.shape == (len(item_ids), len(FEATURE_NAMES) + 1)
    np.testing.assert_allclose(contributions.sum(axis=1), ranker.score(x), atol=1e-4)

    result = ranker.rank(user_id, item_ids, scores, fit_store, k=4, explain=True)
    assert result.contributions is not None
    assert [len(top) for top in result.contributions] == [3, 3, 3, 3]
    for top in result.contributions:
        assert all(name in FEATURE_NAMES for name, _ in top)
        magnitudes = [abs(value) for _, value in top]
        assert magnitudes == sorted(magnitudes, reverse=True)


def test_ranker_beats_retrieval_order_on_planted_signal(
    trained_ranker: tuple[Ranker, dict[str, float]],
    synth_dataset: Dataset,
    synth_split: Split,
) -> None:
    """Taste-blind popular candidates; the ranker must learn the planted genre clusters."""
    ranker, metrics = trained_ranker
    assert metrics["oof_ndcg@10_ranker"] > metrics["oof_ndcg@10_retrieval"]
    item_ids = synth_dataset.items["item_id"].to_numpy(np.int64)
    serving_first = PopularRecommender().fit(synth_split.train, item_ids)
    serving_store = MemoryFeatureStore(build_snapshot(synth_dataset, synth_split.train))
    two_stage = _Reranked(serving_first, ranker, serving_store)
    n = len(item_ids)
    before = evaluate_recommender(serving_first, synth_split.test, n)["ndcg@10"]
    after = evaluate_recommender(two_stage, synth_split.test, n)["ndcg@10"]
    assert after > before * 1.15


def test_labels_never_come_from_the_feature_window(
    fit_popular: PopularRecommender, fit_store: MemoryFeatureStore, synth_split: Split
) -> None:
    data = build_training_set(fit_popular, fit_store, synth_split.valid)
    positives = data.labels > 0
    assert positives.any()
    users, items = data.user_ids[positives], data.item_ids[positives]
    labelled = synth_split.valid.set_index(["user_id", "item_id"])["timestamp"]
    label_times = labelled.loc[list(zip(users, items, strict=True))]
    feature_end = synth_split.fit.groupby("user_id")["timestamp"].max()
    assert np.all(label_times.to_numpy() >= feature_end.loc[users].to_numpy())
    # No label is an item the features (or the first stage) already saw for that user.
    fit_pairs = set(zip(synth_split.fit["user_id"], synth_split.fit["item_id"], strict=True))
    assert not fit_pairs & set(zip(users, items, strict=True))


def test_changing_the_label_window_leaves_features_unchanged(
    synth_dataset: Dataset, fit_popular: PopularRecommender, synth_split: Split
) -> None:
    """Features come from the fit window only: rewriting valid changes labels, not features."""
    store = MemoryFeatureStore(build_snapshot(synth_dataset, synth_split.fit))
    original = build_training_set(fit_popular, store, synth_split.valid)
    rng = np.random.default_rng(0)
    altered_valid = synth_split.valid.assign(
        item_id=rng.permutation(synth_split.valid["item_id"].to_numpy()),
        rating=np.float32(1.0),
        timestamp=synth_split.valid["timestamp"] + 86_400,
    )
    interactions = pd.concat([synth_split.fit, altered_valid, synth_split.test])
    altered_dataset = dataclasses.replace(synth_dataset, interactions=interactions)
    altered_store = MemoryFeatureStore(build_snapshot(altered_dataset, synth_split.fit))
    altered = build_training_set(fit_popular, altered_store, altered_valid)
    assert altered_store.version == store.version
    np.testing.assert_array_equal(original.features, altered.features)
    np.testing.assert_array_equal(original.item_ids, altered.item_ids)
    assert not np.array_equal(original.labels, altered.labels)


def test_store_with_other_columns_is_refused(
    trained_ranker: tuple[Ranker, dict[str, float]], fit_store: MemoryFeatureStore
) -> None:
    ranker, _ = trained_ranker
    snapshot = fit_store.snapshot
    renamed = type(snapshot)(
        user_ids=snapshot.user_ids,
        user_matrix=snapshot.user_matrix,
        user_columns=(*snapshot.user_columns[:-1], "user_other"),
        item_ids=snapshot.item_ids,
        item_matrix=snapshot.item_matrix,
        item_columns=snapshot.item_columns,
        default_user=snapshot.default_user,
        default_item=snapshot.default_item,
        catalog=snapshot.catalog,
        history=snapshot.history,
    )
    with pytest.raises(ArtifactError, match="user_other"):
        ranker.check_store(MemoryFeatureStore(renamed))


def test_source_features_land_in_their_named_columns(
    trained_ranker: tuple[Ranker, dict[str, float]], fit_store: MemoryFeatureStore
) -> None:
    from models.sources import SOURCE_FEATURES, SOURCE_ORDER, source_features

    ranker, _ = trained_ranker
    _, _, rows = _first_user_rows(fit_store)
    n = len(rows.items)
    ranks = np.full((n, len(SOURCE_ORDER)), np.nan, dtype=np.float32)
    values = np.full_like(ranks, np.nan)
    ranks[:, 0], values[:, 0] = np.arange(n), np.linspace(1, 0, n)  # two-tower: everyone
    ranks[::2, 1], values[::2, 1] = np.arange((n + 1) // 2), 0.5  # item_knn: every other one
    x = ranker.features(rows, None, source_features(ranks, values))
    col = {name: j for j, name in enumerate(FEATURE_NAMES)}
    np.testing.assert_array_equal(x[:, col["src_two_tower_rank"]], np.arange(n))
    np.testing.assert_array_equal(x[::2, col["src_item_knn_rank"]], np.arange((n + 1) // 2))
    assert np.isnan(x[1::2, col["src_item_knn_rank"]]).all()
    assert np.isnan(x[:, col["src_item_knn_score"]][1::2]).all()
    assert (x[::2, col["src_item_knn_score"]] == 0.5).all()
    assert np.isnan(x[:, col["src_content_rank"]]).all()
    np.testing.assert_array_equal(x[:, col["n_sources"]], np.where(np.arange(n) % 2 == 0, 2, 1))
    without = ranker.features(rows, None)
    assert np.isnan(without[:, [col[name] for name in SOURCE_FEATURES]]).all()
