"""Drift that needs evidence: request-scope features count once per request, the monitor and the
Evidently job agree on the same window, and too few requests flag nothing (issue 14)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring.baseline import Baseline, reference_sample
from monitoring.config import DriftSettings
from monitoring.drift import DriftSpec, run_drift_report
from monitoring.inference_log import REQUEST_COLUMN, InferenceLog, read_log
from monitoring.monitor import DriftMonitor

ROWS = 100  # candidates per request
PER_REQUEST = ("num_0", "num_3", "gender", "occupation")  # the "user's" columns


def requests(traffic, rng: np.random.Generator, n: int, shift=None) -> list[np.ndarray]:
    """`n` requests of ROWS rows; the request-scope columns repeat one value per request."""
    out = []
    cols = [traffic.names.index(c) for c in PER_REQUEST]
    for x in np.split(traffic.draw(rng, n * ROWS, shift), n):
        x[:, cols] = x[0, cols]
        out.append(x)
    return out


@pytest.fixture(scope="module")
def training(traffic) -> np.ndarray:
    return np.concatenate(requests(traffic, np.random.default_rng(7), 1_000))


@pytest.fixture(scope="module")
def scoped(training: np.ndarray, traffic) -> Baseline:
    return Baseline.from_matrix(
        training, traffic.names, categorical=traffic.categorical, per_request=PER_REQUEST
    )


@pytest.fixture(scope="module")
def reference(training: np.ndarray, traffic) -> pd.DataFrame:
    return reference_sample(training, traffic.names, max_rows=20_000)


def serve(
    tmp_path: Path, baseline: Baseline, traffic_requests: list[np.ndarray]
) -> tuple[DriftMonitor, DriftSettings]:
    """Every request to the monitor and to the log, as `ServedFeatureMonitor.observe` does."""
    settings = DriftSettings(
        window=10_000, log_dir=tmp_path / "log", log_sample_rate=1.0, log_flush_rows=1_000
    )
    monitor = DriftMonitor(baseline, settings)
    log = InferenceLog(settings, baseline.names, max_pending_writes=10**6, seed=0)
    for x in traffic_requests:
        monitor.update(x)
        log.log(x)
    log.close()
    return monitor, settings


def test_baseline_scopes_round_trip(scoped: Baseline, tmp_path: Path) -> None:
    assert scoped.per_request == list(PER_REQUEST)
    assert Baseline.from_json(scoped.to_json(tmp_path / "b.json")) == scoped
    legacy = scoped.to_dict()
    for feature in legacy["features"]:
        del feature["scope"]  # a baseline stored before scopes existed
    assert Baseline.from_dict(legacy).per_request == []


def test_request_scope_features_are_one_observation_per_request(
    tmp_path: Path, traffic, scoped: Baseline
) -> None:
    sent = requests(traffic, np.random.default_rng(1), 40)
    monitor, _ = serve(tmp_path, scoped, sent)
    status = monitor.status()
    features = status["features"]
    assert status["window"]["requests"] == 40
    assert features["num_0"]["scope"] == "request"
    assert features["num_0"]["observations"] == 40
    assert features["num_1"]["scope"] == "candidate"
    assert features["num_1"]["observations"] == 40 * 10  # rows_per_request = 10
    users = np.array([x[0, 0] for x in sent], dtype=np.float64)
    assert features["num_0"]["mean"] == pytest.approx(users.mean(), rel=1e-9)
    assert features["num_0"]["std"] == pytest.approx(users.std(), rel=1e-9)

    logged = read_log(tmp_path / "log", request_ids=True)
    assert logged[REQUEST_COLUMN].nunique() == 40
    assert logged.groupby(REQUEST_COLUMN).size().eq(10).all()


@pytest.mark.slow  # Evidently: ~10 s import, 2-3 s per report
def test_too_few_requests_flag_nothing_however_far_they_are(
    tmp_path: Path, traffic, scoped: Baseline, reference: pd.DataFrame
) -> None:
    # 30 requests from one demographic group and shifted users: drift, but on 30 observations.
    sent = requests(traffic, np.random.default_rng(2), 30, {"occupation": 3, "num_0": 2.0})
    monitor, settings = serve(tmp_path, scoped, sent)
    assert monitor.status()["status"] == "insufficient_data"
    assert monitor.status()["drifted"] == []
    spec = DriftSpec.from_baseline(scoped, min_requests=settings.min_window_requests)
    result = run_drift_report(settings.log_dir, reference, tmp_path / "out", spec)
    assert result.status == "insufficient_data"
    assert result.drifted == []
    assert not result.dataset_drift
    assert result.current_requests == 30
    assert result.summary().startswith("insufficient data")
    observations = {c.column: c.observations for c in result.columns}
    assert observations["occupation"] == 30  # one per request, not 300 rows
    assert observations["num_1"] == 300
    # the same traffic with enough evidence is flagged
    sent += requests(traffic, np.random.default_rng(3), 120, {"occupation": 3, "num_0": 2.0})
    monitor, settings = serve(tmp_path / "more", scoped, sent)
    result = run_drift_report(settings.log_dir, reference, tmp_path / "out", spec)
    assert result.status == "drift"
    assert result.drifted == monitor.status()["drifted"] == ["num_0", "occupation"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "shift",
    [None, {"num_4": 0.5, "occupation": 2}, {"num_0": 1.0, "num_1": 0.3}],
    ids=["like-training", "item-and-user-group", "user-shift"],
)
def test_monitor_and_evidently_agree_per_feature_on_one_window(
    tmp_path: Path, traffic, scoped: Baseline, reference: pd.DataFrame, shift
) -> None:
    sent = requests(traffic, np.random.default_rng(4), 400, shift)
    monitor, settings = serve(tmp_path, scoped, sent)
    status = monitor.status()
    spec = DriftSpec.from_baseline(
        scoped, threshold=settings.psi_drift, smoothing=settings.smoothing
    )
    result = run_drift_report(settings.log_dir, reference, tmp_path / "out", spec)
    assert result.current_requests == status["window"]["requests"] == 400
    for column in result.columns:
        mine = status["features"][column.column]
        assert column.observations == mine["observations"], column.column
        # The issue asks for 0.02; both run one computation on one set of rows, so they agree
        # to rounding.
        assert column.psi == pytest.approx(mine["psi"], abs=1e-9), column.column
        assert column.kl == pytest.approx(mine["kl"], abs=1e-9), column.column
    assert result.drifted == status["drifted"]


def test_log_samples_whole_requests_and_keeps_processes_apart(tmp_path: Path) -> None:
    settings = DriftSettings(
        log_dir=tmp_path, log_sample_rate=1.0, log_flush_rows=100, log_rows_per_request=0
    )
    first, second = (InferenceLog(settings, ["a"], seed=0) for _ in range(2))
    for i in range(50):
        first.log(np.full((7, 1), i, dtype=np.float32))
        second.log(np.full((7, 1), 100 + i, dtype=np.float32))
    first.close()
    second.close()
    every = read_log(tmp_path, request_ids=True)
    assert every[REQUEST_COLUMN].nunique() == 100  # no id shared by the two logs
    sample = read_log(tmp_path, max_rows=140, request_ids=True)
    sizes = sample.groupby(REQUEST_COLUMN).size()
    assert len(sizes) == 20  # 20 whole requests of 7 rows
    assert sizes.eq(7).all()
    assert REQUEST_COLUMN not in read_log(tmp_path, max_rows=140)
