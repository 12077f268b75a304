"""RecommendationService: the HTTP API of DESIGN.md, composing the retriever and ranker bentos.

Where the two stages run is one setting, ``RECSYS_STAGES`` (read when this module is imported):

- `embedded` (default): the service builds RetrieverService and RankerService instances in its
  own process and calls them directly: one process per worker, no hop. `bentoml serve` starts
  nothing else. The stages' models are declared on this service too, so its bento carries them.
- `remote`: `bentoml.depends()` wires the stages: under `bentoml serve` BentoML runs them as
  dependency processes; with RECSYS_RETRIEVER_URL / RECSYS_RANKER_URL set (Kubernetes) they are
  reached by URL, so each bento deploys and scales on its own.

Routes: POST /recommend and POST /events (BentoML APIs, validated by `RecommendRequest` and
`EventsRequest`), and the operational GET/POST routes (/health, /ready, /info, /drift/*) in a
small Starlette app mounted beside it.
Unknown request fields are rejected (400) rather than ignored, so a misspelt `exclude_seen`
cannot silently change behaviour.
"""

from __future__ import annotations

import gc
import logging
from typing import Any

import bentoml
from bentoml.models import BentoModel
from pydantic import BaseModel, ConfigDict, Field

from feature_store.config import redact_url
from models import artifacts
from services import auth, shared
from services.api_models import RecommendResponse
from services.auth import ApiKeyAuth
from services.events import (
    MAX_ID,
    EventIn,
    EventIngest,
    EventsAccepted,
    EventsRequest,
)
from services.online_quality import (
    MAX_RANK,
    OnlineQuality,
    model_label,
)
from services.openapi import OpenAPIDocument
from services.ops_routes import (
    MAX_BODY_BYTES,
    BodySizeLimit,
    JsonBodiesOnly,
    PlainErrorsAsJson,
    ops_app,
    quiet_rejections,
)
from services.pipeline import Catalog, RecommendationPipeline
from services.ranker import RankerService
from services.retriever import RetrieverService
from services.settings import get_settings
from services.stage_client import stage
from services.stages import InProcessStages, PopularFallback, RemoteStages, Stages

logger = logging.getLogger(__name__)

STAGES = get_settings().stages


class RecommendRequest(BaseModel):
    """Body of POST /recommend."""

    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: int = Field(
        ge=-MAX_ID - 1,
        le=MAX_ID,
        description="MovieLens user id (a 64-bit integer); unknown ids get a cold-start list.",
    )
    k: int = Field(10, ge=1, le=100, description="How many movies to return (1..100).")
    exclude_seen: bool = Field(True, description="Never return movies the user has rated.")
    explain: bool = Field(
        False, description="Add each movie's top three ranker reasons and the sources behind it."
    )


@bentoml.service(
    name="recommendation",
    # BentoML 1.4 keeps every request's timeout timer alive for `timeout` s: keep it short.
    traffic={"timeout": get_settings().request_timeout_s},
    workers=get_settings().workers,
)
@bentoml.asgi_app(ops_app, path="/")
class RecommendationService:
    """Retrieve ~100 candidates, rank them, answer with titles, scores, versions and timings."""

    if STAGES == "remote":
        retriever = bentoml.depends(RetrieverService, url=get_settings().retriever_url)
        ranker = bentoml.depends(RankerService, url=get_settings().ranker_url)
    snapshot_model = BentoModel(get_settings().artifacts.snapshot_tag)

    def __init__(self) -> None:
        settings = get_settings()
        self.settings = settings
        auth.gate()  # keys loaded (or "auth is off" said) at start; a bad keys file fails it
        self.snapshot_tag = str(self.snapshot_model.tag)
        snapshot = shared.snapshot(self.snapshot_tag)
        # "purpose": "deploy" for what `recsys train` stored (the backtest stores nothing).
        self.snapshot_labels = artifacts.get_model(self.snapshot_tag).info.labels
        self.feature_version = snapshot.version
        self.snapshot_metadata = snapshot.metadata
        self.ingest = EventIngest(settings, snapshot)
        # Settings gain an `online` section; until then its defaults.
        self.online = OnlineQuality(settings.online)
        self.stages: Stages
        if STAGES == "embedded":
            self.stages = InProcessStages(RetrieverService(), RankerService())
        else:
            self.stages = RemoteStages(
                stage(self, "retriever", settings.request_timeout_s),
                stage(self, "ranker", settings.request_timeout_s),
                settings.remote,
                PopularFallback(snapshot.history),
                # Below BentoML's own request timeout, which would answer first.
                ops_timeout_s=0.75 * settings.request_timeout_s,
            )
        self.pipeline = RecommendationPipeline(
            self.stages,
            Catalog.from_frame(snapshot.catalog),
            candidates=settings.retrieval.fused_max,
        )
        quiet_rejections()  # after BentoML configured logging in this worker
        self.ready = True
        gc.freeze()  # loaded objects live for the process: keep them out of GC passes
        logger.info(
            "recommendation service ready (stages %s, features %s)", STAGES, self.feature_version
        )

    def __is_ready__(self) -> bool:
        return self.ready

    @bentoml.api(input_spec=RecommendRequest, route="/recommend")
    async def recommend(
        self, user_id: int, k: int = 10, exclude_seen: bool = True, explain: bool = False
    ) -> RecommendResponse:
        """Top-k movies for a user (see DESIGN.md's HTTP API).

        A remote stage that fails is done without (`degraded` in the answer), never an error.
        """
        answer = await self.pipeline.recommend(user_id, k, exclude_seen, explain)
        top = [r.item_id for r in answer.recommendations[:MAX_RANK]]
        self.online.remember(user_id, top, answer.cold_start, model_label(answer.model_version))
        return answer

    @bentoml.api(input_spec=EventsRequest, route="/events")
    async def events(self, events: list[EventIn]) -> EventsAccepted:
        """Ratings given since training; the next /recommend of each user knows them.

        All-or-nothing: one bad event (unknown movie, rating out of 0.5..5, a timestamp in the
        future, a missing or mistyped field) rejects the call with 400 naming it.
        """
        accepted = self.ingest.accept(events)
        self.online.observe([(e.user_id, e.item_id) for e in events])  # did we recommend it?
        return EventsAccepted(accepted=accepted)

    def info(self) -> dict[str, Any]:
        """Model tags, feature version, dataset fingerprint and the configuration in force."""
        config = self.settings.model_dump(mode="json")
        config["redis"].pop("password", None)
        config["redis"]["url"] = redact_url(config["redis"]["url"])
        return {
            "service": "recommendation",
            "stages": self.stages.placement,
            "workers": self.settings.workers,
            "feature_snapshot": self.snapshot_tag,
            "purpose": self.snapshot_labels.get("purpose", "unlabelled"),
            "feature_version": self.feature_version,
            "known_until": self.snapshot_metadata.get("period_end"),
            "dataset": self.snapshot_metadata.get("dataset_format"),
            "dataset_fingerprint": self.snapshot_metadata.get("dataset_fingerprint"),
            "max_body_bytes": MAX_BODY_BYTES,
            "events": self.ingest.status(),
            "online_quality": self.online.figures(),
            "auth": auth.gate().status(),
            "config": config,
        }


# Outermost of ours: a request without a valid key costs no body read.
RecommendationService.add_asgi_middleware(ApiKeyAuth)
RecommendationService.add_asgi_middleware(
    # Below BentoML's request timeout (a 504 there), so a stalled upload is the client's 408.
    BodySizeLimit,
    max_bytes=MAX_BODY_BYTES,
    read_timeout_s=0.75 * get_settings().request_timeout_s,
)
RecommendationService.add_asgi_middleware(JsonBodiesOnly)
RecommendationService.add_asgi_middleware(PlainErrorsAsJson)
RecommendationService.add_asgi_middleware(OpenAPIDocument, service=RecommendationService)


def _declare_models_of(service: Any, stages: tuple[Any, ...]) -> None:
    """Add the models `stages` declare to `service`'s, once each (embedded placement).

    The stages are built in the service's process: BentoML then resolves their models for it,
    and a bento of the service alone carries every model it loads.
    """
    declared = {str(m.tag) for m in service.models}
    for stage_service in stages:
        for model in stage_service.models:
            if str(model.tag) not in declared:
                service.models.append(model)
                declared.add(str(model.tag))


if STAGES == "embedded":
    _declare_models_of(RecommendationService, (RetrieverService, RankerService))
