"""Errors the monitoring package raises on purpose (all under `RecsysError`)."""

from __future__ import annotations

from data.errors import RecsysError


class MonitoringError(RecsysError):
    """Root of the monitoring package's errors."""


class FeatureMismatchError(MonitoringError):
    """A feature matrix does not have the columns the baseline was built with."""

    def __init__(self, expected: int | list[str], got: int | list[str]) -> None:
        super().__init__(f"feature matrix: expected {expected} features, got {got}")
        self.expected = expected
        self.got = got


class NoLoggedTrafficError(MonitoringError):
    """A drift report was asked for but the inference log holds no rows."""

    def __init__(self, where: str) -> None:
        super().__init__(
            f"no logged traffic in {where}: serve some requests with request logging on "
            "(RECSYS_DRIFT__LOG_SAMPLE_RATE > 0) or point --current at a log directory"
        )
        self.where = where
