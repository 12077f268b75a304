"""Drift as Prometheus time series: per-feature gauges of the monitor window and the last report.

``source`` says which figure: ``monitor`` (the in-process sliding window, exported every few
seconds by `ServedFeatureMonitor`) or ``report`` (the last Evidently job). Statuses are numbers
so a graph can plot them: -1 insufficient_data, 0 ok, 1 warn, 2 drift. BentoML serves metrics
in Prometheus' multiprocess mode: these gauges keep the most recent value any live process set.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Gauge

STATUS_VALUE = {"insufficient_data": -1, "ok": 0, "warn": 1, "drift": 2}
_MODE = "livemostrecent"

PSI = Gauge("recsys_drift_psi", "PSI per feature", ["feature", "source"], multiprocess_mode=_MODE)
KL = Gauge(
    "recsys_drift_kl", "KL(served || training) per feature", ["feature", "source"],
    multiprocess_mode=_MODE,
)  # fmt: skip
STATUS = Gauge(
    "recsys_drift_status",
    "Drift status per feature: -1 insufficient_data, 0 ok, 1 warn, 2 drift",
    ["feature", "source"],
    multiprocess_mode=_MODE,
)
OBSERVATIONS = Gauge(
    "recsys_drift_observations",
    "Values behind a feature's figures (requests for request-scope features, rows otherwise)",
    ["feature", "source"],
    multiprocess_mode=_MODE,
)
WINDOW_REQUESTS = Gauge(
    "recsys_drift_window_requests", "Requests behind the figures", ["source"],
    multiprocess_mode=_MODE,
)  # fmt: skip
DRIFTED = Gauge(
    "recsys_drift_drifted_features", "Features whose status is drift", ["source"],
    multiprocess_mode=_MODE,
)  # fmt: skip
REPORT_TIME = Gauge(
    "recsys_drift_report_timestamp_seconds", "When the last drift report was written (Unix time)",
    multiprocess_mode=_MODE,
)  # fmt: skip


def export_monitor(status: dict[str, Any]) -> None:
    """Set the ``monitor`` gauges from `DriftMonitor.status()`."""
    for name, feature in status["features"].items():
        PSI.labels(name, "monitor").set(feature["psi"])
        KL.labels(name, "monitor").set(feature["kl"])
        STATUS.labels(name, "monitor").set(STATUS_VALUE[feature["status"]])
        OBSERVATIONS.labels(name, "monitor").set(feature["observations"])
    WINDOW_REQUESTS.labels("monitor").set(status["window"]["requests"])
    DRIFTED.labels("monitor").set(len(status["drifted"]))


def export_report(summary: dict[str, Any], written_at: float) -> None:
    """Set the ``report`` gauges from a report summary (`DriftResult.to_dict()`)."""
    enough = summary.get("status") != "insufficient_data"
    for column in summary["columns"]:
        name = column["column"]
        if column["psi"] is not None:
            PSI.labels(name, "report").set(column["psi"])
        if column["kl"] is not None:
            KL.labels(name, "report").set(column["kl"])
        state = ("drift" if column["drifted"] else "ok") if enough else "insufficient_data"
        STATUS.labels(name, "report").set(STATUS_VALUE[state])
        OBSERVATIONS.labels(name, "report").set(column.get("observations", 0))
    WINDOW_REQUESTS.labels("report").set(summary.get("current_requests", 0))
    DRIFTED.labels("report").set(len(summary.get("drifted", [])))
    REPORT_TIME.set(written_at)
