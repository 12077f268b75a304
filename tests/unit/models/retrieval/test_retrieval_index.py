"""FAISS index choice and the build-time recall check."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from models.config import RetrievalSettings
from models.retrieval import build_index, flat_index, index_recall, sample_queries


def test_small_catalog_gets_exact_search(clustered_embeddings: np.ndarray) -> None:
    small = clustered_embeddings[:500]
    index = build_index(small, RetrievalSettings())
    assert index.exact
    assert index.info.kind == "flat"
    assert index.info.recall_at_100 == 1.0
    scores, rows = index.search(small[:3], 10)
    assert rows[:, 0].tolist() == [0, 1, 2]  # each vector is its own nearest neighbour
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_large_catalog_gets_approximate_index_meeting_recall(
    clustered_embeddings: np.ndarray, kind: str
) -> None:
    settings = RetrievalSettings(exact_max_items=1_000, approximate_index=kind, hnsw_m=16)
    index = build_index(clustered_embeddings, settings, seed=1)
    assert index.info.kind == kind
    assert index.info.recall_at_100 >= settings.min_index_recall
    assert index.info.params["ef_search" if kind == "hnsw" else "nprobe"] > 0
    # The stored figure holds on fresh queries too.
    queries = sample_queries(clustered_embeddings, 200, seed=99)
    fresh = index_recall(index.index, flat_index(clustered_embeddings), queries)
    assert fresh >= settings.min_index_recall - 0.03


@pytest.mark.slow
def test_index_search_beyond_ef_search_returns_k_results(clustered_embeddings: np.ndarray) -> None:
    settings = RetrievalSettings(exact_max_items=1_000, hnsw_m=16)
    index = build_index(clustered_embeddings, settings)
    _, rows = index.search(clustered_embeddings[:2], 2_000)  # k > efSearch: raised per call
    assert rows.shape == (2, 2_000)
    assert np.all(rows >= 0)


def test_unreachable_recall_falls_back_to_exact() -> None:
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((3_000, 64)).astype(np.float32)  # no structure: hard for IVF
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    settings = RetrievalSettings(exact_max_items=100, approximate_index="ivf", ivf_nlist=64)
    strict = settings.model_copy(update={"min_index_recall": 1.01})
    index = build_index(noise, strict)
    assert index.exact
    assert isinstance(index.index, faiss.IndexFlatIP)
