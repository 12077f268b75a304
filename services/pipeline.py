"""The request path without BentoML: retrieve -> rank -> response with titles and timings.

The two stages are reached through `services.stages`: in this process (`InProcessStages`,
candidates as arrays) or behind their APIs (`RemoteStages`, candidates in their wire form), as
RECSYS_STAGES says. The pipeline is the same either way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from prometheus_client import Counter, Histogram

from services.api_models import RankedItem, Recommendation, RecommendResponse
from services.stages import retrieval_order

if TYPE_CHECKING:
    import pandas as pd

    from services.stages import Stages

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


class RecommendationPipeline:
    """Composes the retriever and the ranker into the /recommend answer."""

    def __init__(self, stages: Stages, catalog: Catalog, candidates: int = 200) -> None:
        self.stages = stages
        self.catalog = catalog
        self.candidates = candidates  # the fused list's cap

    async def recommend(
        self, user_id: int, k: int, exclude_seen: bool = True, explain: bool = False
    ) -> RecommendResponse:
        """Top-`k` movies for `user_id` with titles, scores, model versions and stage timings."""
        start = time.perf_counter()
        found = await self.stages.retrieve(user_id, max(self.candidates, k), exclude_seen)
        retrieved = time.perf_counter()
        items: list[RankedItem] = []
        ranker_version: dict[str, str] = {}
        features_ms = 0.0  # the ranker's own feature read + assembly time
        degraded = list(found.degraded)
        if found.degraded:  # the popularity fallback: its order is the answer
            items = retrieval_order(found, k)
        elif found.item_ids:
            ranked = await self.stages.rank(user_id, found, k, explain)
            items = ranked.response.items
            ranker_version = ranked.response.model_version
            features_ms = float(ranked.response.timings_ms.get("features", 0.0))
            degraded += ranked.degraded
        done = time.perf_counter()

        titles = self.catalog.titles_of([it.item_id for it in items])
        before: dict[int, int] = {}  # with explain: each movie's place before ranking
        if explain:
            before = {int(item): place for place, item in enumerate(found.item_ids, start=1)}
        recommendations = [
            Recommendation(
                item_id=it.item_id,
                title=title,
                score=it.score,
                rank=rank,
                reasons=it.contributions,
                sources=it.sources,
                retrieval_rank=before.get(it.item_id),
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
        if found.cold_start:
            COLD_STARTS.inc()
        REQUESTS.labels("ok").inc()
        return RecommendResponse(
            user_id=user_id,
            recommendations=recommendations,
            cold_start=found.cold_start,
            model_version={**found.model_version, **ranker_version},
            timings_ms=timings,
            degraded=degraded,
        )
