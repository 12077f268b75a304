"""DriftMonitor and Baseline on generated traffic (no mocks)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from monitoring.baseline import Baseline
from monitoring.config import DriftSettings
from monitoring.errors import FeatureMismatchError
from monitoring.monitor import DriftMonitor

SETTINGS = DriftSettings(window=400, min_window_requests=100, block_requests=16)
NAMES = [f"num_{i}" for i in range(10)] + ["gender", "occupation"]  # as in conftest


@pytest.fixture(autouse=True)
def _same_names(traffic) -> None:
    assert traffic.names == NAMES


def serve(
    monitor: DriftMonitor, traffic, rng: np.random.Generator, requests: int, **shift: float
) -> None:
    """Feed `requests` requests of 100 candidate rows each."""
    rows = traffic.draw(rng, requests * 100, shift or None)
    for request in np.split(rows, requests):
        monitor.update(request)


def test_baseline_round_trips_through_json(baseline: Baseline, tmp_path) -> None:
    again = Baseline.from_json(baseline.to_json(tmp_path / "baseline.json"))
    assert again == baseline
    assert json.loads((tmp_path / "baseline.json").read_text())["n_rows"] == baseline.n_rows


def test_baseline_bins_follow_training_quantiles(baseline: Baseline) -> None:
    normal = baseline.features[0]
    assert normal.kind == "numeric"
    assert len(normal.freq) == 10
    np.testing.assert_allclose(normal.freq, 0.1, atol=0.005)
    occupation = baseline.features[NAMES.index("occupation")]
    assert occupation.cuts == tuple(float(c) for c in range(8))
    np.testing.assert_allclose(occupation.freq[:-1], np.arange(1, 9) / 36, atol=0.01)
    assert occupation.freq[-1] == 0.0  # "other" never seen in training


def test_nan_inf_and_out_of_range_land_in_edge_bins(baseline: Baseline) -> None:
    binning = baseline.binning()
    x = np.array(
        [
            [np.nan] * len(NAMES),  # NaN: lowest bin (low edge bin / "other")
            [-1e30] * len(NAMES),  # far below the training range: low edge bin
            [np.inf] * len(NAMES),  # inf: high edge bin
            [1e30] * len(NAMES),  # far above: high edge bin (categoricals: "other")
        ],
        dtype=np.float64,
    )
    bins = binning.raw_bins(x) - binning.starts  # (F, 4) local raw bins
    for j, edges in enumerate(binning.edges):
        assert bins[j].tolist() == [0, 0, len(edges), len(edges)], NAMES[j]
    counts = binning.fold(binning.raw_counts(x))
    assert counts.sum() == 4 * len(NAMES)


def test_monitor_never_crashes_on_bad_rows(baseline: Baseline) -> None:
    monitor = DriftMonitor(baseline, SETTINGS.model_copy(update={"min_window_requests": 1}))
    bad = np.full((100, len(NAMES)), np.nan, dtype=np.float32)
    bad[::2] = np.inf
    monitor.update(bad)
    monitor.update(np.zeros((0, len(NAMES)), dtype=np.float32))  # empty request: ignored
    status = monitor.status()
    assert status["window"]["requests"] == 1
    assert status["features"]["num_0"]["missing_share"] == 1.0
    assert status["features"]["num_0"]["mean"] is None
    json.dumps(status, allow_nan=False)  # servable as strict JSON


@pytest.mark.parametrize(
    "shape",
    [
        (100, len(NAMES) - 1),  # one column short
        (len(NAMES),),  # a vector, not a matrix
    ],
)
def test_wrong_shape_raises_a_clear_error(baseline: Baseline, shape: tuple[int, ...]) -> None:
    monitor = DriftMonitor(baseline, SETTINGS)
    with pytest.raises(FeatureMismatchError, match="expected 12 features"):
        monitor.update(np.zeros(shape, dtype=np.float32))


def test_traffic_like_training_raises_at_most_one_false_alarm_in_20_windows(
    traffic,
    baseline: Baseline,
) -> None:
    rng = np.random.default_rng(11)
    alarms, worst = 0, 0.0
    for _ in range(20):
        monitor = DriftMonitor(baseline, SETTINGS)
        serve(monitor, traffic, rng, SETTINGS.window)
        status = monitor.status()
        assert not status["drifted"], status["drifted"]
        alarms += status["status"] != "ok"
        worst = max(worst, *(f["psi"] for f in status["features"].values()))
    assert alarms <= 1, f"{alarms} windows not ok (worst PSI {worst:.3f})"


@pytest.mark.parametrize(
    ("shift", "flagged"),
    [
        ({"num_0": 1.0}, ["num_0"]),  # one normal feature's mean moves by one std
        ({"num_4": 1.5}, ["num_4"]),  # an exponential feature moves by 1.5 scale units
        ({"occupation": 3}, ["occupation"]),  # only one demographic group is served
    ],
)
def test_shifted_traffic_flags_exactly_the_shifted_features(
    traffic, baseline: Baseline, shift: dict[str, float], flagged: list[str]
) -> None:
    monitor = DriftMonitor(baseline, SETTINGS)
    serve(monitor, traffic, np.random.default_rng(5), SETTINGS.window, **shift)
    status = monitor.status()
    assert status["drifted"] == flagged
    assert status["status"] == "drift"
    assert set(status["features"]) == set(NAMES)


def test_window_slides_back_to_ok_after_drift_passes(traffic, baseline: Baseline) -> None:
    monitor = DriftMonitor(baseline, SETTINGS)
    rng = np.random.default_rng(3)
    serve(monitor, traffic, rng, SETTINGS.window, num_0=2.0)
    assert monitor.status()["drifted"] == ["num_0"]
    serve(monitor, traffic, rng, SETTINGS.window + SETTINGS.block_requests)
    status = monitor.status()
    assert status["status"] == "ok", status["warned"]
    assert SETTINGS.window <= status["window"]["requests"] < SETTINGS.window + 16


def test_window_moments_match_numpy(traffic, baseline: Baseline) -> None:
    settings = SETTINGS.model_copy(update={"rows_per_request": 0})  # every row
    monitor = DriftMonitor(baseline, settings)
    rows = traffic.draw(np.random.default_rng(9), 150 * 100)
    for request in np.split(rows, 150):
        monitor.update(request)
    features = monitor.status()["features"]
    expected = rows.astype(np.float64)
    for j, name in enumerate(NAMES):
        assert features[name]["mean"] == pytest.approx(expected[:, j].mean(), rel=1e-9)
        assert features[name]["std"] == pytest.approx(expected[:, j].std(), rel=1e-9)


def test_concurrent_updates_all_count(traffic, baseline: Baseline) -> None:
    settings = SETTINGS.model_copy(update={"window": 10_000, "rows_per_request": 0})
    monitor = DriftMonitor(baseline, settings)
    requests = [traffic.draw(np.random.default_rng(i), 37) for i in range(8)]

    def worker(x: np.ndarray) -> None:
        for _ in range(250):
            monitor.update(x)

    threads = [threading.Thread(target=worker, args=(x,)) for x in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    status = monitor.status()
    assert status["requests_seen"] == 2000
    assert status["window"]["requests"] == 2000
    assert status["window"]["rows"] == 2000 * 37
    mean = np.concatenate(requests).astype(np.float64).mean(axis=0)
    assert status["features"]["num_1"]["mean"] == pytest.approx(mean[1], rel=1e-9)


def test_categoricals_count_unseen_codes_as_other(traffic, baseline: Baseline) -> None:
    binning = baseline.binning()
    j = NAMES.index("occupation")
    x = np.zeros((3, len(NAMES)))
    x[:, j] = [2.0, 2.5, 99.0]  # a training code, a non-code, an unseen code
    folded = binning.fold(binning.raw_counts(x))[binning.offsets[j] : binning.offsets[j + 1]]
    assert folded[2] == 1
    assert folded[-1] == 2
    assert traffic.categorical == ["gender", "occupation"]
