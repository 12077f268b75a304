"""Fixtures of the feature store's unit tests (no redis-server needed)."""

from __future__ import annotations

import pytest

from data.snapshot import FeatureSnapshot
from feature_store.bench import synthetic_snapshot


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    """A hand-driven clock for the circuit breaker."""
    return FakeClock()


@pytest.fixture(scope="session")
def snapshot() -> FeatureSnapshot:
    """A small feature snapshot from the synthetic generator (60 users, 120 items)."""
    return synthetic_snapshot(n_users=60, n_items=120, seed=3)
