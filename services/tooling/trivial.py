"""TrivialService: the reference the served API is measured against (`recsys bench service`).

It answers the same POST /recommend body as RecommendationService with a fixed list, under the
same BentoML settings (short traffic timeout, one worker, `gc.freeze()` after start), so the
ratio of the two services' figures measured in one run shows what the models cost, whatever else
the shared machine is doing. It loads no model and needs no trained artifacts.
"""

from __future__ import annotations

import gc
from typing import Any

import bentoml
from pydantic import BaseModel, ConfigDict, Field

from services.settings import get_settings

FIXED_ITEMS = tuple(range(1, 101))


class TrivialRequest(BaseModel):
    """The POST /recommend body of RecommendationService."""

    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: int = Field(description="Any user id.")
    k: int = Field(10, ge=1, le=100, description="How many items to return (1..100).")
    exclude_seen: bool = Field(True, description="Accepted and ignored.")


@bentoml.service(
    name="trivial",
    # Same as the real services: BentoML 1.4 keeps every request's timer for `timeout` s.
    traffic={"timeout": get_settings().request_timeout_s},
    workers=1,
)
class TrivialService:
    """Returns the first `k` of a fixed item list: BentoML's own cost per request."""

    def __init__(self) -> None:
        gc.freeze()  # as the real services do once their models are loaded

    @bentoml.api(input_spec=TrivialRequest, route="/recommend")
    async def recommend(
        self, user_id: int, k: int = 10, exclude_seen: bool = True
    ) -> dict[str, Any]:
        """A response shaped like RecommendationService's, without any model."""
        items = [
            {"item_id": item, "title": "", "score": 1.0 / rank, "rank": rank}
            for rank, item in enumerate(FIXED_ITEMS[:k], start=1)
        ]
        return {"user_id": user_id, "recommendations": items, "cold_start": False}
