"""`recsys train --stage retrieval --nproc 2`: the two-tower model trained data-parallel by two
processes under torchrun (DDP over gloo), against the same command in one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from data.movielens import load_movielens
from data.split import recipe_windows
from data.synth import generate, write_movielens
from models.baselines import PopularRecommender
from models.evaluation import evaluate_recommender

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = generate(n_users=500, n_items=300, n_ratings=20_000, seed=21)
    return write_movielens(data, tmp_path_factory.mktemp("ml-1m-synth"), "ml-1m")


def _train(data_dir: Path, home: Path, *extra: str) -> tuple[dict, str]:
    recsys = Path(sys.executable).with_name("recsys")
    report = home / "report.json"
    env = {**os.environ, "BENTOML_HOME": str(home / "bentoml"), "RECSYS_DEVICE": "cpu"}
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    done = subprocess.run(
        [str(recsys), "train", "--data-dir", str(data_dir), "--stage", "retrieval",
         "--report", str(report), *extra],
        env=env, capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    return json.loads(report.read_text()), done.stdout + done.stderr


def _popular_recall(data_dir: Path) -> float:
    """Validation Recall@100 of most-popular on the same windows: the floor to beat."""
    dataset = load_movielens(data_dir)
    windows = recipe_windows(dataset.interactions)
    items = dataset.items["item_id"].to_numpy()
    popular = PopularRecommender().fit(windows.fit, items)
    return evaluate_recommender(popular, windows.valid, len(items))["recall@100"]


def _stored_versions(home: Path, name: str) -> list[str]:
    """Versions of model `name` in the store (its directory holds one folder per version)."""
    root = home / "bentoml" / "models" / name
    return sorted(p.name for p in root.iterdir() if p.is_dir()) if root.exists() else []


def test_two_processes_train_one_model_as_well_as_one_process(
    data_dir: Path, tmp_path: Path
) -> None:
    one, _ = _train(data_dir, tmp_path / "one")
    two, log = _train(data_dir, tmp_path / "two", "--nproc", "2")
    assert "--nproc-per-node=2" in log  # it went through torchrun
    single = one["validation"]["retrieval (validation)"]
    parallel = two["validation"]["retrieval (validation)"]
    assert single["processes"] == 1
    assert parallel["processes"] == 2
    # Same data and seed; the batches are split over the ranks and each rank draws its own
    # negatives, so the two runs differ by sampling noise only.
    assert abs(parallel["valid_recall@100"] - single["valid_recall@100"]) <= 0.03
    assert parallel["valid_recall@100"] > _popular_recall(data_dir)
    # Rank 0 alone stored: one two-tower model, one report.
    assert len(_stored_versions(tmp_path / "two", "two-tower")) == 1
    assert two["tags"]["two-tower"].split(":")[1] in _stored_versions(tmp_path / "two", "two-tower")
