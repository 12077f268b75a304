"""The request path without BentoML: retrieve -> rank -> response with titles and timings.

The two stages are whatever objects answer `retrieve(...)` and `rank(...)` with the
RetrieverService / RankerService payloads: the service instances themselves when BentoML composes
them in one process, or `services.stage_client.StageClient`s when they run in other processes.
Both are awaited through `call_stage`, so the pipeline is async either way.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from prometheus_client import Counter, Histogram
from pydantic import BaseModel

from services.api_models import Recommendation, RecommendResponse

REQUESTS = Counter("recsys_requests", "Recommendation requests by outcome", ["outcome"])
COLD_STARTS = Counter("recsys_cold_starts", "Requests for users unknown to the models")
STAGE_SECONDS = Histogram(
    "recsys_stage_seconds",
    "Latency of each request stage",
    ["stage"],
    buckets=(0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.5),
)


@dataclass(frozen=True)
class Catalog:
    """Movie titles by MovieLens id, for responses."""

    item_ids: np.ndarray  # (I,) int64, sorted
    titles: np.ndarray  # (I,) object

    @classmethod
    def from_frame(cls, catalog: pd.DataFrame) -> Catalog:
        """Build from a snapshot's catalog table (item_id, title, ...)."""
        ordered = catalog.sort_values("item_id")
        return cls(ordered["item_id"].to_numpy(np.int64), ordered["title"].to_numpy(object))

    def titles_of(self, item_ids: list[int]) -> list[str]:
        """Titles of `item_ids` ("" for ids missing from the catalog)."""
        ids = np.asarray(item_ids, dtype=np.int64)
        pos = np.minimum(np.searchsorted(self.item_ids, ids), len(self.item_ids) - 1)
        found = self.item_ids[pos] == ids
        return [str(t) if f else "" for t, f in zip(self.titles[pos], found, strict=True)]


async def call_stage(stage: Any, name: str, **kwargs: Any) -> Any:
    """Call a stage's API: awaited for remote stages and async APIs, returned directly else."""
    result = getattr(stage, name)(**kwargs)
    if inspect.isawaitable(result):
        result = await result
    # In process a stage returns its response model; over HTTP the same fields as a dict.
    return result.model_dump() if isinstance(result, BaseModel) else result


class RecommendationPipeline:
    """Composes a retriever and a ranker into the /recommend answer."""

    def __init__(
        self, retriever: Any, ranker: Any, catalog: Catalog, candidates: int = 200
    ) -> None:
        self.retriever = retriever
        self.ranker = ranker
        self.catalog = catalog
        self.candidates = candidates  # the fused list's cap

    async def recommend(
        self, user_id: int, k: int, exclude_seen: bool = True, explain: bool = False
    ) -> RecommendResponse:
        """Top-`k` movies for `user_id` with titles, scores, model versions and stage timings."""
        start = time.perf_counter()
        found = await call_stage(
            self.retriever,
            "retrieve",
            user_id=user_id,
            k=max(self.candidates, k),
            exclude_item_ids=[],
            exclude_seen=exclude_seen,
        )
        retrieved = time.perf_counter()
        items: list[dict[str, Any]] = []
        ranker_version: dict[str, Any] = {}
        features_ms = 0.0  # the ranker's own feature read + assembly time
        if found["item_ids"]:
            ranked = await call_stage(
                self.ranker,
                "rank",
                user_id=user_id,
                item_ids=found["item_ids"],
                retrieval_scores=found["scores"],
                k=k,
                explain=explain,
                sources=found.get("sources") or None,
                source_scores=found.get("source_scores") or None,
            )
            items = ranked["items"]
            ranker_version = ranked["model_version"]
            features_ms = float(ranked.get("timings_ms", {}).get("features", 0.0))
        done = time.perf_counter()

        titles = self.catalog.titles_of([it["item_id"] for it in items])
        recommendations = [
            Recommendation(
                item_id=it["item_id"],
                title=title,
                score=it["score"],
                rank=rank,
                reasons=it.get("contributions"),
                sources=it.get("sources"),
            )
            for rank, (it, title) in enumerate(zip(items, titles, strict=True), start=1)
        ]
        ranking_call = done - retrieved
        # Each stage's time includes its hop; "ranking" is the rank call minus its features.
        timings = {
            "retrieval": round((retrieved - start) * 1e3, 3),
            "features": round(features_ms, 3),
            "ranking": round(ranking_call * 1e3 - features_ms, 3),
            "total": round((time.perf_counter() - start) * 1e3, 3),
        }
        STAGE_SECONDS.labels("retrieval").observe(retrieved - start)
        STAGE_SECONDS.labels("ranking").observe(ranking_call)
        STAGE_SECONDS.labels("total").observe(timings["total"] / 1e3)
        if found["cold_start"]:
            COLD_STARTS.inc()
        REQUESTS.labels("ok").inc()
        return RecommendResponse(
            user_id=user_id,
            recommendations=recommendations,
            cold_start=bool(found["cold_start"]),
            model_version={**found.get("model_version", {}), **ranker_version},
            timings_ms=timings,
        )
