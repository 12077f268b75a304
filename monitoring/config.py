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

    @model_validator(mode="after")
    def _check(self) -> DriftSettings:
        if not 0 < self.psi_warn < self.psi_drift:
            raise ValueError("drift thresholds need 0 < psi_warn < psi_drift")
        if not 0.0 <= self.log_sample_rate <= 1.0:
            raise ValueError("drift log_sample_rate must be within 0..1")
        return self
