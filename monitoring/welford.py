"""Running mean and variance per feature, numerically stable and vectorised over features.

Each batch is reduced with the corrected two-pass mean/M2 (sum of squared deviations from the
batch mean, minus the squared sum of deviations that undoes the first pass's rounding),
then folded into the running totals with Chan et al.'s parallel combination::

    delta = mean_b - mean_a
    n     = n_a + n_b
    mean  = mean_a + delta * n_b / n
    M2    = M2_a + M2_b + delta**2 * n_a * n_b / n

which is Welford's update generalised to blocks: it never subtracts two large sums, so a feature
around 1e9 with unit noise keeps its variance to ~1e-12 relative. Non-finite values (NaN, inf) are
left out of the moments (they are counted by the histograms instead).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def batch_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count, mean and M2 per column of a (N, F) batch, ignoring non-finite values.

    Args:
        x: (N, F) array of any float dtype.

    Returns:
        (n, mean, m2), each (F,): finite values per column (int64), their mean and sum of squared
        deviations from that mean (float64; 0 where a column has no finite value).
    """
    rows = x.shape[0]
    total = x.sum(axis=0, dtype=np.float64)  # (F,)
    if rows and np.isfinite(total).all():  # fast path: no NaN/inf anywhere in the batch
        mean = total / rows
        dev = x - mean  # (N, F) float64
        fix = dev.sum(axis=0)  # corrected two-pass: removes the rounding error of `total`
        m2 = np.einsum("ij,ij->j", dev, dev) - fix * fix / rows
        return np.full(x.shape[1], rows, dtype=np.int64), mean + fix / rows, m2
    finite = np.isfinite(x)
    n = finite.sum(axis=0, dtype=np.int64)
    clean = np.where(finite, x, 0.0).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, clean.sum(axis=0) / n, 0.0)
    dev = np.where(finite, clean - mean, 0.0)
    safe = np.maximum(n, 1)
    fix = dev.sum(axis=0)
    m2 = np.einsum("ij,ij->j", dev, dev) - fix * fix / safe
    return n, mean + fix / safe, m2


def combine(
    n_a: np.ndarray, mean_a: np.ndarray, m2_a: np.ndarray,
    n_b: np.ndarray, mean_b: np.ndarray, m2_b: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Chan's parallel combination of two sets of per-feature moments (all arrays (F,))."""
    n = n_a + n_b
    safe = np.maximum(n, 1)
    delta = mean_b - mean_a
    mean = mean_a + delta * (n_b / safe)
    m2 = m2_a + m2_b + delta * delta * (n_a * (n_b / safe))
    return n, mean, m2


def merge_blocks(
    n: np.ndarray, mean: np.ndarray, m2: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Combine K blocks of moments at once (the K-way form of `combine`).

    Args:
        n: (K, F) counts; mean: (K, F) block means; m2: (K, F) block M2.

    Returns:
        (n, mean, m2) of the union, each (F,).
    """
    total = n.sum(axis=0)  # (F,)
    safe = np.maximum(total, 1)
    grand = (n * mean).sum(axis=0) / safe  # weighted mean of block means
    dev = mean - grand  # (K, F): deviations of block means, not of raw sums
    return total, grand, m2.sum(axis=0) + (n * dev * dev).sum(axis=0)


@dataclass
class RunningMoments:
    """Per-feature running count, mean and variance over every batch seen.

    Not locked: owners that share it across threads hold their own lock.
    """

    n_features: int
    n: np.ndarray = field(init=False)
    mean: np.ndarray = field(init=False)
    m2: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.n = np.zeros(self.n_features, dtype=np.int64)
        self.mean = np.zeros(self.n_features, dtype=np.float64)
        self.m2 = np.zeros(self.n_features, dtype=np.float64)

    def update(self, x: np.ndarray) -> None:
        """Fold a (N, F) batch (or a (N,) vector when F == 1) into the running moments."""
        batch = x.reshape(len(x), -1)
        self.add_moments(*batch_moments(batch))

    def add_moments(self, n: np.ndarray, mean: np.ndarray, m2: np.ndarray) -> None:
        """Fold precomputed block moments (each (F,)) into the running moments."""
        self.n, self.mean, self.m2 = combine(self.n, self.mean, self.m2, n, mean, m2)

    @property
    def var(self) -> np.ndarray:
        """Population variance per feature (NaN where no value was seen)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n > 0, self.m2 / self.n, np.nan)

    @property
    def std(self) -> np.ndarray:
        """Population standard deviation per feature."""
        return np.sqrt(self.var)
