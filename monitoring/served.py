"""Drift monitoring of the features a service serves: the monitor, the log and the batch job.

`ServedFeatureMonitor` is what the ranking service holds: every request's (N, F) feature matrix
goes to the in-process `DriftMonitor` and, sampled, to the rotating `InferenceLog`; the drift
routes read `status()`, run `check()` (the Evidently job over the logged window) and return
`latest_report()`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from monitoring.baseline import Baseline
from monitoring.config import DriftSettings
from monitoring.drift import HTML_FILE, DriftSpec, load_latest_result, run_drift_report
from monitoring.errors import NoLoggedTrafficError
from monitoring.inference_log import InferenceLog
from monitoring.monitor import DriftMonitor

logger = logging.getLogger(__name__)

SERVICE_CHECK_MAX_ROWS = 5_000


class ServedFeatureMonitor:
    """In-process drift monitor plus sampled feature log for one service."""

    def __init__(
        self,
        baseline: Baseline,
        reference: pd.DataFrame | Callable[[], pd.DataFrame],
        settings: DriftSettings,
    ) -> None:
        """Args:
        baseline: the training features' baseline (the in-process monitor's).
        reference: the Evidently job's reference sample, or a function that loads it (called
            by the first check, off the request path).
        settings: window, thresholds, log and report directories.
        """
        self.settings = settings
        self._reference = reference
        self.monitor = DriftMonitor(baseline, settings)
        self.log = InferenceLog(settings, [f.name for f in baseline.features])
        # The in-service check must answer within the request timeout: sample fewer rows than
        # the batch job (`recsys drift report`) does.
        self.spec = DriftSpec.from_baseline(
            baseline,
            threshold=settings.psi_drift,
            max_rows=min(settings.report_max_rows, SERVICE_CHECK_MAX_ROWS),
            min_requests=settings.min_window_requests,
            smoothing=settings.smoothing,
        )
        self._check_lock = threading.Lock()
        self._report_lock = threading.Lock()
        self._jobs = ThreadPoolExecutor(max_workers=1, thread_name_prefix="drift-check")
        self._job: Future[dict[str, Any]] | None = None
        # Evidently (seconds to import) is imported by the first check's job thread, not at
        # start: an import thread would hold the GIL against startup and the first requests.

    def reference(self) -> pd.DataFrame:
        """The reference sample (loaded on first use)."""
        if callable(self._reference):
            self._reference = self._reference()
        return self._reference

    def observe(self, features: np.ndarray) -> None:
        """Record one request's (N, F) served features (cheap: the request path calls it)."""
        self.monitor.update(features)
        self.log.log(features)

    def status(self) -> dict[str, Any]:
        """Per-feature mean/std vs baseline, PSI, KL and status, plus the overall status."""
        return self.monitor.status()

    def check(self) -> dict[str, Any]:
        """Run the Evidently comparison over the logged window now (seconds; off the loop).

        Returns:
            The report summary, or `{"error": ...}` when nothing has been logged yet.
        """
        with self._report_lock:
            self.log.flush()
            try:
                result = run_drift_report(
                    self.settings.log_dir, self.reference(), self.settings.report_dir, self.spec
                )
            except NoLoggedTrafficError as exc:
                return {"error": str(exc)}
        logger.info("drift check: %s", result.summary())
        return result.to_dict()

    def start_check(self, wait_s: float) -> dict[str, Any]:
        """Start `check()` in the background (unless one runs) and wait up to `wait_s` for it.

        Returns:
            The summary when the job ends within `wait_s`, else `{"status": "running"}`; the
            result then appears in `latest_report()`.
        """
        with self._check_lock:
            if self._job is None or self._job.done():
                self._job = self._jobs.submit(self.check)
            job = self._job
        try:
            return job.result(timeout=wait_s)
        except FutureTimeout:
            return {"status": "running", "detail": "GET /drift/report for the result"}

    def latest_report(self, fmt: str = "json") -> dict[str, Any]:
        """The last report: its JSON summary, or `{"html": ...}`; `{"error": ...}` if none."""
        summary = load_latest_result(self.settings.report_dir)
        if summary is None:
            return {"error": "no drift report yet: POST /drift/check or run `recsys drift report`"}
        if fmt == "html":
            return {"html": (Path(self.settings.report_dir) / HTML_FILE).read_text()}
        return summary

    def close(self) -> None:
        """Flush the log, stop its writer and any drift job."""
        self._jobs.shutdown(wait=True)
        self.log.close()
