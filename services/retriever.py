"""RetrieverService: the first stage as its own BentoML service (bentos/retriever/bentofile.yaml).

A thin shell: it declares the `two-tower` and `feature-snapshot` models (tags from Settings, so a
bento freezes exact versions), loads the retriever with the snapshot's user histories and
delegates to `models.retriever.Retriever`. Each request also reads the user's events since the
snapshot (POST /events) from the feature store: Redis in redis mode, else the event log.
"""

from __future__ import annotations

import gc
import logging
from typing import Annotated, Any

import bentoml
from bentoml.models import BentoModel
from pydantic import Field

from feature_store.resilient import build_feature_store
from models import artifacts
from services.api_models import RetrieveResponse
from services.settings import DEPENDENCY_CONNECTION, get_settings

logger = logging.getLogger(__name__)

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
    """Top-k candidates from the two-tower model and its FAISS index."""

    two_tower_model = BentoModel(get_settings().artifacts.two_tower_tag)
    snapshot_model = BentoModel(get_settings().artifacts.snapshot_tag)

    def __init__(self) -> None:
        settings = get_settings()
        snapshot = artifacts.load_snapshot(str(self.snapshot_model.tag))
        tag = str(self.two_tower_model.tag)
        self.retriever = artifacts.load_two_tower(tag, snapshot.history)
        self.store = build_feature_store(
            settings.feature_store_mode, settings.redis, snapshot, settings.events
        )
        self.model_version = {
            "two_tower": str(artifacts.get_model(tag).tag),
            "feature_version": snapshot.version,
            "index": self.retriever.parts.index.info.kind,
        }
        self._ready = True
        # Loaded objects live for the process: keep them out of every GC pass (DESIGN.md traps).
        gc.freeze()
        logger.info("retriever service ready: %s", self.model_version)

    def __is_ready__(self) -> bool:
        return self._ready

    @bentoml.api
    async def retrieve(
        self,
        user_id: int,
        k: Annotated[int, Field(ge=1, le=1000)] = 100,
        exclude_item_ids: Annotated[list[int], Field(max_length=MAX_EXCLUDED)] = [],  # noqa: B006
        exclude_seen: bool = True,
    ) -> RetrieveResponse:
        """Candidate item ids and scores for `user_id`, best first.

        Args:
            user_id: MovieLens user id; unknown users get a cold-start (popularity) query.
            k: how many candidates (1..1000).
            exclude_item_ids: item ids never to return.
            exclude_seen: drop the items the user has rated.
        """
        live = self.store.user_events(user_id)
        result = self.retriever.retrieve(user_id, k, exclude_item_ids, exclude_seen, live=live)
        return RetrieveResponse(
            item_ids=result.item_ids.tolist(),
            scores=result.scores.tolist(),
            cold_start=result.cold_start,
            model_version=self.model_version,
        )

    @bentoml.api
    def info(self) -> dict[str, Any]:
        """The retriever's model tag, index and training metadata."""
        model = artifacts.get_model(str(self.two_tower_model.tag))
        return {
            "model": str(model.tag),
            "feature_version": self.model_version["feature_version"],
            "index": self.model_version["index"],
            "labels": model.info.labels,
            "metadata": model.info.metadata,
        }
