"""The drift-reference artifact and `recsys drift report` on an empty log."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from models.artifacts import load_drift_reference, save_drift_reference
from monitoring.baseline import Baseline, reference_sample
from services.tooling.cli import app


@pytest.fixture(scope="module")
def stored(training: np.ndarray, baseline: Baseline, traffic) -> str:
    sample = reference_sample(training, traffic.names, max_rows=2_000)
    return save_drift_reference(baseline, sample, feature_version="test", ranker="ranker:x")


def test_drift_reference_round_trips(stored: str, baseline: Baseline, traffic) -> None:
    loaded, sample = load_drift_reference(stored)
    assert loaded == baseline
    assert list(sample.columns) == traffic.names
    assert len(sample) == 2_000
    assert sample.dtypes.unique().tolist() == [np.dtype("float32")]


def test_cli_report_with_empty_log_fails_in_one_line(
    stored: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECSYS_ARTIFACTS__DRIFT_REFERENCE_TAG", stored)
    from services.settings import get_settings

    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            app, ["drift", "report", "--current", str(tmp_path), "--out", str(tmp_path / "o")]
        )
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert "no logged traffic" in result.output
    assert "Traceback" not in result.output
