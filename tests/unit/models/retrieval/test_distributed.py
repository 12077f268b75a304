"""Where training runs: torchrun's environment, the device setting, the torchrun command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from data.errors import RecsysError
from data.schema import Dataset
from data.snapshot import FeatureSnapshot
from data.split import Split
from models.baselines import PopularRecommender
from models.distributed import Rank, current_rank, resolve_device, torchrun_command
from models.evaluation import evaluate_recommender
from models.train_retrieval import train_retriever
from models.two_tower import TwoTowerConfig
from services.tooling.cli import _without_option

GPU = torch.cuda.is_available()


def test_rank_comes_from_torchruns_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert current_rank() == Rank(0, 1, 0)
    assert current_rank().main
    assert not current_rank().distributed
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert current_rank() == Rank(3, 4, 1)
    assert current_rank().distributed
    assert not current_rank().main


def test_device_setting() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if GPU else "cpu")
    with pytest.raises(RecsysError, match="not one of auto, cpu, cuda"):
        resolve_device("tpu")
    if not GPU:
        with pytest.raises(RecsysError, match="RECSYS_DEVICE=cuda but torch sees no CUDA"):
            resolve_device("cuda")


def test_torchrun_command_runs_recsys_itself() -> None:
    command = torchrun_command(2, ["train", "--data-dir", "/d", "--stage", "retrieval"])
    assert Path(command[0]).name == "torchrun"
    assert command[1:4] == ["--standalone", "--nproc-per-node=2", "--no-python"]
    assert Path(command[4]).name == "recsys"
    assert command[5:] == ["train", "--data-dir", "/d", "--stage", "retrieval"]


def test_the_nproc_option_is_dropped_in_both_spellings() -> None:
    args = ["train", "--nproc", "2", "--data-dir", "/d", "--nproc=3", "--report", "r.json"]
    assert _without_option(args, "--nproc") == ["train", "--data-dir", "/d", "--report", "r.json"]


@pytest.mark.gpu
@pytest.mark.skipif(not GPU, reason="needs a CUDA device (run where one is)")
def test_trains_on_cuda_and_serves_cpu_arrays(
    synth_dataset: Dataset, synth_split: Split, fit_snapshot: FeatureSnapshot
) -> None:
    config = TwoTowerConfig(dim=32, hidden=64, epochs=4, patience=2)
    retriever, metrics = train_retriever(
        fit_snapshot, synth_split.windows, config, seed=0, progress=False, device="cuda"
    )
    assert retriever is not None
    assert retriever.parts.model is not None
    assert all(p.device.type == "cpu" for p in retriever.parts.model.parameters())
    n_items = len(synth_dataset.items)
    popular = PopularRecommender().fit(synth_split.fit, synth_dataset.items["item_id"].to_numpy())
    floor = evaluate_recommender(popular, synth_split.valid, n_items)["recall@100"]
    assert metrics["valid_recall@100"] > floor
    assert np.isfinite(retriever.parts.item_embeddings).all()
