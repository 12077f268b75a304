"""How the RecommendationService reaches its two stages, in either placement (RECSYS_STAGES).

Both adapters answer the pipeline's three calls: `retrieve` (the first stage's candidates, as a
`Retrieved`), `rank` (the second stage's `RankResponse` for them) and `ask` (an operational API of
one stage: info, health, drift).

- `InProcessStages` (`embedded`): the RetrieverService and RankerService instances live in this
  process; candidates pass from one to the other as numpy arrays, with no wire form at all.
- `RemoteStages` (`remote`): each stage is a `StageClient` (or, where BentoML composed a
  dependency in process, its instance) called through its API; candidates travel in the
  retriever's wire form (`models.sources.encode_sources`), which the ranker decodes.

The two give identical answers: float32 scores survive JSON exactly (their float64 repr).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from services.api_models import RankResponse, RetrieveResponse

if TYPE_CHECKING:
    from models.candidates import FusedCandidates
    from services.ranker import RankerService
    from services.retriever import RetrieverService


@dataclass(frozen=True)
class Retrieved:
    """What the first stage found for one request, in the form the second stage takes."""

    item_ids: list[int]  # fusion order
    cold_start: bool
    model_version: dict[str, str]
    candidates: FusedCandidates | RetrieveResponse  # in process | the wire form


async def call_stage(stage: Any, name: str, **kwargs: Any) -> Any:
    """Call a stage's API: awaited for remote stages and async APIs, returned directly else.

    Returns the answer as plain JSON-like data (a response model is dumped).
    """
    result = getattr(stage, name)(**kwargs)
    if inspect.isawaitable(result):
        result = await result
    return result.model_dump() if isinstance(result, BaseModel) else result


class InProcessStages:
    """The stages as instances in this process (`RECSYS_STAGES=embedded`)."""

    placement = "embedded"

    def __init__(self, retriever: RetrieverService, ranker: RankerService) -> None:
        self.retriever = retriever
        self.ranker = ranker

    async def retrieve(self, user_id: int, k: int, exclude_seen: bool) -> Retrieved:
        """The fused candidates, as arrays."""
        fused = self.retriever.fused_candidates(user_id, k, (), exclude_seen)
        return Retrieved(
            item_ids=fused.item_ids.tolist(),
            cold_start=fused.cold_start,
            model_version=self.retriever.model_version,
            candidates=fused,
        )

    async def rank(self, user_id: int, found: Retrieved, k: int, explain: bool) -> RankResponse:
        """The ranker's best `k` of `found`."""
        fused = found.candidates
        assert not isinstance(fused, RetrieveResponse)
        return self.ranker.rank_candidates(
            user_id,
            fused.item_ids,
            fused.two_tower_scores,
            k,
            explain,
            fused.source_ranks,
            fused.source_scores,
        )

    async def ask(self, stage: str, api: str, **kwargs: Any) -> dict[str, Any]:
        """An operational API (`info`, `health`, `drift_*`) of `stage` (retriever or ranker)."""
        result: dict[str, Any] = await call_stage(getattr(self, stage), api, **kwargs)
        return result


class RemoteStages:
    """The stages behind their APIs (`RECSYS_STAGES=remote`).

    Args:
        retriever: a `StageClient` for the RetrieverService (or its in-process instance).
        ranker: the same for the RankerService.
    """

    placement = "remote"

    def __init__(self, retriever: Any, ranker: Any) -> None:
        self.retriever = retriever
        self.ranker = ranker

    async def retrieve(self, user_id: int, k: int, exclude_seen: bool) -> Retrieved:
        """The retriever's answer in its wire form."""
        body = await call_stage(
            self.retriever,
            "retrieve",
            user_id=user_id,
            k=k,
            exclude_item_ids=[],
            exclude_seen=exclude_seen,
        )
        answer = RetrieveResponse.model_validate(body)
        return Retrieved(answer.item_ids, answer.cold_start, answer.model_version, answer)

    async def rank(self, user_id: int, found: Retrieved, k: int, explain: bool) -> RankResponse:
        """The ranker's best `k` of `found`, sent in the retriever's wire form."""
        wire = found.candidates
        assert isinstance(wire, RetrieveResponse)
        body = await call_stage(
            self.ranker,
            "rank",
            user_id=user_id,
            item_ids=wire.item_ids,
            retrieval_scores=wire.scores,
            k=k,
            explain=explain,
            sources=wire.sources or None,
            source_scores=wire.source_scores or None,
        )
        return RankResponse.model_validate(body)

    async def ask(self, stage: str, api: str, **kwargs: Any) -> dict[str, Any]:
        """An operational API (`info`, `health`, `drift_*`) of `stage` (retriever or ranker)."""
        result: dict[str, Any] = await call_stage(getattr(self, stage), api, **kwargs)
        return result


Stages = InProcessStages | RemoteStages
