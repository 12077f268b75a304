"""Response bodies of the hot API routes, as pydantic models.

Declaring them (instead of returning plain dicts) matters for speed: for a `dict` output BentoML
1.4 rebuilds the output's JSON schema on every response just to pick its media type, about a
sixth of a stage's request time (py-spy); a model's body is also encoded by pydantic-core.
"""

from __future__ import annotations

from pydantic import BaseModel


class RetrieveResponse(BaseModel):
    """RetrieverService.retrieve: fused candidates in fusion order.

    `scores` are two-tower scores (for every candidate); `sources[name]` lists the positions (in
    `item_ids`) a source proposed, in that source's rank order, and `source_scores[name]` their
    scores in that source (`models.sources.encode_sources`).
    """

    item_ids: list[int]
    scores: list[float]
    cold_start: bool
    model_version: dict[str, str]
    sources: dict[str, list[int]] = {}
    source_scores: dict[str, list[float]] = {}


class Contribution(BaseModel):
    """One feature's SHAP contribution to an item's score."""

    feature: str
    value: float


class RankedItem(BaseModel):
    """One ranked candidate; `contributions` and `sources` only with `explain=true`."""

    item_id: int
    score: float
    contributions: list[Contribution] | None = None
    sources: list[str] | None = None


class RankResponse(BaseModel):
    """RankerService.rank: the best k candidates, best first."""

    items: list[RankedItem]
    model_version: dict[str, str]
    timings_ms: dict[str, float]


class Recommendation(BaseModel):
    """One recommended movie; `reasons` and `sources` only with `explain=true`."""

    item_id: int
    title: str
    score: float
    rank: int
    reasons: list[Contribution] | None = None
    sources: list[str] | None = None
    retrieval_rank: int | None = None  # with explain: 1-based place in the candidate list


class RecommendResponse(BaseModel):
    """POST /recommend (DESIGN.md's HTTP API).

    `degraded` names the stages the answer had to do without (remote stages that failed or
    whose circuit is open): ``ranker``: the retrieval order; ``retriever``: the most popular
    movies the user has not rated. Empty for a full answer.
    """

    user_id: int
    recommendations: list[Recommendation]
    cold_start: bool
    model_version: dict[str, str]
    timings_ms: dict[str, float]
    degraded: list[str] = []
