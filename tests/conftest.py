"""Fixtures shared by the whole suite (package-specific ones live in each folder's conftest)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
ML100K = REPO_ROOT.parent / "shared" / "data" / "ml-100k"


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    """The real MovieLens 100K (../shared/data/ml-100k); CI has it at the same place."""
    assert (ML100K / "u.data").exists(), f"expected MovieLens 100K at {ML100K}"
    return ML100K


def pytest_configure(config: pytest.Config) -> None:
    """Every test session writes models into its own BentoML store, never the user's.

    Set before any test module imports bentoml, which reads BENTOML_HOME once.
    """
    os.environ["BENTOML_HOME"] = tempfile.mkdtemp(prefix="recsys-test-bentoml-")
