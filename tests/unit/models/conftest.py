"""Fixtures of the models tests: small synthetic data with planted taste clusters."""

from __future__ import annotations

import numpy as np
import pytest

from data.features import build_snapshot
from data.schema import DataFormat, Dataset
from data.split import Split, temporal_split
from data.synth import generate
from feature_store.memory_store import MemoryFeatureStore
from models.baselines import PopularRecommender
from models.ranker import Ranker
from models.train_ranker import RankerTrainConfig, train_ranker


@pytest.fixture(scope="session")
def synth_dataset() -> Dataset:
    """400 users, 300 items, 12k ratings; users prefer their cluster's genres."""
    data = generate(n_users=400, n_items=300, n_ratings=12_000, seed=3)
    return Dataset(DataFormat.ML_1M, data.interactions, data.users, data.items, True)


@pytest.fixture(scope="session")
def synth_split(synth_dataset: Dataset) -> Split:
    """The protocol's per-user temporal split of `synth_dataset`."""
    return temporal_split(synth_dataset.interactions)


@pytest.fixture(scope="session")
def fit_store(synth_dataset: Dataset, synth_split: Split) -> MemoryFeatureStore:
    """Embedded store over the features of the fit window (what the ranker trains on)."""
    return MemoryFeatureStore(build_snapshot(synth_dataset, synth_split.fit))


@pytest.fixture(scope="session")
def fit_popular(synth_dataset: Dataset, synth_split: Split) -> PopularRecommender:
    """A taste-blind first stage (most popular) with fit-window histories."""
    item_ids = synth_dataset.items["item_id"].to_numpy(np.int64)
    return PopularRecommender().fit(synth_split.fit, item_ids)


@pytest.fixture(scope="session")
def trained_ranker(
    fit_popular: PopularRecommender, fit_store: MemoryFeatureStore, synth_split: Split
) -> tuple[Ranker, dict[str, float]]:
    """A small ranker trained on popular candidates with valid-window labels."""
    config = RankerTrainConfig(max_trees=30, folds=3, early_stopping_rounds=10)
    return train_ranker(fit_popular, fit_store, synth_split.valid, config, seed=0)
