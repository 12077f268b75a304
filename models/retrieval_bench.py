"""`recsys bench retrieval`: in-process latency of the first stage and FAISS index figures.

Two cases:

- **catalog**: a `Retriever` at ML-1M size (3,706 items, 6,040 users with ~165 ratings each,
  generated), or the stored `two-tower` model with the stored snapshot's histories. Timed: whole
  `retrieve(user, k=100)` calls of known users (lookup, FAISS search, seen-item filter).
- **large**: a synthetic catalog of clustered unit vectors (1,000,000 x 64 by default), indexed
  as `build_index` decides (HNSW or IVF past `exact_max_items`). Reported: build time including
  the recall tuning, index size, recall@100 against exact search on fresh queries, and the
  latency of one query's search for k=100 plus 200 seen items, then the filter.

The towers' weights do not change the cost of a call, so the generated retriever has random ones.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from models.candidates import CandidateGenerator
from models.config import RetrievalSettings
from models.retrieval import build_index, flat_index, index_recall, sample_queries
from models.retriever import Retriever, RetrieverParts
from models.two_tower import GENRE_COLUMNS, TwoTowerConfig, TwoTowerModel, item_inputs

logger = logging.getLogger(__name__)

ML1M_USERS, ML1M_ITEMS, ML1M_RATINGS = 6_040, 3_706, 1_000_209
SEEN_IN_LARGE = 200


@dataclass(frozen=True)
class RetrievalBench:
    """Figures of one benchmark case."""

    case: str
    items: int
    index_kind: str
    index_params: dict[str, int]
    calls: int
    p50_us: float
    p99_us: float
    recall_at_100: float
    build_seconds: float
    index_mb: float


def _percentiles(times: list[float]) -> tuple[float, float]:
    arr = np.asarray(times) * 1e6
    return float(np.percentile(arr, 50)), float(np.percentile(arr, 99))


def synthetic_retriever(
    n_users: int, n_items: int, n_ratings: int, settings: RetrievalSettings, seed: int = 0
) -> Retriever:
    """A retriever with random weights over a generated catalog and histories."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    config = TwoTowerConfig()
    model = TwoTowerModel(n_users, n_items, config).eval()
    item_ids = np.arange(1, n_items + 1, dtype=np.int64)
    columns = ("item_year", *GENRE_COLUMNS)
    matrix = np.zeros((n_items, len(columns)), dtype=np.float32)
    matrix[:, 0] = rng.integers(1930, 2001, n_items)
    matrix[:, 1:] = rng.random((n_items, len(GENRE_COLUMNS))) < 0.15
    counts = rng.zipf(1.5, n_items).astype(np.float64)
    inputs = item_inputs(matrix, columns, counts, config)
    embeddings = model.item_embeddings(inputs)
    user_ids = np.arange(1, n_users + 1, dtype=np.int64)
    parts = RetrieverParts(
        model=model,
        config=config,
        item_ids=item_ids,
        inputs=inputs,
        item_embeddings=embeddings,
        index=build_index(embeddings, settings, seed=seed),
        popularity=counts.astype(np.float32),
        user_ids=user_ids,
        demo_user_ids=user_ids,
        demo_codes=np.stack([rng.integers(0, s, n_users) for s in (8, 3, 22, 11)], axis=1),
    )
    weights = 1.0 / np.arange(1, n_items + 1) ** 0.9  # MovieLens-like popularity, rank order
    weights = weights[np.argsort(np.argsort(-counts, kind="stable"))] / weights.sum()
    history = pd.DataFrame(
        {
            "user_id": rng.integers(1, n_users + 1, n_ratings),
            "item_id": rng.choice(item_ids, size=n_ratings, p=weights),
            "timestamp": rng.integers(0, 10**9, n_ratings),
        }
    ).drop_duplicates(["user_id", "item_id"])
    return Retriever(parts, history)


def bench_catalog(retriever: Retriever, calls: int, case: str, seed: int = 0) -> RetrievalBench:
    """Time single `retrieve(user, k=100)` calls of random known users."""
    rng = np.random.default_rng(seed)
    users = rng.choice(retriever.parts.user_ids, size=calls)
    for user_id in users[:100]:  # warm-up
        retriever.retrieve(int(user_id), k=100)
    times = []
    for user_id in users:
        start = time.perf_counter()
        retriever.retrieve(int(user_id), k=100)
        times.append(time.perf_counter() - start)
    p50, p99 = _percentiles(times)
    info = retriever.parts.index.info
    size = retriever.parts.index.serialize().nbytes / 2**20
    return RetrievalBench(case, info.n_items, info.kind, info.params, calls, p50, p99,
                          info.recall_at_100, info.build_seconds, size)  # fmt: skip


def bench_fused(
    generator: CandidateGenerator, calls: int, case: str, seed: int = 0
) -> RetrievalBench:
    """Time `generate(user)` of random known users: every source in force, fused."""
    retriever = generator.retriever
    rng = np.random.default_rng(seed)
    users = rng.choice(retriever.parts.user_ids, size=calls)
    for user_id in users[:100]:  # warm-up
        generator.generate(int(user_id))
    times = []
    for user_id in users:
        start = time.perf_counter()
        generator.generate(int(user_id))
        times.append(time.perf_counter() - start)
    p50, p99 = _percentiles(times)
    info = retriever.parts.index.info
    params = {"sources": ",".join(generator.names), "fused_max": generator.fused_max}
    return RetrievalBench(case, info.n_items, info.kind, params, calls, p50, p99,
                          info.recall_at_100, info.build_seconds, 0.0)  # fmt: skip


def clustered_catalog(n_items: int, dim: int, seed: int = 0, clusters: int = 1_000) -> np.ndarray:
    """(n_items, dim) float32 unit vectors drawn around `clusters` random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    out = np.empty((n_items, dim), dtype=np.float32)
    step = 100_000
    for s in range(0, n_items, step):
        n = min(step, n_items - s)
        block = centres[rng.integers(0, clusters, n)]
        block += 0.7 * rng.standard_normal((n, dim)).astype(np.float32)
        out[s : s + n] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def bench_large(
    n_items: int, dim: int, settings: RetrievalSettings, calls: int, seed: int = 0
) -> RetrievalBench:
    """Build the index of a synthetic catalog, check its recall, time single filtered searches."""
    embeddings = clustered_catalog(n_items, dim, seed)
    index = build_index(embeddings, settings, seed=seed)
    queries = sample_queries(embeddings, calls, seed + 1)
    recall = index_recall(index.index, flat_index(embeddings), queries[:500])
    rng = np.random.default_rng(seed)
    times = []
    for i, query in enumerate(queries):
        seen = np.sort(rng.choice(n_items, SEEN_IN_LARGE, replace=False))
        start = time.perf_counter()
        scores, rows = index.search(query[None, :], 100 + SEEN_IN_LARGE)
        at = np.minimum(np.searchsorted(seen, rows[0]), len(seen) - 1)
        keep = (seen[at] != rows[0]) & (rows[0] >= 0)
        _ = rows[0][keep][:100], scores[0][keep][:100]
        if i >= 20:  # warm-up
            times.append(time.perf_counter() - start)
    p50, p99 = _percentiles(times)
    info = index.info
    return RetrievalBench(f"synthetic {n_items:,} items", n_items, info.kind, info.params,
                          len(times), p50, p99, recall, info.build_seconds,
                          index.serialize().nbytes / 2**20)  # fmt: skip


def bench_reference(calls: int, seed: int = 0) -> RetrievalBench:
    """The machine's own timing noise: one 3,706 x 64 mat-vec + top-100, timed like a call.

    Its p99 shows what preemption by other processes adds on this machine, whatever the code.
    """
    rng = np.random.default_rng(seed)
    matrix = rng.standard_normal((ML1M_ITEMS, 64)).astype(np.float32)
    query = rng.standard_normal(64).astype(np.float32)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        np.argpartition(-(matrix @ query), 99)[:100]
        times.append(time.perf_counter() - start)
    p50, p99 = _percentiles(times)
    return RetrievalBench("reference numpy mat-vec", ML1M_ITEMS, "-", {}, calls, p50, p99,
                          1.0, 0.0, 0.0)  # fmt: skip


def bench_retrieval(
    settings: RetrievalSettings,
    calls: int = 5_000,
    large_items: int = 1_000_000,
    dim: int = 64,
    model_tag: str | None = None,
    snapshot_tag: str | None = None,
    source_tags: dict[str, str] | None = None,
) -> list[RetrievalBench]:
    """Run both cases (the large one is skipped when `large_items` is 0); with stored models,
    also the fused candidates of every source in force (`source_tags`: kind -> tag)."""
    fused: RetrievalBench | None = None
    if model_tag and snapshot_tag:
        from models.artifacts import load_snapshot, load_source, load_two_tower
        from models.candidates import kinds_for, sources_from_models

        retriever = load_two_tower(model_tag, load_snapshot(snapshot_tag).history)
        case = f"stored {model_tag}"
        quotas = settings.source_quotas()
        stored = {kind: load_source((source_tags or {})[kind]) for kind in kinds_for(quotas)}
        generator = CandidateGenerator(
            retriever, sources_from_models(stored), quotas, settings.fused_max
        )
        fused = bench_fused(generator, calls, f"{case}, fused sources")
    else:
        retriever = synthetic_retriever(ML1M_USERS, ML1M_ITEMS, ML1M_RATINGS, settings)
        case = "ML-1M size (generated)"
    rows = [bench_reference(calls), bench_catalog(retriever, calls, case)]
    if fused is not None:
        rows.append(fused)
    if large_items:
        rows.append(bench_large(large_items, dim, settings, min(calls, 2_000)))
    return rows
