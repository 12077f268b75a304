"""Fixtures of the retrieval tests: a small two-tower retriever trained on planted clusters.

`synth_dataset` and `synth_split` come from tests/unit/models/conftest.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from data.features import build_snapshot
from data.schema import Dataset
from data.snapshot import FeatureSnapshot
from data.split import Split
from models.retriever import Retriever
from models.train_retrieval import train_retriever
from models.two_tower import TwoTowerConfig

SMALL_CONFIG = TwoTowerConfig(
    dim=32, hidden=64, history_len=20, epochs=10, patience=3, batch_size=256, lr=3e-3
)


@pytest.fixture(scope="session")
def fit_snapshot(synth_dataset: Dataset, synth_split: Split) -> FeatureSnapshot:
    """Features of the fit window (item content, demographics)."""
    return build_snapshot(synth_dataset, synth_split.fit)


@pytest.fixture(scope="session")
def trained(
    synth_dataset: Dataset, synth_split: Split, fit_snapshot: FeatureSnapshot
) -> tuple[Retriever, dict[str, float]]:
    """A small retriever trained on the synthetic fit window (serving fit histories)."""
    return train_retriever(fit_snapshot, synth_split.windows, SMALL_CONFIG, seed=0, progress=False)


@pytest.fixture(scope="session")
def retriever(trained: tuple[Retriever, dict[str, float]], synth_split: Split) -> Retriever:
    """The trained retriever serving train-window histories (what test evaluation uses)."""
    return trained[0].with_history(synth_split.train)


@pytest.fixture
def clustered_embeddings() -> np.ndarray:
    """10,000 unit vectors in 32 dimensions around 200 random centres."""
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((200, 32))
    points = centres[rng.integers(0, 200, 10_000)] + 0.6 * rng.standard_normal((10_000, 32))
    points /= np.linalg.norm(points, axis=1, keepdims=True)
    return points.astype(np.float32)
