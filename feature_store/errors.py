"""Errors of the online feature store, under the project's root `RecsysError`."""

from __future__ import annotations

from data.errors import RecsysError


class FeatureStoreError(RecsysError):
    """Root of the feature store's errors."""


class FeatureStoreUnavailable(FeatureStoreError):
    """Redis could not answer: refused, timed out, cluster down, or the circuit is open."""


class FeatureStoreTimeout(FeatureStoreUnavailable):
    """Redis did not answer within the socket timeout."""


class FeatureDataError(FeatureStoreError):
    """Redis answered, but with data the store cannot use (no active version, bad metadata)."""


class NoActiveVersion(FeatureDataError):
    """``rs:v1:active`` is missing, or points at a version whose metadata is gone (stale)."""


class VersionMismatch(FeatureDataError):
    """The active version in Redis is not the feature version the served models expect."""

    def __init__(self, expected: str, got: str) -> None:
        super().__init__(f"active feature version in Redis is {got}, the models expect {expected}")
        self.expected = expected
        self.got = got


class MaterializationError(FeatureStoreError):
    """Writing a snapshot into Redis failed or its verification found a mismatch."""

    def __init__(self, version: str, expected: object, got: object) -> None:
        super().__init__(f"materialization of version {version}: expected {expected}, got {got}")
        self.version = version
        self.expected = expected
        self.got = got
