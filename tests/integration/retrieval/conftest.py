"""Fixtures of the retriever service tests: a small trained retriever and snapshot in the store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

import httpx
import pytest

from data.features import build_snapshot
from data.schema import DataFormat, Dataset
from data.split import recipe_windows
from data.synth import generate
from models import artifacts
from models.train_retrieval import train_retriever
from models.two_tower import TwoTowerConfig


@pytest.fixture(scope="session")
def retriever_data() -> Dataset:
    """Synthetic ratings with planted structure: what the stored retriever is given."""
    data = generate(n_users=300, n_items=200, n_ratings=9_000, seed=5)
    return Dataset(DataFormat.ML_1M, data.interactions, data.users, data.items, True)


@pytest.fixture(scope="session")
def stored_retriever(retriever_data: Dataset) -> dict[str, str]:
    """Train a small retriever as `recsys train` does (serving every rating) and store it.

    Returns the stored tags (`two-tower`, `feature-snapshot`), which are also the `:latest` ones
    right after this fixture runs, and a user id to ask for.
    """
    windows = recipe_windows(retriever_data.interactions)
    config = TwoTowerConfig(dim=16, hidden=32, history_len=10, epochs=2, batch_size=256)
    retriever, metrics = train_retriever(
        build_snapshot(retriever_data, windows.fit), windows, config, seed=0, progress=False
    )
    serving = build_snapshot(retriever_data, windows.known)
    return {
        "feature-snapshot": artifacts.save_snapshot(serving),
        "two-tower": artifacts.save_two_tower(
            retriever.with_history(windows.known),
            artifacts.base_metadata(serving.version, validation=metrics),
        ),
        "user_id": str(int(retriever_data.interactions["user_id"].iloc[0])),
    }


# The two-tower source alone, asked for up to 1,000 candidates (the other sources switched off:
# their fusion is tested with the composed service, tests/integration/serving).
TWO_TOWER_ONLY = {
    "RECSYS_RETRIEVAL__QUOTAS": "{}",
    "RECSYS_RETRIEVAL__CANDIDATES": "1000",
    "RECSYS_RETRIEVAL__FUSED_MAX": "1000",
}


@pytest.fixture(scope="session")
def two_tower_only() -> dict[str, str]:
    """Environment of a RetrieverService whose only source is the two-tower model."""
    return dict(TWO_TOWER_ONLY)


@pytest.fixture(scope="session")
def retriever_client(
    stored_retriever: dict[str, str],
    served_client: Callable[..., AbstractContextManager[httpx.Client]],
) -> Iterator[httpx.Client]:
    """The RetrieverService served by `bentoml serve` (a real server process) on a free port."""
    with served_client(
        "services.retriever:RetrieverService", stored_retriever, TWO_TOWER_ONLY
    ) as client:
        yield client
