"""Configuration of the drift monitor and the inference log."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, model_validator


class DriftSettings(BaseModel):
    """In-process drift monitor and request logging."""

    model_config = ConfigDict(frozen=True)

    window: int = 5000
    """Requests kept in the sliding window the monitor compares with the baseline."""
    psi_warn: float = 0.1
    """PSI at or above which a feature is `warn`."""
    psi_drift: float = 0.25
    """PSI at or above which a feature is `drift`."""
    log_sample_rate: float = 0.1
    """Fraction of requests whose features go to the inference log."""
    log_dir: Path = Path("var/inference-log")
    """Where the rotating parquet inference log and drift reports are written."""
    log_max_rows: int = 200_000
    """Rows kept in the inference log before the oldest file is deleted."""
    log_flush_rows: int = 5_000
    """Rows buffered in memory before the inference log writes them as one parquet file."""
    log_rows_per_request: int = 10
    """Rows logged per sampled request (an evenly strided subset; 0 = every row)."""
    bins: int = 10
    """Quantile bins per numeric feature in the training baseline."""
    max_categories: int = 30
    """Most frequent categories kept per categorical feature; the rest count as `other`."""
    rows_per_request: int = 10
    """Rows per request the monitor looks at (an evenly strided subset; 0 = every row)."""
    block_requests: int = 32
    """Requests staged before the monitor folds them into the window in one vectorised step."""
    min_window_requests: int = 100
    """Evidence needed: below this many requests in the monitor's window, or logged requests in
    the drift job's sample, every status is `insufficient_data` and nothing is flagged."""
    smoothing: float = 1e-4
    """Floor on bin frequencies before PSI/KL, so empty bins stay finite."""
    report_max_rows: int = 20_000
    """Logged rows the Evidently job samples at most (keeps it fast on large logs)."""
    report_dir: Path = Path("reports/drift")
    """Where `recsys drift report` writes its HTML and JSON by default."""
    report_history: int = 50
    """Report summaries kept in `report_dir`/history (listed at GET /drift/reports)."""
    export_every_s: float = 15.0
    """How often the served monitor's window and the last report become Prometheus gauges."""

    @model_validator(mode="after")
    def _check(self) -> DriftSettings:
        if not 0 < self.psi_warn < self.psi_drift:
            raise ValueError("drift thresholds need 0 < psi_warn < psi_drift")
        if not 0.0 <= self.log_sample_rate <= 1.0:
            raise ValueError("drift log_sample_rate must be within 0..1")
        if min(self.window, self.block_requests, self.max_categories) < 1 or self.bins < 2:
            raise ValueError("drift needs window, block_requests, max_categories >= 1, bins >= 2")
        if self.log_flush_rows < 1 or self.log_max_rows < self.log_flush_rows:
            raise ValueError("drift needs 1 <= log_flush_rows <= log_max_rows")
        if self.report_history < 1 or self.export_every_s <= 0:
            raise ValueError("drift needs report_history >= 1 and export_every_s > 0")
        if not 0.0 < self.smoothing < 0.01:
            raise ValueError("drift smoothing must be within (0, 0.01)")
        return self
