"""Configuration of the two stages at serving and index-build time."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class RetrievalSettings(BaseModel):
    """First stage: how many candidates and how the index searches."""

    model_config = ConfigDict(frozen=True)

    candidates: int = 100
    """Candidates the two-tower source proposes per request (its quota)."""
    quotas: dict[str, int] = {"item_knn": 100, "content": 20, "popular": 20, "trending": 20}
    """Candidates asked of each other source (`models.candidates`); 0 or absent switches it off.
    From the environment as JSON: RECSYS_RETRIEVAL__QUOTAS='{"item_knn": 100}'."""
    fused_max: int = 200
    """The fused candidate list's cap: what the ranker scores per request."""
    exact_max_items: int = 50_000
    """Catalogs up to this size use exact inner-product search; larger ones use HNSW."""
    min_index_recall: float = 0.95
    """Recall@100 against exact search an approximate index must reach at build time."""
    approximate_index: Literal["hnsw", "ivf"] = "hnsw"
    """Approximate index kind for catalogs above `exact_max_items`."""
    hnsw_m: int = Field(32, ge=4, le=128)
    """HNSW graph degree (efSearch is tuned at build time to reach `min_index_recall`)."""
    ivf_nlist: int = Field(0, ge=0)
    """IVF cells; 0 = about 4·sqrt(items) (nprobe is tuned at build time)."""

    def source_quotas(self) -> dict[str, int]:
        """Every source in force with its quota, the two-tower model first."""
        quotas = {"two_tower": self.candidates, **self.quotas}
        return {name: n for name, n in quotas.items() if n > 0}


class RankingSettings(BaseModel):
    """Second stage: the XGBoost ranker at serving time."""

    model_config = ConfigDict(frozen=True)

    nthread: int = 1
    """XGBoost threads per request; 1 avoids a 30x slowdown when the other core is busy."""
