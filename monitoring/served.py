"""Drift monitoring of the features a service serves: the monitor, the log and the batch job.

`ServedFeatureMonitor` is what the ranking service holds: every request's (N, F) feature matrix
(plus the ranker's score of each row, when the baseline monitors predictions) goes to the
in-process `DriftMonitor` and, sampled, to the rotating `InferenceLog`.

The Evidently job never runs on the serving interpreter: `start_check` starts it as a process of
its own (``nice -n 10 python -m services drift report``, the same command an operator or the
CronJob runs), pinned to the service's exact drift reference; the routes only start it, wait a
little, or read its result. A daemon thread exports the monitor's window and the latest report as
Prometheus gauges (`monitoring.metrics`) every ``export_every_s``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from monitoring import metrics
from monitoring.baseline import Baseline
from monitoring.config import DriftSettings
from monitoring.drift import HTML_FILE, SUMMARY_FILE, list_history, load_latest_result
from monitoring.errors import FeatureMismatchError
from monitoring.inference_log import InferenceLog
from monitoring.monitor import DriftMonitor

logger = logging.getLogger(__name__)


class ServedFeatureMonitor:
    """In-process drift monitor, sampled feature log and the drift job's process of a service."""

    def __init__(
        self, baseline: Baseline, settings: DriftSettings, reference_tag: str | None = None
    ) -> None:
        """Args:
        baseline: the training baseline (features, then any monitored prediction columns).
        settings: window, thresholds, log and report directories, export interval.
        reference_tag: the exact drift-reference model the job compares against (None: the
            job's settings decide, i.e. RECSYS_ARTIFACTS__DRIFT_REFERENCE_TAG).
        """
        self.settings = settings
        self.reference_tag = reference_tag
        self.monitor = DriftMonitor(baseline, settings)
        self.log = InferenceLog(settings, [f.name for f in baseline.features])
        self._columns = len(baseline.features)
        self._job_lock = threading.Lock()
        self._job: subprocess.Popen[bytes] | None = None
        self._job_log = Path(settings.report_dir) / "drift-job.log"
        self._exported_report = 0.0
        self._stop = threading.Event()
        self._exported_seen = -1
        exporter = threading.Thread(target=self._export_loop, name="drift-export", daemon=True)
        exporter.start()

    def observe(self, features: np.ndarray, predictions: np.ndarray | None = None) -> None:
        """Record one request's (N, F) served features and (N,) ranker scores (cheap: the
        request path calls it). Scores are appended when the baseline monitors them.

        Raises:
            FeatureMismatchError: the columns match neither the baseline nor the baseline less
                its prediction column.
        """
        if features.shape[-1] + 1 == self._columns and predictions is not None:
            features = np.column_stack([features, predictions])
        elif features.shape[-1] != self._columns:
            raise FeatureMismatchError(self._columns, features.shape[-1])
        self.monitor.update(features)
        self.log.log(features)

    def status(self) -> dict[str, Any]:
        """Per-feature mean/std vs baseline, PSI, KL and status, plus the overall status."""
        return self.monitor.status()

    def start_check(self, wait_s: float) -> dict[str, Any]:
        """Start the drift job (unless one runs) and wait up to `wait_s` for its summary.

        Returns:
            The summary when the job ends within `wait_s`; ``{"status": "running"}`` while it
            runs (GET /drift/report has the result later); ``{"error": ...}`` when it failed
            (e.g. nothing logged yet).
        """
        self.log.flush()  # the job reads the files: the buffered rows go first
        with self._job_lock:
            if self._job is None or self._job.poll() is not None:
                self._job = self._spawn()
            job = self._job
        try:
            code = job.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            return {"status": "running", "detail": "GET /drift/report for the result"}
        if code != 0:
            return {"error": self._job_error(code)}
        self._export_report()
        summary = load_latest_result(self.settings.report_dir)
        return summary if summary is not None else {"error": "the drift job wrote no summary"}

    def _spawn(self) -> subprocess.Popen[bytes]:
        """``nice -n 10 python -m services drift report`` on this service's log and reports."""
        out = Path(self.settings.report_dir)
        out.mkdir(parents=True, exist_ok=True)
        command = ["nice", "-n", "10", sys.executable, "-m", "services", "drift", "report",
                   "--current", str(self.settings.log_dir), "--out", str(out)]  # fmt: skip
        env = {**os.environ}
        if self.reference_tag:
            env["RECSYS_ARTIFACTS__DRIFT_REFERENCE_TAG"] = self.reference_tag
        # The job's own Prometheus files would mix into the service's: it exports nothing.
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        with self._job_log.open("wb") as log:
            job = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        logger.info("drift job started (pid %d)", job.pid)
        return job

    def _job_error(self, code: int) -> str:
        tail = self._job_log.read_text(errors="replace").strip().splitlines()[-3:]
        return f"the drift job failed (exit {code}): {' / '.join(tail)}"

    def latest_report(self, fmt: str = "json") -> dict[str, Any]:
        """The last report: its JSON summary, or `{"html": ...}`; `{"error": ...}` if none."""
        summary = load_latest_result(self.settings.report_dir)
        if summary is None:
            return {"error": "no drift report yet: POST /drift/check or run `recsys drift report`"}
        if fmt == "html":
            return {"html": (Path(self.settings.report_dir) / HTML_FILE).read_text()}
        return summary

    def reports(self) -> dict[str, Any]:
        """The kept reports, newest first (`GET /drift/reports`)."""
        return {"reports": list_history(self.settings.report_dir)}

    def _export_report(self) -> None:
        path = Path(self.settings.report_dir) / SUMMARY_FILE
        try:
            written = path.stat().st_mtime
        except OSError:
            return
        if written > self._exported_report:
            metrics.export_report(json.loads(path.read_text()), written)
            self._exported_report = written

    def _export_loop(self) -> None:
        # The gauges carry no per-monitor label: a monitor that saw no request since its last
        # export leaves them to the one that did (one per process in service; tests build more).
        while not self._stop.wait(self.settings.export_every_s):
            seen = self.monitor.requests_seen
            try:
                if seen != self._exported_seen:
                    metrics.export_monitor(self.monitor.status())
                    self._exported_seen = seen
                self._export_report()
            except (OSError, ValueError) as exc:  # a half-written summary: next tick
                logger.warning("drift gauges not exported: %s", exc)

    def close(self) -> None:
        """Stop the exporter, flush the log and stop its writer; a running job is left to end."""
        self._stop.set()
        self.log.close()
