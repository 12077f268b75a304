"""Generated 'ranker training' matrices with known structure for the monitoring tests."""

from __future__ import annotations

import numpy as np
import pytest

from monitoring.baseline import Baseline

N_FEATURES = 12
NAMES = [f"num_{i}" for i in range(N_FEATURES - 2)] + ["gender", "occupation"]
CATEGORICAL = ["gender", "occupation"]


def draw(rng: np.random.Generator, rows: int, shift: dict[str, float] | None = None) -> np.ndarray:
    """(rows, F) float32 features: normals/exponentials/counts plus two categorical codes.

    `shift` moves a numeric feature's mean by that many stds; ``{"occupation": k}`` draws every
    row from occupation k only (one demographic group).
    """
    shift = shift or {}
    x = np.empty((rows, N_FEATURES), dtype=np.float32)
    for j in range(N_FEATURES - 2):
        if j % 3 == 0:
            col = rng.normal(2.0 * j, 1.0 + j, rows)
        elif j % 3 == 1:
            col = rng.exponential(1.0 + j, rows)
        else:
            col = rng.poisson(3.0, rows).astype(np.float64)  # discrete: ties on the edges
        x[:, j] = col + shift.get(NAMES[j], 0.0) * (1.0 + j)
    x[:, -2] = rng.integers(0, 2, rows)
    occ = shift.get("occupation")
    x[:, -1] = rng.choice(8, rows, p=np.arange(1, 9) / 36) if occ is None else occ
    return x


@pytest.fixture(scope="session")
def training() -> np.ndarray:
    """The baseline's training matrix."""
    return draw(np.random.default_rng(7), 100_000)


@pytest.fixture(scope="session")
def baseline(training: np.ndarray) -> Baseline:
    """Baseline of `training`."""
    return Baseline.from_matrix(training, NAMES, categorical=CATEGORICAL)


class Traffic:
    """Access to the generator from tests (importlib mode cannot import conftest)."""

    names = NAMES
    categorical = CATEGORICAL
    draw = staticmethod(draw)


@pytest.fixture(scope="session")
def traffic() -> type[Traffic]:
    """Feature names and the traffic generator."""
    return Traffic
