"""Benchmarks of the drift monitor's request-path cost and of the Evidently job (print nothing).

`recsys bench drift` calls these and prints the figures.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from monitoring.baseline import Baseline, reference_sample
from monitoring.config import DriftSettings
from monitoring.drift import DriftResult, DriftSpec, run_drift_report
from monitoring.inference_log import InferenceLog
from monitoring.monitor import DriftMonitor


@dataclass(frozen=True)
class MonitorBench:
    """Per-request cost of `DriftMonitor.update` (µs) and of `InferenceLog.log`."""

    rows: int
    features: int
    requests: int
    mean_us: float  # includes the amortised block fold
    p50_us: float
    p99_us: float
    max_us: float
    log_mean_us: float
    status_ms: float


@dataclass(frozen=True)
class ReportBench:
    """Time of the Evidently job over a generated inference log."""

    logged_requests: int
    logged_rows: int
    log_write_s: float
    evidently_import_s: float
    report_s: float
    result: DriftResult


def _matrix(rng: np.random.Generator, rows: int, features: int) -> np.ndarray:
    x = rng.normal(size=(rows, features)).astype(np.float32)
    x[:, : features // 5] = rng.integers(0, 5, (rows, features // 5))  # a few categorical codes
    return x


def _baseline(features: int, seed: int) -> tuple[Baseline, np.ndarray, list[str]]:
    names = [f"f{j:02d}" for j in range(features)]
    train = _matrix(np.random.default_rng(seed), 100_000, features)
    return Baseline.from_matrix(train, names, names[: features // 5]), train, names


def bench_monitor(
    requests: int = 20_000, rows: int = 100, features: int = 50, seed: int = 0
) -> MonitorBench:
    """Time `update` on `requests` distinct (rows, features) float32 matrices, one at a time."""
    baseline, _, names = _baseline(features, seed)
    settings = DriftSettings()
    monitor = DriftMonitor(baseline, settings)
    rng = np.random.default_rng(seed + 1)
    pool = [_matrix(rng, rows, features) for _ in range(256)]
    for x in pool * 8:  # warm up: fill the window a little, page everything in
        monitor.update(x)
    took = np.empty(requests)
    clock = time.perf_counter_ns
    for i in range(requests):
        x = pool[i % len(pool)]
        start = clock()
        monitor.update(x)
        took[i] = clock() - start
    started = time.perf_counter()
    monitor.status()
    status_ms = (time.perf_counter() - started) * 1e3
    with tempfile.TemporaryDirectory() as tmp:
        log = InferenceLog(settings.model_copy(update={"log_dir": Path(tmp)}), names, seed=seed)
        started = time.perf_counter()
        for i in range(requests):
            log.log(pool[i % len(pool)])
        log_us = (time.perf_counter() - started) / requests * 1e6
        log.close()
    us = took / 1e3
    return MonitorBench(
        rows, features, requests, float(us.mean()), float(np.percentile(us, 50)),
        float(np.percentile(us, 99)), float(us.max()), log_us, status_ms,
    )  # fmt: skip


def bench_drift_report(
    requests: int = 100_000, rows_per_request: int = 10, features: int = 50, seed: int = 0
) -> ReportBench:
    """Log `requests` requests (`rows_per_request` rows each), then time the Evidently job."""
    baseline, train, names = _baseline(features, seed)
    reference = reference_sample(train, names, max_rows=20_000, seed=seed)
    rng = np.random.default_rng(seed + 2)
    with tempfile.TemporaryDirectory() as tmp:
        total = requests * rows_per_request
        settings = DriftSettings(
            log_dir=Path(tmp) / "log", log_sample_rate=1.0, log_rows_per_request=0,
            log_flush_rows=min(50_000, total), log_max_rows=max(total, 50_000),
        )  # fmt: skip
        log = InferenceLog(settings, names, seed=seed, max_pending_writes=10**6)
        started = time.perf_counter()
        block = _matrix(rng, 1000 * rows_per_request, features)
        for i in range(requests):
            j = i % 1000 * rows_per_request
            log.log(block[j : j + rows_per_request])
        log.close()
        write_s = time.perf_counter() - started
        started = time.perf_counter()
        import evidently  # noqa: F401  (cold import timed on its own)

        import_s = time.perf_counter() - started
        spec = DriftSpec.from_baseline(baseline, max_rows=settings.report_max_rows)
        started = time.perf_counter()
        result = run_drift_report(settings.log_dir, reference, Path(tmp) / "out", spec, seed)
        report_s = time.perf_counter() - started
    return ReportBench(requests, total, write_s, import_s, report_s, result)
