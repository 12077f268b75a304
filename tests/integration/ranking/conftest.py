"""Fixtures of the ranker service tests: a small trained ranker and snapshot in the test store."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from data.features import build_snapshot
from data.schema import DataFormat, Dataset
from data.split import temporal_split
from data.synth import generate
from feature_store.memory_store import MemoryFeatureStore
from models import artifacts
from models.baselines import PopularRecommender
from models.train_ranker import RankerTrainConfig, train_ranker


@pytest.fixture(scope="session")
def stored_ranker() -> dict[str, str]:
    """Train a small ranker on synthetic data and store it with its serving snapshot.

    Returns the stored tags (`ranker`, `feature-snapshot`); they are also the `:latest` ones,
    which is what the service and the bento resolve by default.
    """
    data = generate(n_users=300, n_items=200, n_ratings=9_000, seed=5)
    dataset = Dataset(DataFormat.ML_1M, data.interactions, data.users, data.items, True)
    split = temporal_split(dataset.interactions)
    fit_store = MemoryFeatureStore(build_snapshot(dataset, split.fit))
    first = PopularRecommender().fit(split.fit, fit_store.snapshot.item_ids)
    config = RankerTrainConfig(max_trees=30, folds=3, early_stopping_rounds=10)
    ranker, metrics = train_ranker(first, fit_store, split, config, seed=0)
    serving = build_snapshot(dataset, split.train)
    return {
        "feature-snapshot": artifacts.save_snapshot(serving),
        "ranker": artifacts.save_ranker(
            ranker, artifacts.base_metadata(serving.version, validation=metrics)
        ),
    }


@pytest.fixture(scope="session")
def ranker_client(stored_ranker: dict[str, str]) -> Iterator[TestClient]:
    """The RankerService ASGI app, started (models loaded) in process."""
    from services.ranker import RankerService

    with TestClient(RankerService.to_asgi()) as client:
        yield client
