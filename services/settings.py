"""The one Settings object, read from the environment.

Names kept from the original service: ``FEATURE_STORE_MODE``, ``REDIS_URL``, ``REDIS_HOST``,
``REDIS_PORT``, ``REDIS_USERNAME``, ``REDIS_PASSWORD``, ``LOG_LEVEL``, ``DATA_DIR``. Everything
else is ``RECSYS_*``, with nested sections under ``__`` (e.g.
``RECSYS_REDIS__SOCKET_TIMEOUT_S=0.05``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from feature_store.config import EventSettings, RedisSettings
from models.config import RankingSettings, RetrievalSettings
from monitoring.config import DriftSettings
from services.auth import AuthSettings
from services.online_quality import OnlineQualitySettings


class ArtifactSettings(BaseModel):
    """Which model-store tags the services load."""

    model_config = ConfigDict(frozen=True)

    two_tower_tag: str = "two-tower:latest"
    """Retriever model (tower weights, FAISS index, id maps)."""
    ranker_tag: str = "ranker:latest"
    """XGBoost ranker model."""
    snapshot_tag: str = "feature-snapshot:latest"
    """Feature snapshot the embedded store and materialization read."""
    drift_reference_tag: str = "drift-reference:latest"
    """Baseline of the ranker's training features for the drift monitor."""
    item_knn_tag: str = "source-item-knn:latest"
    """Item-to-item neighbour table (candidate source ``item_knn``)."""
    content_tag: str = "source-content:latest"
    """Content neighbour table (candidate source ``content``)."""
    popularity_tag: str = "source-popularity:latest"
    """Popular and trending lists (candidate sources ``popular``, ``trending``)."""


class RemoteStageSettings(BaseModel):
    """Calls to stages in other processes (`stages=remote`; RECSYS_REMOTE__*)."""

    model_config = ConfigDict(frozen=True)

    deadline_s: float = Field(1.0, gt=0)
    """Each stage call's deadline; past it the request is answered without that stage."""
    failure_threshold: int = Field(3, ge=1)
    """Consecutive failed calls to a stage that open its circuit (calls then skip it)."""
    reset_timeout_s: float = Field(2.0, gt=0)
    """How long an open circuit waits before one trial call."""


# Clients of a dependency (bentoml.depends) renew their connection after `max_requests` requests
# or `max_age` seconds, failing the requests in flight (DESIGN.md): never, in practice.
DEPENDENCY_CONNECTION = {"max_requests": 1_000_000_000, "max_age": 1e9}


class Settings(BaseSettings):
    """Everything configurable, from the environment (see module docstring for names)."""

    model_config = SettingsConfigDict(
        env_prefix="RECSYS_", env_nested_delimiter="__", extra="ignore", frozen=True
    )

    feature_store_mode: Literal["parquet", "redis"] = Field(
        "parquet", validation_alias=AliasChoices("FEATURE_STORE_MODE", "RECSYS_FEATURE_STORE_MODE")
    )
    """`parquet`: embedded in-process store (default); `redis`: Redis with embedded fallback."""
    log_level: str = Field("INFO", validation_alias=AliasChoices("LOG_LEVEL", "RECSYS_LOG_LEVEL"))
    """Python logging level."""
    data_dir: Path | None = Field(
        None, validation_alias=AliasChoices("DATA_DIR", "RECSYS_DATA_DIR")
    )
    """A local MovieLens directory to use instead of downloading."""
    dataset: str = "ml-1m"
    """Dataset downloaded when no DATA_DIR is given."""
    cache_dir: Path = Path.home() / ".cache" / "recsys"
    """Where downloads go (never inside the repository's tracked files)."""
    download_base_url: str = "https://files.grouplens.org/datasets/movielens"
    """Where `recsys data download` fetches ``<name>.zip`` and ``<name>.zip.md5`` from."""
    seed: int = 42
    """Seed for every random choice in training."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where the two-tower model trains (``RECSYS_DEVICE``): `auto` takes CUDA when torch sees
    a GPU, else the CPU; `cuda` fails when there is none."""
    request_timeout_s: float = 2.0
    """BentoML traffic timeout of each service. Short on purpose: BentoML 1.4 keeps a timer per
    request alive this long, and many live timers stretch GC pauses into the p99 (DESIGN.md)."""
    stages: Literal["embedded", "remote"] = "embedded"
    """Where the retriever and ranker run (``RECSYS_STAGES``). `embedded`: inside the
    RecommendationService's process (one process, one copy of the models, no hop); `remote`:
    in processes of their own, `bentoml.depends()` dependencies under `bentoml serve`, or the
    separate deployments at `retriever_url` / `ranker_url`."""
    workers: int = Field(1, ge=1, le=64)
    """Worker processes of the RecommendationService (``RECSYS_WORKERS``); with `embedded`
    stages each worker holds its own copy of the models."""
    remote: RemoteStageSettings = RemoteStageSettings()
    retriever_url: str | None = None
    """URL of a separately deployed RetrieverService (`remote` stages); unset = a dependency
    process started by `bentoml serve`."""
    ranker_url: str | None = None
    """URL of a separately deployed RankerService (`remote` stages); unset = a dependency
    process started by `bentoml serve`."""
    redis: RedisSettings = RedisSettings()
    events: EventSettings = EventSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    ranking: RankingSettings = RankingSettings()
    drift: DriftSettings = DriftSettings()
    auth: AuthSettings = AuthSettings()
    online: OnlineQualitySettings = OnlineQualitySettings()
    artifacts: ArtifactSettings = ArtifactSettings()

    def replica_events(self) -> EventSettings:
        """The event-log settings of this process (`events`, with the log directory it writes).

        In redis mode with several API workers each worker keeps its own log under
        ``<events.dir>/worker-<n>``: the log there is what is not in Redis yet, and each worker
        replays only its own. In parquet mode the workers share one log (appends take turns on a
        file lock), since the log is the state every worker must see.
        """
        import bentoml  # server_context: which API worker this process is (None outside serving)

        worker = bentoml.server_context.worker_index
        if self.feature_store_mode != "redis" or self.workers == 1 or worker is None:
            return self.events
        return self.events.model_copy(update={"dir": self.events.dir / f"worker-{worker}"})

    @model_validator(mode="before")
    @classmethod
    def _plain_redis_env(cls, values: dict[str, object]) -> dict[str, object]:
        """Fold the original service's REDIS_URL/HOST/PORT/PASSWORD into the `redis` section."""
        import os  # the one place the environment is read besides pydantic-settings itself

        plain = {
            "url": os.environ.get("REDIS_URL"),
            "host": os.environ.get("REDIS_HOST"),
            "port": os.environ.get("REDIS_PORT"),
            "username": os.environ.get("REDIS_USERNAME"),
            "password": os.environ.get("REDIS_PASSWORD"),
        }
        given = {k: v for k, v in plain.items() if v is not None}
        if given:
            redis = values.get("redis") or {}
            if isinstance(redis, BaseModel):
                redis = redis.model_dump()
            values["redis"] = {**given, **dict(redis)}  # RECSYS_REDIS__* wins
        return values


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
