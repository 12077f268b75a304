"""Serving latency while the drift job runs (`recsys bench drift-job`).

The API (embedded, one worker) serves over an inference log of `logged` requests (rows drawn
from the drift reference sample, 10 per request). Sequential POST /recommend calls are timed
three times in one run: quiet, while POST /drift/check's job runs (from the check until its
report is written), and quiet again. Target: the p99 during the job within 1.5x the quiet p99.
"""

from __future__ import annotations

import asyncio
import gc
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from monitoring.config import DriftSettings
from monitoring.inference_log import InferenceLog
from services.tooling.bench_client import Connection, encode_posts
from services.tooling.bench_service import request_bodies, sequential_latencies, serve

SERVICE = "services.recommendation:RecommendationService"
ROWS_PER_REQUEST = 10


@dataclass(frozen=True)
class DriftJobFigures:
    """Sequential POST /recommend latency (ms) around and during one drift job."""

    logged_requests: int
    quiet_p50_ms: float
    quiet_p99_ms: float
    during_p50_ms: float
    during_p99_ms: float
    during_requests: int
    after_p50_ms: float
    after_p99_ms: float
    job_s: float
    report_rows: int

    @property
    def ratio(self) -> float:
        """p99 during the job / the mean quiet p99 around it (target <= 1.5)."""
        return self.during_p99_ms / ((self.quiet_p99_ms + self.after_p99_ms) / 2)

    @property
    def ratio_before(self) -> float:
        """p99 during the job / the quiet p99 before it (the stricter reading)."""
        return self.during_p99_ms / self.quiet_p99_ms


def write_log(directory: Path, reference_tag: str, requests: int, seed: int = 0) -> None:
    """An inference log of `requests` requests whose rows are drawn from the reference sample."""
    from models.artifacts import load_drift_sample

    frame = load_drift_sample(reference_tag)
    sample = frame.to_numpy(np.float32)
    settings = DriftSettings(
        log_dir=directory, log_sample_rate=1.0, log_rows_per_request=0,
        log_flush_rows=50_000, log_max_rows=requests * ROWS_PER_REQUEST,
    )  # fmt: skip
    log = InferenceLog(
        settings, [str(c) for c in frame.columns], seed=seed, max_pending_writes=10**6
    )
    rng = np.random.default_rng(seed)
    rows = sample[rng.integers(0, len(sample), size=(1000, ROWS_PER_REQUEST))]  # 1,000 requests
    for i in range(requests):
        log.log(rows[i % 1000])
    log.close()


def bench_drift_job(
    known_users: Sequence[int], reference_tag: str, logged: int = 100_000, requests: int = 1000
) -> DriftJobFigures:
    """Serve over a log of `logged` requests; time /recommend quiet, during the job, after."""
    with tempfile.TemporaryDirectory() as tmp:
        log_dir, reports = Path(tmp) / "log", Path(tmp) / "reports"
        write_log(log_dir, reference_tag, logged)
        env = {
            "RECSYS_DRIFT__LOG_DIR": str(log_dir),
            "RECSYS_DRIFT__REPORT_DIR": str(reports),
            "RECSYS_DRIFT__LOG_SAMPLE_RATE": "0",  # the served traffic leaves the log as written
            "RECSYS_DRIFT__LOG_MAX_ROWS": str(logged * ROWS_PER_REQUEST),
            "RECSYS_ARTIFACTS__DRIFT_REFERENCE_TAG": reference_tag,
        }
        with serve(SERVICE, extra_env=env, log_dir=Path(tmp), log_name="drift-job.log") as s:
            raws = encode_posts(s.url, "/recommend", request_bodies(known_users, requests + 100))
            quiet = _timed(lambda: asyncio.run(sequential_latencies(s.url, raws, 100))[0])
            started = time.perf_counter()
            check = httpx.post(f"{s.url}/drift/check", timeout=30)
            if check.status_code not in (200, 202):
                raise RuntimeError(f"POST /drift/check answered {check.status_code}")
            during = _timed(lambda: asyncio.run(_until_report(s.url, raws, reports)))
            job_s = time.perf_counter() - started
            after = _timed(lambda: asyncio.run(sequential_latencies(s.url, raws, 100))[0])
            summary = httpx.get(f"{s.url}/drift/report", timeout=30).json()

    def q(values: list[float], p: float) -> float:
        return float(np.percentile(np.asarray(values) * 1e3, p))

    return DriftJobFigures(
        logged, q(quiet, 50), q(quiet, 99), q(during, 50), q(during, 99), len(during),
        q(after, 50), q(after, 99), job_s, int(summary.get("current_rows", 0)),
    )  # fmt: skip


def _timed(phase: Callable[[], list[float]]) -> list[float]:
    """Run one timed phase with the client's own GC off (its pauses would count as latency)."""
    gc.collect()
    gc.disable()
    try:
        return phase()
    finally:
        gc.enable()


async def _until_report(url: str, raws: list[bytes], reports: Path) -> list[float]:
    """Sequential calls until the job's summary exists; their latencies."""
    conn, took, i = Connection(url), [], 0
    summary = reports / "drift-summary.json"
    try:
        while not summary.exists():
            began = time.perf_counter()
            status, _ = await conn.request(raws[i % len(raws)])
            if status == 200:
                took.append(time.perf_counter() - began)
            i += 1
    finally:
        await conn.close()
    return took
