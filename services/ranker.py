"""RankerService: the second stage as its own BentoML service (bentos/ranker/bentofile.yaml).

A thin shell: it declares the `ranker` and `feature-snapshot` models (tags from Settings, so a
bento freezes exact versions), builds the feature store from Settings (embedded parquet store, or
Redis behind a circuit breaker with the embedded store as fallback) and delegates to
`models.ranker.Ranker`.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from typing import Annotated, Any

import bentoml
import numpy as np
from bentoml.exceptions import InvalidArgument
from bentoml.models import BentoModel
from pydantic import Field

from models import artifacts
from models.sources import SOURCE_ORDER, decode_sources, source_features
from monitoring.served import ServedFeatureMonitor
from services import shared
from services.api_models import Contribution, RankedItem, RankResponse
from services.ops_routes import quiet_rejections
from services.settings import DEPENDENCY_CONNECTION, get_settings

logger = logging.getLogger(__name__)

MAX_CANDIDATES = 1000


@bentoml.service(
    name="ranker",
    # BentoML 1.4 keeps a timer per request for `timeout` seconds: keep it short (DESIGN.md).
    traffic={"timeout": get_settings().request_timeout_s},
    # Callers reach it through bentoml.depends(): avoid connection renewals under load.
    runner_connection=DEPENDENCY_CONNECTION,
    # Every call arrives through the RecommendationService, whose access log has it already.
    logging={"access": {"enabled": False}},
    # Its spans cost ~10% of a stage's CPU (py-spy); the entry service's span covers the call.
    tracing={"excluded_urls": ["/rank"]},
    workers=1,
)
class RankerService:
    """Re-scores first-stage candidates with the XGBoost ranker."""

    ranker_model = BentoModel(get_settings().artifacts.ranker_tag)
    snapshot_model = BentoModel(get_settings().artifacts.snapshot_tag)
    drift_model = BentoModel(get_settings().artifacts.drift_reference_tag)

    def __init__(self) -> None:
        settings = get_settings()
        self.ranker = artifacts.load_ranker(str(self.ranker_model.tag), settings.ranking)
        snapshot = shared.snapshot(str(self.snapshot_model.tag))
        self.store = shared.feature_store(settings, snapshot)
        self.ranker.check_store(self.store)
        self.model_version = {
            "ranker": str(artifacts.get_model(str(self.ranker_model.tag)).tag),
            "feature_version": self.store.version,
        }
        drift_tag = str(self.drift_model.tag)
        self.monitor = ServedFeatureMonitor(
            artifacts.load_drift_baseline(drift_tag), settings.drift, reference_tag=drift_tag
        )
        quiet_rejections()  # one line, no traceback, per rejected request
        self._ready = True
        # Loaded objects live for the process: keep them out of every GC pass (DESIGN.md traps).
        gc.freeze()
        logger.info("ranker service ready: %s", self.model_version)

    def __is_ready__(self) -> bool:
        return self._ready

    def rank_candidates(
        self,
        user_id: int,
        item_ids: np.ndarray,
        retrieval_scores: np.ndarray | None,
        k: int = 10,
        explain: bool = False,
        source_ranks: np.ndarray | None = None,
        source_scores: np.ndarray | None = None,
    ) -> RankResponse:
        """Order `item_ids` for `user_id` (what `rank` answers, from arrays).

        The RecommendationService calls this directly when the stages run in its process.

        Args:
            user_id: MovieLens user id; unknown users get default features.
            item_ids: (N,) int64 candidates in fusion order.
            retrieval_scores: (N,) float32 two-tower scores, or None.
            k: how many items to return.
            explain: add each item's top three feature contributions and its sources.
            source_ranks: (N, S) rank of each candidate in each source (NaN = not proposed).
            source_scores: (N, S) its score there.
        """
        features = None
        if source_ranks is not None and source_scores is not None:
            features = source_features(source_ranks, source_scores)
        result = self.ranker.rank(
            user_id, item_ids, retrieval_scores, self.store, k, explain, sources=features
        )
        if result.features is not None:
            self.monitor.observe(result.features, result.all_scores)
        explained = result.contributions or [None] * len(result.item_ids)
        proposed: list[list[str] | None] = [None] * len(result.item_ids)
        if explain and source_ranks is not None and result.positions is not None:
            hit = ~np.isnan(source_ranks[result.positions])
            proposed = [[SOURCE_ORDER[j] for j in np.flatnonzero(row)] for row in hit]
        items = [
            RankedItem(
                item_id=int(i),
                score=float(s),
                contributions=None
                if top is None
                else [Contribution(feature=f, value=v) for f, v in top],
                sources=names,
            )
            for i, s, top, names in zip(
                result.item_ids, result.scores, explained, proposed, strict=True
            )
        ]
        timings = {name: round(ms, 3) for name, ms in (result.timings_ms or {}).items()}
        return RankResponse(items=items, model_version=self.model_version, timings_ms=timings)

    @bentoml.api
    async def rank(
        self,
        user_id: int,
        item_ids: Annotated[list[int], Field(min_length=1, max_length=MAX_CANDIDATES)],
        retrieval_scores: list[float] | None = None,
        k: Annotated[int, Field(ge=1, le=100)] = 10,
        explain: bool = False,
        sources: dict[str, list[int]] | None = None,
        source_scores: dict[str, list[float]] | None = None,
    ) -> RankResponse:
        """Order `item_ids` for `user_id` and return the best `k`.

        Args:
            user_id: MovieLens user id; unknown users get default features.
            item_ids: candidates in fusion order.
            retrieval_scores: two-tower scores aligned with `item_ids` (optional).
            k: how many items to return (1..100).
            explain: add each item's top three feature contributions and its sources.
            sources: per candidate source, the positions in `item_ids` it proposed, in its
                rank order (the retriever's answer); optional.
            source_scores: per source, the scores of those proposals.
        """
        if retrieval_scores is not None and len(retrieval_scores) != len(item_ids):
            raise InvalidArgument(
                f"retrieval_scores has {len(retrieval_scores)} values for {len(item_ids)} item_ids"
            )
        ranks = values = None
        if sources:
            try:
                ranks, values = decode_sources(len(item_ids), sources, source_scores or {})
            except ValueError as exc:
                raise InvalidArgument(str(exc)) from exc
        return self.rank_candidates(
            user_id,
            np.asarray(item_ids, dtype=np.int64),
            None if retrieval_scores is None else np.asarray(retrieval_scores, np.float32),
            k,
            explain,
            ranks,
            values,
        )

    @bentoml.api
    def health(self) -> dict[str, Any]:
        """Feature-store state: mode, which backend answers, circuit-breaker state."""
        return {"feature_store": self.store.status()}

    @bentoml.api
    def info(self) -> dict[str, Any]:
        """The ranker's model tag, features and training metadata."""
        model = artifacts.get_model(str(self.ranker_model.tag))
        return {
            "model": str(model.tag),
            "feature_version": self.store.version,
            "features": list(self.ranker.feature_names),
            "drift_reference": str(self.drift_model.tag),
            "labels": model.info.labels,
            "metadata": model.info.metadata,
        }

    @bentoml.api
    def drift_status(self) -> dict[str, Any]:
        """The in-process monitor: per-feature PSI/KL against the training baseline."""
        return self.monitor.status()

    @bentoml.api
    async def drift_check(self) -> dict[str, Any]:
        """Start the Evidently comparison over the logged window; its summary if done quickly.

        The job runs in the background: when it takes longer than about half the request
        timeout the answer is `{"status": "running"}` and GET /drift/report has the result.
        """
        wait_s = get_settings().request_timeout_s / 2
        return await asyncio.to_thread(self.monitor.start_check, wait_s)

    @bentoml.api
    def drift_report(self, format: str = "json") -> dict[str, Any]:
        """The latest drift report (`format` json or html)."""
        return self.monitor.latest_report(format)

    @bentoml.api
    def drift_reports(self) -> dict[str, Any]:
        """The kept drift reports, newest first: time, status, drifted features, evidence."""
        return self.monitor.reports()
