"""How the RecommendationService reaches its two stages, in either placement (RECSYS_STAGES).

Both adapters answer the pipeline's three calls: `retrieve` (the first stage's candidates, as a
`Retrieved`), `rank` (the second stage's `RankResponse` for them) and `ask` (an operational API of
one stage: info, health, drift).

- `InProcessStages` (`embedded`): the RetrieverService and RankerService instances live in this
  process; candidates pass from one to the other as numpy arrays, with no wire form at all.
- `RemoteStages` (`remote`): each stage is a `StageClient` (or, where BentoML composed a
  dependency in process, its instance) called through its API; candidates travel in the
  retriever's wire form (`models.sources.encode_sources`), which the ranker decodes. Each call
  has a deadline and each stage a circuit breaker (the feature store's): a stage that fails or
  stalls is done without (`degraded`): without the ranker the answer keeps the retrieval order,
  without the retriever it is the most popular movies the user has not rated
  (`PopularFallback`). The breaker lets a trial call through now and then, so answers are full
  again soon after the stage is back.

The two give identical answers: float32 scores survive JSON exactly (their float64 repr).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import Counter, Gauge
from pydantic import BaseModel

from feature_store.circuit_breaker import CircuitBreaker, CircuitState
from services.api_models import RankedItem, RankResponse, RetrieveResponse
from services.stage_client import StageUnavailable

if TYPE_CHECKING:
    import pandas as pd

    from models.candidates import FusedCandidates
    from services.ranker import RankerService
    from services.retriever import RetrieverService
    from services.settings import RemoteStageSettings

logger = logging.getLogger(__name__)

DEGRADED = Counter(
    "recsys_degraded_answers", "Answers given without a stage, by the stage missing", ["stage"]
)
STAGE_CIRCUIT = Gauge(
    "recsys_stage_circuit_state",
    "Circuit of each remote stage: 0 closed, 1 half-open, 2 open",
    ["stage"],
    multiprocess_mode="max",
)
_CIRCUIT_VALUE = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}


@dataclass(frozen=True)
class Retrieved:
    """What the first stage found for one request, in the form the second stage takes."""

    item_ids: list[int]  # fusion order
    cold_start: bool
    model_version: dict[str, str]
    candidates: FusedCandidates | RetrieveResponse  # in process | the wire form
    degraded: tuple[str, ...] = ()  # stages done without (the retriever: a popularity list)


@dataclass(frozen=True)
class Ranked:
    """What the second stage answered for one request."""

    response: RankResponse
    degraded: tuple[str, ...] = ()  # ("ranker",): the retrieval order, ranker not asked


class PopularFallback:
    """The answer without a retriever: the most rated movies, the user's rated ones left out.

    Args:
        history: ``user_id``, ``item_id`` of the snapshot (what each user has rated).
    """

    def __init__(self, history: pd.DataFrame) -> None:
        users = history["user_id"].to_numpy(np.int64)
        items = history["item_id"].to_numpy(np.int64)
        ids, counts = np.unique(items, return_counts=True)
        order = np.lexsort((ids, -counts))
        self.item_ids, self.counts = ids[order], counts[order].astype(np.float32)
        by_user = np.lexsort((items, users))
        self._users, self._items = users[by_user], items[by_user]

    def top(self, user_id: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(item ids, rating counts) of the `k` most rated movies `user_id` has not rated."""
        lo, hi = np.searchsorted(self._users, [user_id, user_id + 1])
        seen = self._items[lo:hi]
        keep = ~np.isin(self.item_ids[: k + len(seen)], seen)
        head = slice(0, k + len(seen))
        return self.item_ids[head][keep][:k], self.counts[head][keep][:k]

    def retrieved(self, user_id: int, k: int) -> Retrieved:
        """The fallback as a first-stage answer marked degraded."""
        ids, counts = self.top(user_id, k)
        wire = RetrieveResponse(
            item_ids=ids.tolist(), scores=counts.tolist(), cold_start=False, model_version={}
        )
        return Retrieved(wire.item_ids, False, {}, wire, degraded=("retriever",))


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

    async def rank(self, user_id: int, found: Retrieved, k: int, explain: bool) -> Ranked:
        """The ranker's best `k` of `found`."""
        fused = found.candidates
        assert not isinstance(fused, RetrieveResponse)
        response = self.ranker.rank_candidates(
            user_id,
            fused.item_ids,
            fused.two_tower_scores,
            k,
            explain,
            fused.source_ranks,
            fused.source_scores,
        )
        return Ranked(response)

    async def ask(self, stage: str, api: str, **kwargs: Any) -> dict[str, Any]:
        """An operational API (`info`, `health`, `drift_*`) of `stage` (retriever or ranker)."""
        result: dict[str, Any] = await call_stage(getattr(self, stage), api, **kwargs)
        return result

    def circuits(self) -> dict[str, str]:
        """Circuit state per stage: none in process (a stage cannot be unreachable)."""
        return {}


class RemoteStages:
    """The stages behind their APIs (`RECSYS_STAGES=remote`), each call with a deadline.

    Args:
        retriever: a `StageClient` for the RetrieverService (or its in-process instance).
        ranker: the same for the RankerService.
        settings: deadline and circuit-breaker thresholds.
        fallback: the answer when the retriever cannot give one.
        ops_timeout_s: how long an operational call (info, health, drift) may take.
    """

    placement = "remote"

    def __init__(
        self,
        retriever: Any,
        ranker: Any,
        settings: RemoteStageSettings,
        fallback: PopularFallback,
        ops_timeout_s: float = 2.0,
    ) -> None:
        self.retriever = retriever
        self.ranker = ranker
        self.deadline_s = settings.deadline_s
        self.ops_timeout_s = ops_timeout_s
        self.fallback = fallback
        self.breakers = {
            name: CircuitBreaker(
                settings.failure_threshold,
                settings.reset_timeout_s,
                on_transition=_transition_hook(name),
            )
            for name in ("retriever", "ranker")
        }
        for name in self.breakers:
            STAGE_CIRCUIT.labels(name).set(0)

    async def _call(self, stage: str, api: str, **kwargs: Any) -> Any | None:
        """The stage's answer, or None when its circuit is open or the call failed in time."""
        breaker = self.breakers[stage]
        if not breaker.allow():
            return None
        try:
            body = await asyncio.wait_for(
                call_stage(getattr(self, stage), api, **kwargs), self.deadline_s
            )
        except (StageUnavailable, TimeoutError) as exc:
            breaker.record_failure()
            logger.warning("%s /%s failed, answering without it: %r", stage, api, exc)
            return None
        breaker.record_success()
        return body

    async def retrieve(self, user_id: int, k: int, exclude_seen: bool) -> Retrieved:
        """The retriever's answer in its wire form; the popularity fallback without it."""
        body = await self._call(
            "retriever",
            "retrieve",
            user_id=user_id,
            k=k,
            exclude_item_ids=[],
            exclude_seen=exclude_seen,
        )
        if body is None:
            DEGRADED.labels("retriever").inc()
            return self.fallback.retrieved(user_id, k)
        answer = RetrieveResponse.model_validate(body)
        return Retrieved(answer.item_ids, answer.cold_start, answer.model_version, answer)

    async def rank(self, user_id: int, found: Retrieved, k: int, explain: bool) -> Ranked:
        """The ranker's best `k` of `found` (sent in the retriever's wire form); without the
        ranker, the first `k` in retrieval order."""
        wire = found.candidates
        assert isinstance(wire, RetrieveResponse)
        body = await self._call(
            "ranker",
            "rank",
            user_id=user_id,
            item_ids=wire.item_ids,
            retrieval_scores=wire.scores,
            k=k,
            explain=explain,
            sources=wire.sources or None,
            source_scores=wire.source_scores or None,
        )
        if body is not None:
            return Ranked(RankResponse.model_validate(body))
        DEGRADED.labels("ranker").inc()
        response = RankResponse(items=retrieval_order(found, k), model_version={}, timings_ms={})
        return Ranked(response, ("ranker",))

    async def ask(self, stage: str, api: str, **kwargs: Any) -> dict[str, Any]:
        """An operational API (`info`, `health`, `drift_*`) of `stage` (retriever or ranker).

        Raises:
            StageUnavailable: the stage did not answer within `ops_timeout_s`.
        """
        try:
            result: dict[str, Any] = await asyncio.wait_for(
                call_stage(getattr(self, stage), api, **kwargs), self.ops_timeout_s
            )
        except TimeoutError as exc:
            raise StageUnavailable(f"{stage} /{api}: no answer in {self.ops_timeout_s} s") from exc
        return result

    def circuits(self) -> dict[str, str]:
        """Circuit state per stage: closed, half_open or open."""
        return {name: str(b.state) for name, b in self.breakers.items()}


def _transition_hook(stage: str) -> Any:
    def hook(old: CircuitState, new: CircuitState) -> None:
        STAGE_CIRCUIT.labels(stage).set(_CIRCUIT_VALUE[new])
        logger.warning("%s circuit %s -> %s", stage, old, new)

    return hook


Stages = InProcessStages | RemoteStages


def retrieval_order(found: Retrieved, k: int) -> list[RankedItem]:
    """The first `k` of a first-stage answer in its wire form, as the answer without a ranker."""
    wire = found.candidates
    assert isinstance(wire, RetrieveResponse)
    return [
        RankedItem(item_id=i, score=s)
        for i, s in zip(wire.item_ids[:k], wire.scores[:k], strict=True)
    ]
