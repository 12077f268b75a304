"""The Evidently drift job against generated reference and logged traffic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring.baseline import Baseline, reference_sample
from monitoring.config import DriftSettings
from monitoring.drift import DriftSpec, load_latest_result, run_drift_report
from monitoring.errors import FeatureMismatchError, NoLoggedTrafficError
from monitoring.inference_log import InferenceLog


@pytest.fixture(scope="module")
def reference(training: np.ndarray, traffic) -> pd.DataFrame:
    return reference_sample(training, traffic.names, max_rows=5_000)


def log_traffic(tmp_path: Path, traffic, shift: dict[str, float] | None) -> Path:
    cfg = DriftSettings(log_dir=tmp_path / "log", log_sample_rate=1.0, log_flush_rows=2_000)
    log = InferenceLog(cfg, traffic.names, max_pending_writes=10**6, seed=0)
    rows = traffic.draw(np.random.default_rng(21), 50_000, shift)
    for request in np.split(rows, 500):
        log.log(request)
    log.close()
    return cfg.log_dir


@pytest.mark.slow  # Evidently: ~10 s import, 2-3 s per report
@pytest.mark.parametrize(
    ("shift", "flagged"),
    [
        (None, []),  # traffic like training
        ({"num_0": 1.0}, ["num_0"]),  # one numeric feature shifted by one std
        ({"occupation": 3}, ["occupation"]),  # one demographic group only
    ],
)
def test_report_flags_exactly_the_shifted_columns(
    tmp_path: Path, traffic, baseline: Baseline, reference: pd.DataFrame, shift, flagged
) -> None:
    spec = DriftSpec.from_baseline(baseline, max_rows=5_000)
    result = run_drift_report(log_traffic(tmp_path, traffic, shift), reference, tmp_path, spec)
    assert result.drifted == flagged
    assert result.current_rows == 5_000
    assert (tmp_path / "drift-report.html").stat().st_size > 10_000
    assert json.loads((tmp_path / "drift-report.json").read_text())["metrics"]
    latest = load_latest_result(tmp_path)
    assert latest is not None
    assert latest["drifted"] == flagged
    assert result.summary().count("\n") == 0


@pytest.mark.slow
def test_monitor_and_report_agree(tmp_path: Path, traffic, baseline, reference) -> None:
    from monitoring.monitor import DriftMonitor

    shift = {"num_4": 1.5}
    monitor = DriftMonitor(baseline, DriftSettings(window=500, min_window_requests=100))
    for request in np.split(traffic.draw(np.random.default_rng(21), 50_000, shift), 500):
        monitor.update(request)
    spec = DriftSpec.from_baseline(baseline, max_rows=5_000)
    result = run_drift_report(log_traffic(tmp_path, traffic, shift), reference, tmp_path, spec)
    assert monitor.status()["drifted"] == result.drifted == ["num_4"]


@pytest.mark.parametrize(
    "make_current",
    [
        lambda p: p / "never-created",  # the log directory does not exist
        lambda p: p,  # the directory exists but holds no log file
        lambda p: pd.DataFrame({"num_0": []}),  # an empty frame
    ],
)
def test_report_without_logged_traffic_says_so(
    tmp_path: Path, baseline: Baseline, reference: pd.DataFrame, make_current
) -> None:
    with pytest.raises(NoLoggedTrafficError, match="no logged traffic"):
        run_drift_report(
            make_current(tmp_path), reference, tmp_path / "out", DriftSpec.from_baseline(baseline)
        )


@pytest.mark.slow
def test_reports_are_kept_newest_first_and_bounded(
    tmp_path: Path, traffic, baseline: Baseline, reference: pd.DataFrame
) -> None:
    from monitoring.drift import list_history

    log = log_traffic(tmp_path, traffic, None)
    spec = DriftSpec.from_baseline(baseline, max_rows=2_000)
    seen = [
        run_drift_report(log, reference, tmp_path / "out", spec, seed=s, keep=2) for s in range(3)
    ]
    kept = list_history(tmp_path / "out")
    assert len(kept) == 2  # the oldest of three was deleted
    assert kept[0]["at"] > kept[1]["at"]
    assert [k["seconds"] for k in kept] == [seen[2].seconds, seen[1].seconds]
    assert kept[0]["status"] == "ok"


def test_served_monitor_watches_the_rankers_scores_beside_the_features(
    tmp_path: Path, traffic
) -> None:
    from monitoring.served import ServedFeatureMonitor

    rng = np.random.default_rng(3)
    train = traffic.draw(rng, 20_000)
    scores = rng.normal(0.0, 1.0, len(train))
    names = [*traffic.names, "ranker_score"]
    scored = Baseline.from_matrix(np.column_stack([train, scores]), names, traffic.categorical)
    settings = DriftSettings(
        window=200, min_window_requests=50, log_dir=tmp_path / "log", report_dir=tmp_path / "r"
    )
    served = ServedFeatureMonitor(scored, settings)
    try:
        for request in np.split(traffic.draw(rng, 100 * 100), 100):
            served.observe(request, rng.normal(3.0, 1.0, len(request)))  # outputs moved 3 sd
        with pytest.raises(FeatureMismatchError):
            served.observe(request[:, :-1], None)  # neither the baseline's width nor one short
    finally:
        served.close()
    assert served.status()["drifted"] == ["ranker_score"]
