"""Issue 11: the backtest measures exactly what a user deploys.

A user checks a deployment with the project's own commands: `recsys data split`, `recsys train`
on the train part, `recsys recommend --batch` and `recsys evaluate --recommendations`. The
backtest (`recsys evaluate`) applies the same recipe at the same cut in memory; both must give
the same figures, and no answer may hold a movie the user rated in the training files.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from data.split_files import write_split
from models.scoring import score_recommendations
from models.train import evaluate_all, train_all

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_as_deployed_equals_the_backtest(
    synth_dir: Path,
    tmp_path: Path,
    pinned_artifacts_env: Callable[[Mapping[str, str]], dict[str, str]],
) -> None:
    files = write_split(synth_dir, tmp_path / "split")
    deployed = train_all(files.train_dir, seed=0, quick=True, progress=False)
    env = {**os.environ, **pinned_artifacts_env(deployed.tags)}
    recsys = Path(sys.executable).with_name("recsys")
    scored = {}
    # `--stage retrieval` answers the first stage as served: the fused candidates.
    for stage, row in (("two-stage", "two-stage"), ("retrieval", "fused candidates")):
        out = tmp_path / f"{stage}.jsonl"
        args = [str(recsys), "recommend", "--batch", str(files.users_file), "-k", "100",
                "--out", str(out), "--stage", stage]  # fmt: skip
        done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        scored[row], info = score_recommendations(out, files.test_file, files.train_dir)
        assert info["already_rated_returned"] == 0
        assert info["users_without_answer"] == 0
    backtest = evaluate_all(synth_dir, seed=0, quick=True, progress=False)
    for row, metrics in scored.items():
        expected = {name: backtest.metrics[row][name] for name in metrics}
        assert metrics == pytest.approx(expected, abs=1e-9), row
