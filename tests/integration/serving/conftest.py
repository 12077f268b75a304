"""Fixtures of the serving tests: small models trained into the session's BentoML store.

`trained_models` runs the real training pipeline (`models.train.train_all`) on a synthetic
ML-1M-format dataset written to disk, so the served service loads real artifacts.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from data.synth import generate, write_movielens
from models.train import TrainReport, train_all

SMALL = {"users": 300, "items": 250, "ratings": 12_000}


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset in ML-1M format (planted taste clusters)."""
    data = generate(SMALL["users"], SMALL["items"], SMALL["ratings"], seed=11)
    return write_movielens(data, tmp_path_factory.mktemp("ml-1m-synth"), "ml-1m")


@pytest.fixture(scope="session")
def trained_models(synth_dir: Path) -> TrainReport:
    """Retriever, ranker and feature snapshot trained and stored (quick settings)."""
    return train_all(synth_dir, seed=0, quick=True, baselines=False)


@pytest.fixture(scope="session")
def client(trained_models: TrainReport) -> Iterator[TestClient]:
    """The RecommendationService ASGI app, dependencies composed in process."""
    from services.recommendation import RecommendationService

    with TestClient(RecommendationService.to_asgi(), raise_server_exceptions=False) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def history(trained_models: TrainReport) -> Any:
    """The served snapshot's history table (what each user has seen)."""
    from models.artifacts import load_snapshot

    return load_snapshot().history
