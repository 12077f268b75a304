"""Fixtures of the ranker service tests: a small trained ranker and snapshot in the test store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import httpx
import numpy as np
import pytest

from data.features import build_snapshot
from data.schema import DataFormat, Dataset
from data.split import temporal_split
from data.synth import generate
from feature_store.memory_store import MemoryFeatureStore
from models import artifacts
from models.baselines import PopularRecommender
from models.ranker import FEATURE_NAMES
from models.train_ranker import RankerTrainConfig, train_ranker
from monitoring.baseline import Baseline, reference_sample


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
    ranker, metrics = train_ranker(first, fit_store, split.valid, config, seed=0)
    serving = build_snapshot(dataset, split.train)
    serve_store = MemoryFeatureStore(serving)
    served = PopularRecommender().fit(split.train, serving.item_ids)
    users = serving.user_ids[:100]
    candidates, scores = served.recommend(users, 100)
    features = np.concatenate(
        [
            ranker.rank(int(u), c[c >= 0], s[c >= 0], serve_store, k=100).features
            for u, c, s in zip(users, candidates, scores, strict=True)
        ]
    )
    baseline = Baseline.from_matrix(features, FEATURE_NAMES)
    return {
        "feature-snapshot": artifacts.save_snapshot(serving),
        "ranker": artifacts.save_ranker(
            ranker, artifacts.base_metadata(serving.version, validation=metrics)
        ),
        "drift-reference": artifacts.save_drift_reference(
            baseline, reference_sample(features, FEATURE_NAMES), serving.version
        ),
    }


@pytest.fixture(scope="session")
def ranker_client(
    stored_ranker: dict[str, str],
    served_client: Callable[..., AbstractContextManager[httpx.Client]],
) -> Iterator[httpx.Client]:
    """The RankerService served by `bentoml serve` (a real server process) on a free port."""
    with served_client("services.ranker:RankerService", stored_ranker) as client:
        yield client
