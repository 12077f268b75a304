"""`recsys train --report FILE.json`: what training prints, machine-readable (issue 15)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.train import TrainReport

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _peak_from_proc() -> float:
    """The kernel's own peak RSS of this process (VmHWM, KiB), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/self/status")


def test_the_report_holds_tags_validation_seconds_and_memory(trained_models: TrainReport) -> None:
    data = json.loads(json.dumps(trained_models.to_dict()))  # JSON round trip
    assert set(data["seconds"]) == set(data["peak_rss_mb"])  # memory after every timed step
    assert data["total_seconds"] == pytest.approx(sum(data["seconds"].values()), abs=0.05)
    peaks = list(data["peak_rss_mb"].values())
    assert peaks == sorted(peaks)  # a peak only grows
    assert 0 < data["max_peak_rss_mb"] <= _peak_from_proc() + 1
    assert {"two-tower", "ranker", "feature-snapshot"} <= set(data["tags"])
    assert data["validation"]


def test_recsys_train_writes_the_report(synth_dir: Path, tmp_path: Path) -> None:
    # Full (not quick) training of the small synthetic set also pins a crash found here: its
    # validation window rates no movie with few ratings, and tuning the content source on no
    # pairs raised IndexError; it now keeps its default parameters.
    out = tmp_path / "train.json"
    recsys = Path(sys.executable).with_name("recsys")
    env = {**os.environ, "BENTOML_HOME": str(tmp_path / "bentoml")}  # a store of its own
    done = subprocess.run(
        [str(recsys), "train", "--data-dir", str(synth_dir), "--stage", "retrieval",
         "--report", str(out)],
        env=env, capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(out.read_text())
    assert "two-tower" in report["tags"]
    assert report["seconds"]["retrieval"] > 0
    assert report["max_peak_rss_mb"] > 100  # torch alone is more
    assert str(out) in done.stdout.replace("\n", "")
