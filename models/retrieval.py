"""FAISS inner-product index over item embeddings, chosen and tuned automatically.

Catalogs up to `RetrievalSettings.exact_max_items` items get exact search (`IndexFlatIP`). Larger
ones get HNSW (or IVF-Flat): the index is built, then its search-time parameter (efSearch or
nprobe) is raised step by step until recall@100 against exact search, measured on sampled
queries, reaches `min_index_recall`. The measured recall and the chosen parameter are stored with
the index (`IndexInfo`). If no setting reaches the target the index falls back to exact search.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np

from models.config import RetrievalSettings

logger = logging.getLogger(__name__)

RECALL_DEPTH = 100
HNSW_EF_SEARCH = (64, 128, 192, 256, 384, 512, 768, 1024)
IVF_NPROBE = (8, 16, 32, 64, 96, 128, 192, 256, 384, 512)
HNSW_EF_CONSTRUCTION = 64
RECALL_QUERIES = 500


@dataclass(frozen=True)
class IndexInfo:
    """How an index was built and how well it searches."""

    kind: str  # "flat", "hnsw" or "ivf"
    n_items: int
    dim: int
    recall_at_100: float  # against exact search on sampled queries (1.0 for flat)
    build_seconds: float
    params: dict[str, int] = field(default_factory=dict)  # M, ef_search, nlist, nprobe

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> IndexInfo:
        """Inverse of `to_dict`."""
        return cls(**values)


class ItemIndex:
    """A FAISS index plus its `IndexInfo`; rows are catalog positions."""

    def __init__(self, index: faiss.Index, info: IndexInfo) -> None:
        self.index = index
        self.info = info
        self._apply_params()

    def _apply_params(self) -> None:
        if self.info.kind == "hnsw":
            self.index.hnsw.efSearch = self.info.params["ef_search"]
        elif self.info.kind == "ivf":
            self.index.nprobe = self.info.params["nprobe"]

    @property
    def exact(self) -> bool:
        """Whether search is exhaustive."""
        return self.info.kind == "flat"

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores (Q, k) float32, rows (Q, k) int64; -1 where fewer were found)."""
        k = min(k, self.info.n_items)
        if self.info.kind == "hnsw" and k > self.index.hnsw.efSearch:
            params = faiss.SearchParametersHNSW(efSearch=k)
            return self.index.search(queries, k, params=params)  # type: ignore[no-any-return]
        return self.index.search(queries, k)  # type: ignore[no-any-return]

    def serialize(self) -> np.ndarray:
        """The index as bytes (uint8 array), as `faiss.write_index` would write it."""
        return faiss.serialize_index(self.index)  # type: ignore[no-any-return]

    def write(self, path: str) -> None:
        """Write the FAISS index (the info is stored by the caller)."""
        faiss.write_index(self.index, path)

    @classmethod
    def read(cls, path: str, info: IndexInfo) -> ItemIndex:
        """Read an index written by `write`."""
        return cls(faiss.read_index(path), info)


def flat_index(embeddings: np.ndarray) -> faiss.IndexFlatIP:
    """Exact inner-product index over `embeddings` (N, D)."""
    index = faiss.IndexFlatIP(embeddings.shape[1])
    index.add(np.ascontiguousarray(embeddings, dtype=np.float32))
    return index


def index_recall(
    index: faiss.Index, exact: faiss.Index, queries: np.ndarray, k: int = RECALL_DEPTH
) -> float:
    """Mean recall@k of `index` against `exact` on `queries`."""
    _, truth = exact.search(queries, k)
    _, found = index.search(queries, k)
    hits = sum(len(np.intersect1d(t[t >= 0], f[f >= 0])) for t, f in zip(truth, found, strict=True))
    return hits / max(int((truth >= 0).sum()), 1)


def sample_queries(embeddings: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Queries near the data: sampled item embeddings plus noise, re-normalised."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(embeddings), size=min(n, len(embeddings)), replace=False)
    queries = embeddings[rows] + 0.5 * rng.standard_normal((len(rows), embeddings.shape[1])) / (
        np.sqrt(embeddings.shape[1])
    )
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return np.ascontiguousarray(queries, dtype=np.float32)


def build_index(
    embeddings: np.ndarray,
    settings: RetrievalSettings,
    queries: np.ndarray | None = None,
    kind: str | None = None,
    seed: int = 0,
) -> ItemIndex:
    """Build the search index for `embeddings` (N, D) float32.

    Args:
        embeddings: item embeddings, one row per catalog position.
        settings: exact-search limit, target recall and approximate index kind.
        queries: (Q, D) sample queries for the recall check; default: perturbed item embeddings.
        kind: force "flat", "hnsw" or "ivf" instead of the automatic choice.
        seed: for query sampling and IVF training.

    Returns:
        The index with its measured recall@100 against exact search.
    """
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    n, dim = embeddings.shape
    chosen = kind or ("flat" if n <= settings.exact_max_items else settings.approximate_index)
    start = time.perf_counter()
    exact = flat_index(embeddings)
    if chosen == "flat":
        info = IndexInfo("flat", n, dim, 1.0, time.perf_counter() - start)
        return ItemIndex(exact, info)
    if queries is None:
        queries = sample_queries(embeddings, RECALL_QUERIES, seed)
    if chosen == "hnsw":
        index = faiss.IndexHNSWFlat(dim, settings.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.add(embeddings)
        name, values, params = "ef_search", HNSW_EF_SEARCH, {"M": settings.hnsw_m}
    elif chosen == "ivf":
        nlist = settings.ivf_nlist or int(min(max(4 * np.sqrt(n), 16), n // 39))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        train = embeddings[rng.choice(n, size=min(n, 64 * nlist), replace=False)]
        index.train(train)
        index.add(embeddings)
        name, values, params = (
            "nprobe",
            tuple(v for v in IVF_NPROBE if v <= nlist),
            {"nlist": nlist},
        )
    else:
        raise ValueError(f"unknown index kind {chosen!r}")
    recall = 0.0
    for value in values:
        setattr(index.hnsw if chosen == "hnsw" else index, "efSearch" if chosen == "hnsw" else name,
                value)  # fmt: skip
        recall = index_recall(index, exact, queries)
        logger.info("%s %s=%d: recall@%d %.4f", chosen, name, value, RECALL_DEPTH, recall)
        if recall >= settings.min_index_recall:
            info = IndexInfo(
                chosen, n, dim, recall, time.perf_counter() - start, {**params, name: value}
            )
            return ItemIndex(index, info)
    logger.warning(
        "%s index reached recall@%d %.3f < %.3f: falling back to exact search",
        chosen, RECALL_DEPTH, recall, settings.min_index_recall,
    )  # fmt: skip
    return ItemIndex(exact, IndexInfo("flat", n, dim, 1.0, time.perf_counter() - start))
