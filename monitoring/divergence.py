"""PSI and KL divergence per feature over concatenated bin counts, smoothed for empty bins."""

from __future__ import annotations

import numpy as np


def segment_probs(counts: np.ndarray, offsets: np.ndarray, eps: float) -> np.ndarray:
    """Per-segment frequencies with a floor of `eps`, renormalised to sum to 1 per segment.

    Args:
        counts: (B,) bin counts (or frequencies) of all features, concatenated.
        offsets: (F + 1,) start of each feature's bins in `counts`; offsets[-1] == B.
        eps: floor applied to every frequency (keeps empty bins' log terms finite).

    Returns:
        (B,) smoothed frequencies (a segment with no counts becomes uniform).
    """
    sizes = np.diff(offsets)
    totals = np.add.reduceat(counts.astype(np.float64), offsets[:-1])  # (F,)
    totals = np.repeat(totals, sizes)
    uniform = np.repeat(1.0 / sizes, sizes)
    with np.errstate(invalid="ignore", divide="ignore"):
        probs = np.where(totals > 0, counts / totals, uniform)
    probs = np.maximum(probs, eps)
    return probs / np.repeat(np.add.reduceat(probs, offsets[:-1]), sizes)


def psi_kl(
    current: np.ndarray, baseline: np.ndarray, offsets: np.ndarray, eps: float = 1e-4
) -> tuple[np.ndarray, np.ndarray]:
    """Population stability index and KL(current || baseline) per feature.

    Args:
        current: (B,) current bin counts, all features concatenated.
        baseline: (B,) baseline frequencies in the same layout.
        offsets: (F + 1,) segment starts.
        eps: smoothing floor on every frequency.

    Returns:
        (psi, kl), each (F,) and >= 0.
    """
    p = segment_probs(current, offsets, eps)
    q = segment_probs(baseline, offsets, eps)
    log_ratio = np.log(p / q)
    psi = np.add.reduceat((p - q) * log_ratio, offsets[:-1])
    kl = np.add.reduceat(p * log_ratio, offsets[:-1])
    return np.maximum(psi, 0.0), np.maximum(kl, 0.0)
