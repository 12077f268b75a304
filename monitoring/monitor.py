"""In-process drift monitor: Welford moments and baseline-bin counts over a sliding window.

Per request, `DriftMonitor.update` only copies an evenly strided subset of the request's rows
(``rows_per_request``, default 10 of the ~100 candidates; the offset rotates so every candidate
rank is covered over time) into a preallocated staging buffer under a lock. Every
``block_requests`` requests the staged rows are folded in ONE vectorised step: their count, mean
and M2 per feature (two-pass, then Chan-combined into the lifetime moments) and their bin counts
(one ``np.searchsorted`` over all columns, see `monitoring.baseline.Binning`). Blocks form the
sliding window of the last ``window`` requests (block granularity: it holds between ``window``
and ``window + block_requests - 1`` requests once full); evicting a block subtracts its counts.
`status` merges the blocks' moments with Chan's K-way formula and computes PSI/KL. Memory is
bounded by ``window / block_requests`` blocks of O(F + bins) numbers each.

Evidence is counted in requests (`monitoring.evidence`): a request-scope feature (the user's,
repeated on every candidate row) is one observation per request, taken from the request's first
looked-at row; a candidate-scope feature is one observation per looked-at row. `status` reports
the observations behind each feature's figures, and says ``insufficient_data`` while the window
holds fewer than ``min_window_requests`` requests.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from monitoring.baseline import Baseline
from monitoring.config import DriftSettings
from monitoring.divergence import psi_kl
from monitoring.errors import FeatureMismatchError
from monitoring.evidence import strided_rows
from monitoring.welford import RunningMoments, batch_moments, merge_blocks

STATUSES = ("ok", "warn", "drift")
INSUFFICIENT = "insufficient_data"


@dataclass(frozen=True)
class _Block:
    requests: int
    rows: int  # rows the requests had (before subsampling)
    n: np.ndarray  # (F,) finite values seen
    mean: np.ndarray  # (F,)
    m2: np.ndarray  # (F,)
    observations: np.ndarray  # (F,) values binned: rows, or requests for request-scope features
    counts: np.ndarray  # (n_raw,) int64


class DriftMonitor:
    """Compare served features with the training baseline, cheaply, on every request.

    Thread-safe: `update` and `status` may be called from any number of threads.
    """

    def __init__(self, baseline: Baseline, settings: DriftSettings) -> None:
        """Allocate the staging buffer and the window.

        Args:
            baseline: the training baseline, in the served matrix's column order.
            settings: window size, thresholds, rows looked at per request, smoothing.
        """
        self.baseline = baseline
        self.settings = settings
        self._binning = baseline.binning()
        self._base_freq = baseline.frequencies()
        self._n_features = len(baseline.features)
        self._per_request = baseline.request_mask()  # (F,) request-scope columns
        per_request = settings.rows_per_request or 128
        self._stage = np.zeros((settings.block_requests * per_request, self._n_features))
        self._starts: list[int] = []  # staged row where each staged request begins
        self._fill = 0  # staged rows
        self._staged_requests = 0
        self._staged_rows = 0  # original rows of the staged requests
        self._blocks: deque[_Block] = deque()
        self._window_counts = np.zeros(self._binning.n_raw, dtype=np.int64)
        self._window_requests = 0
        self._lifetime = RunningMoments(self._n_features)
        self._seen = 0  # requests ever recorded
        self._lock = threading.Lock()

    @property
    def feature_names(self) -> list[str]:
        """Column names the monitor expects, in order."""
        return self.baseline.names

    @property
    def requests_seen(self) -> int:
        """Requests recorded since start."""
        return self._seen

    def update(self, x: np.ndarray) -> None:
        """Record one request's feature matrix.

        Args:
            x: (N, F) features of the N candidates scored for one request (any float dtype).
                NaN, inf and out-of-range values are fine: they count into edge bins.

        Raises:
            FeatureMismatchError: `x` is not 2-D with the baseline's number of columns.
        """
        if x.ndim != 2 or x.shape[1] != self._n_features:
            raise FeatureMismatchError(self._n_features, x.shape[-1] if x.ndim else 0)
        rows = x.shape[0]
        if rows == 0:
            return
        x = strided_rows(x, self.settings.rows_per_request, self._seen)
        with self._lock:
            if self._fill + len(x) > len(self._stage):
                self._flush_locked()
                if len(x) > len(self._stage):  # rows_per_request=0 and a huge request
                    self._stage = np.zeros((len(x), self._n_features))
            self._stage[self._fill : self._fill + len(x)] = x
            self._starts.append(self._fill)
            self._fill += len(x)
            self._staged_requests += 1
            self._staged_rows += rows
            self._seen += 1
            if self._staged_requests >= self.settings.block_requests:
                self._flush_locked()

    def _flush_locked(self) -> None:
        """Fold the staged rows into the window as one block (caller holds the lock)."""
        if self._staged_requests == 0:
            return
        staged = self._stage[: self._fill]
        firsts = staged[self._starts]  # one row per request: the request-scope observations
        req = self._per_request
        n, mean, m2 = batch_moments(staged)
        if req.any():
            n_req, mean_req, m2_req = batch_moments(firsts)
            n, mean, m2 = (
                np.where(req, n_req, n),
                np.where(req, mean_req, mean),
                np.where(req, m2_req, m2),
            )
        ids = self._binning.raw_bins(staged)  # (F, rows)
        counts = np.bincount(
            np.concatenate([ids[~req].ravel(), ids[req][:, self._starts].ravel()]),
            minlength=self._binning.n_raw,
        )
        observations = np.where(req, len(firsts), len(staged)).astype(np.int64)
        block = _Block(
            self._staged_requests, self._staged_rows, n, mean, m2, observations, counts
        )  # fmt: skip
        self._starts = []
        self._fill = self._staged_requests = self._staged_rows = 0
        self._lifetime.add_moments(n, mean, m2)
        self._blocks.append(block)
        self._window_counts += block.counts
        self._window_requests += block.requests
        window = self.settings.window
        while self._window_requests - self._blocks[0].requests >= window:
            old = self._blocks.popleft()
            self._window_counts -= old.counts
            self._window_requests -= old.requests

    def reset(self) -> None:
        """Forget the window (e.g. after deploying a new model with a new baseline)."""
        with self._lock:
            self._starts = []
            self._fill = self._staged_requests = self._staged_rows = 0
            self._blocks.clear()
            self._window_counts[:] = 0
            self._window_requests = 0
            self._lifetime = RunningMoments(self._n_features)

    def status(self) -> dict[str, Any]:
        """Window statistics against the baseline, ready to serve from GET /drift/status.

        Returns:
            ``status`` (overall: worst feature status, or ``insufficient_data`` while the window
            holds fewer than ``min_window_requests``), ``drifted`` / ``warned`` feature names,
            ``window`` (``requests``, ``rows``, ``rows_monitored``, ``size``,
            ``min_requests``), ``requests_seen``, ``thresholds``, and ``features``: per name
            ``status``, ``psi``, ``kl``, ``scope``, ``observations`` (the values behind the
            figures: requests for a request-scope feature, rows otherwise), ``mean``, ``std``,
            ``baseline_mean``, ``baseline_std``, ``missing_share`` (NaN/inf share in the window).
        """
        with self._lock:
            self._flush_locked()
            blocks = list(self._blocks)
            raw = self._window_counts.copy()
            seen = self._seen
            lifetime_n = int(self._lifetime.n.max(initial=0))
        k = sum(b.requests for b in blocks)
        n_rows = sum(b.rows for b in blocks)
        n_values = sum(int(b.observations.max(initial=0)) for b in blocks)  # rows looked at
        observed = np.zeros(self._n_features, dtype=np.int64)
        for b in blocks:
            observed += b.observations
        if blocks:
            total, w_mean, w_m2 = merge_blocks(
                np.stack([b.n for b in blocks]),
                np.stack([b.mean for b in blocks]),
                np.stack([b.m2 for b in blocks]),
            )
        else:
            total = np.zeros(self._n_features, dtype=np.int64)
            w_mean = w_m2 = np.zeros(self._n_features)
        s = self.settings
        current = self._binning.fold(raw)
        psi, kl = psi_kl(current, self._base_freq, self._binning.offsets, s.smoothing)
        enough = k >= s.min_window_requests
        features: dict[str, dict[str, Any]] = {}
        for j, feat in enumerate(self.baseline.features):
            if not enough:
                status = INSUFFICIENT
            elif psi[j] >= s.psi_drift:
                status = "drift"
            elif psi[j] >= s.psi_warn:
                status = "warn"
            else:
                status = "ok"
            has = total[j] > 0
            seen_j = int(observed[j])
            features[feat.name] = {
                "status": status,
                "psi": float(psi[j]),
                "kl": float(kl[j]),
                "scope": feat.scope,
                "observations": seen_j,
                "mean": _json_float(w_mean[j]) if has else None,
                "std": _json_float(math.sqrt(w_m2[j] / total[j])) if has else None,
                "baseline_mean": _json_float(feat.mean),
                "baseline_std": _json_float(math.sqrt(feat.var)) if feat.var >= 0 else None,
                "missing_share": (seen_j - int(total[j])) / seen_j if seen_j else 0.0,
            }
        drifted = [name for name, f in features.items() if f["status"] == "drift"]
        warned = [name for name, f in features.items() if f["status"] == "warn"]
        overall = INSUFFICIENT if not enough else "drift" if drifted else "warn" if warned else "ok"
        return {
            "status": overall,
            "drifted": drifted,
            "warned": warned,
            "window": {
                "requests": k,
                "rows": n_rows,
                "rows_monitored": n_values,
                "size": s.window,
                "min_requests": s.min_window_requests,
            },
            "requests_seen": seen,
            "lifetime_rows_monitored": lifetime_n,
            "thresholds": {"psi_warn": s.psi_warn, "psi_drift": s.psi_drift},
            "features": features,
        }


def _json_float(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
