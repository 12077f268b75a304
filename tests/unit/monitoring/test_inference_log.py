"""The rotating parquet inference log: sampling, rotation, bounds, threads."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monitoring.config import DriftSettings
from monitoring.errors import FeatureMismatchError, NoLoggedTrafficError
from monitoring.inference_log import InferenceLog, read_log

NAMES = ["a", "b", "c"]


def settings(tmp_path: Path, **extra: object) -> DriftSettings:
    base = {"log_dir": tmp_path / "log", "log_sample_rate": 1.0, "log_flush_rows": 50}
    return DriftSettings(**{**base, "log_max_rows": 200, "log_rows_per_request": 0, **extra})


def test_log_rotates_and_stays_bounded(tmp_path: Path) -> None:
    log = InferenceLog(settings(tmp_path), NAMES, max_pending_writes=10**6, seed=0)
    for i in range(100):
        log.log(np.full((10, 3), i, dtype=np.float32))
    log.close()
    files = sorted((tmp_path / "log").glob("features-*.parquet"))
    rows = read_log(tmp_path / "log")
    assert len(rows) <= 200
    assert log.rows_on_disk == len(rows) == 200
    assert len(files) == 4
    assert rows["a"].min() == 80  # the oldest requests were deleted, the newest kept
    assert not list((tmp_path / "log").glob("*.tmp"))


def test_sampling_rate_and_rows_per_request(tmp_path: Path) -> None:
    cfg = settings(tmp_path, log_sample_rate=0.25, log_rows_per_request=5, log_max_rows=10**6)
    log = InferenceLog(cfg, NAMES, max_pending_writes=10**6, seed=1)
    sampled = sum(log.log(np.ones((100, 3), dtype=np.float32)) for _ in range(2000))
    log.close()
    assert 400 <= sampled <= 600
    assert len(read_log(cfg.log_dir)) == 5 * sampled


def test_reopened_log_keeps_counting_existing_files(tmp_path: Path) -> None:
    for _ in range(2):
        log = InferenceLog(settings(tmp_path), NAMES, max_pending_writes=10**6, seed=0)
        for _ in range(15):
            log.log(np.zeros((10, 3), dtype=np.float32))
        log.close()
    assert log.rows_on_disk == len(read_log(tmp_path / "log")) == 200


def test_concurrent_logging_loses_no_rows(tmp_path: Path) -> None:
    log = InferenceLog(
        settings(tmp_path, log_max_rows=10**6), NAMES, max_pending_writes=10**6, seed=0
    )

    def worker(value: float) -> None:
        for _ in range(100):
            log.log(np.full((7, 3), value, dtype=np.float32))

    threads = [threading.Thread(target=worker, args=(float(v),)) for v in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    rows = read_log(tmp_path / "log")
    assert len(rows) == 6 * 100 * 7
    assert rows["a"].value_counts().to_dict() == {float(v): 700 for v in range(6)}


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda p: p / "missing", NoLoggedTrafficError),  # directory never created
        (lambda p: p, NoLoggedTrafficError),  # directory without log files
        (lambda p: _empty_file(p), NoLoggedTrafficError),  # a parquet file with no rows
    ],
)
def test_reading_an_empty_log_says_so(tmp_path: Path, make, error) -> None:
    with pytest.raises(error, match="no logged traffic"):
        read_log(make(tmp_path))


def test_wrong_width_is_refused(tmp_path: Path) -> None:
    log = InferenceLog(settings(tmp_path), NAMES)
    with pytest.raises(FeatureMismatchError):
        log.log(np.zeros((3, 4), dtype=np.float32))
    log.close()


def _empty_file(directory: Path) -> Path:
    path = directory / "features-0.parquet"
    pd.DataFrame({"a": pd.Series([], dtype="float32")}).to_parquet(path)
    return path
