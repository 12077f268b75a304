"""RetrieverService: the first stage as its own BentoML service (bentos/retriever/bentofile.yaml).

A thin shell: it declares the `two-tower` and `feature-snapshot` models (tags from Settings, so a
bento freezes exact versions), loads the retriever with the snapshot's user histories and
delegates to `models.retriever.Retriever`. Each request also reads the user's events since the
snapshot (POST /events) from the feature store: Redis in redis mode, else the event log.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Sequence
from typing import Annotated, Any

import bentoml
import numpy as np
from bentoml.models import BentoModel
from prometheus_client import Counter
from pydantic import Field

from models import artifacts
from models.candidates import (
    CandidateGenerator,
    FusedCandidates,
    kinds_for,
    sources_from_models,
)
from models.sources import SOURCE_ORDER, encode_sources
from services import shared
from services.api_models import RetrieveResponse
from services.ops_routes import quiet_rejections
from services.settings import DEPENDENCY_CONNECTION, get_settings

logger = logging.getLogger(__name__)

CANDIDATES = Counter(
    "recsys_candidates", "Fused candidates proposed by each source (one item, many sources)",
    ["source"],
)  # fmt: skip
SOURCE_KINDS = kinds_for(get_settings().retrieval.source_quotas())

MAX_EXCLUDED = 10_000


@bentoml.service(
    name="retriever",
    # BentoML 1.4 keeps a timer per request for `timeout` seconds: keep it short (DESIGN.md).
    traffic={"timeout": get_settings().request_timeout_s},
    # Callers reach it through bentoml.depends(): avoid connection renewals under load.
    runner_connection=DEPENDENCY_CONNECTION,
    # Every call arrives through the RecommendationService, whose access log has it already.
    logging={"access": {"enabled": False}},
    # Its spans cost ~10% of a stage's CPU (py-spy); the entry service's span covers the call.
    tracing={"excluded_urls": ["/retrieve"]},
    workers=1,
)
class RetrieverService:
    """Fused candidates: the two-tower model and its FAISS index, plus the other sources."""

    two_tower_model = BentoModel(get_settings().artifacts.two_tower_tag)
    snapshot_model = BentoModel(get_settings().artifacts.snapshot_tag)
    # One stored model per other source in force (a switched-off source is not even declared,
    # so a bento carries exactly the models it serves).
    if "item_knn" in SOURCE_KINDS:
        item_knn_model = BentoModel(get_settings().artifacts.item_knn_tag)
    if "content" in SOURCE_KINDS:
        content_model = BentoModel(get_settings().artifacts.content_tag)
    if "popularity" in SOURCE_KINDS:
        popularity_model = BentoModel(get_settings().artifacts.popularity_tag)

    def __init__(self) -> None:
        settings = get_settings()
        snapshot = shared.snapshot(str(self.snapshot_model.tag))
        tag = str(self.two_tower_model.tag)
        self.retriever = artifacts.load_two_tower(tag, snapshot.history)
        self.source_models = {kind: getattr(self, f"{kind}_model") for kind in SOURCE_KINDS}
        stored = {kind: artifacts.load_source(str(m.tag)) for kind, m in self.source_models.items()}
        quotas = settings.retrieval.source_quotas()
        self.generator = CandidateGenerator(
            self.retriever, sources_from_models(stored), quotas, settings.retrieval.fused_max
        )
        self.store = shared.feature_store(settings, snapshot)
        self.model_version = {
            "two_tower": str(artifacts.get_model(tag).tag),
            "feature_version": snapshot.version,
            "index": self.retriever.parts.index.info.kind,
            **{f"source_{kind}": str(m.tag) for kind, m in self.source_models.items()},
        }
        self._per_source = {name: CANDIDATES.labels(name) for name in SOURCE_ORDER}
        quiet_rejections()  # one line, no traceback, per rejected request
        self._ready = True
        # Loaded objects live for the process: keep them out of every GC pass (DESIGN.md traps).
        gc.freeze()
        logger.info("retriever service ready: %s", self.model_version)

    def __is_ready__(self) -> bool:
        return self._ready

    def fused_candidates(
        self,
        user_id: int,
        k: int = 200,
        exclude_item_ids: Sequence[int] = (),
        exclude_seen: bool = True,
    ) -> FusedCandidates:
        """Fused candidates for `user_id` (what `retrieve` answers, before its wire form).

        The RecommendationService calls this directly when the stages run in its process.
        """
        live = self.store.user_events(user_id)
        fused = self.generator.generate(user_id, exclude_item_ids, exclude_seen, live=live, limit=k)
        proposed = (~np.isnan(fused.source_ranks)).sum(axis=0)
        for name, count in zip(SOURCE_ORDER, proposed.tolist(), strict=True):
            if count:
                self._per_source[name].inc(count)
        return fused

    @bentoml.api
    async def retrieve(
        self,
        user_id: int,
        k: Annotated[int, Field(ge=1, le=1000)] = 200,
        exclude_item_ids: Annotated[list[int], Field(max_length=MAX_EXCLUDED)] = [],  # noqa: B006
        exclude_seen: bool = True,
    ) -> RetrieveResponse:
        """Fused candidates for `user_id`, in fusion order, with each source's proposals.

        Args:
            user_id: MovieLens user id; unknown users get a cold-start (popularity) query.
            k: at most this many candidates (1..1000; the fused cap applies too).
            exclude_item_ids: item ids never to return.
            exclude_seen: drop the items the user has rated.
        """
        fused = self.fused_candidates(user_id, k, exclude_item_ids, exclude_seen)
        positions, values = encode_sources(fused.source_ranks, fused.source_scores)
        return RetrieveResponse(
            item_ids=fused.item_ids.tolist(),
            scores=fused.two_tower_scores.tolist(),
            cold_start=fused.cold_start,
            model_version=self.model_version,
            sources=positions,
            source_scores=values,
        )

    @bentoml.api
    def info(self) -> dict[str, Any]:
        """The retriever's model tag, index and training metadata."""
        model = artifacts.get_model(str(self.two_tower_model.tag))
        return {
            "model": str(model.tag),
            "feature_version": self.model_version["feature_version"],
            "index": self.model_version["index"],
            "sources": self.generator.quotas,
            "fused_max": self.generator.fused_max,
            "labels": model.info.labels,
            "metadata": model.info.metadata,
        }
