"""Welford/Chan moments against numpy."""

from __future__ import annotations

import numpy as np
import pytest

from monitoring.welford import RunningMoments, batch_moments, merge_blocks


@pytest.mark.parametrize(
    ("offset", "scales"),
    [
        (0.0, [1.0, 0.01, 100.0]),  # centred data at three scales
        (1e9, [1.0, 10.0, 100.0]),  # large offset + noise: naive sum of squares loses all digits
        # (1e9 with noise 0.01 is past float64 itself: the mean's ulp is 1e-5 of the std)
    ],
)
def test_running_moments_match_numpy_on_a_million_values(
    offset: float, scales: list[float]
) -> None:
    rng = np.random.default_rng(0)
    values = offset + rng.normal(0.0, 1.0, (1_000_000, 3)) * np.array(scales)
    moments = RunningMoments(3)
    cuts = np.sort(rng.choice(len(values), 300, replace=False))  # uneven batch sizes
    for batch in np.split(values, cuts):
        moments.update(batch)
    np.testing.assert_array_equal(moments.n, len(values))
    centred = values - offset  # exact in float64: numpy's reference without the offset
    np.testing.assert_allclose(moments.mean, offset + centred.mean(axis=0), rtol=1e-9)
    np.testing.assert_allclose(moments.var, centred.var(axis=0), rtol=1e-9)


def test_merge_blocks_equals_pairwise_combination() -> None:
    rng = np.random.default_rng(1)
    blocks = [rng.normal(5.0, 2.0, (int(rng.integers(1, 50)), 4)) for _ in range(40)]
    stats = [batch_moments(b) for b in blocks]
    n, mean, m2 = merge_blocks(*(np.stack(s) for s in zip(*stats, strict=True)))
    everything = np.concatenate(blocks)
    np.testing.assert_allclose(mean, everything.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(m2 / n, everything.var(axis=0), rtol=1e-10)


def test_non_finite_values_are_left_out_of_the_moments() -> None:
    x = np.array([[1.0, np.nan], [3.0, np.inf], [5.0, 2.0]], dtype=np.float32)
    n, mean, m2 = batch_moments(x)
    np.testing.assert_array_equal(n, [3, 1])
    np.testing.assert_allclose(mean, [3.0, 2.0])
    np.testing.assert_allclose(m2, [8.0, 0.0])
