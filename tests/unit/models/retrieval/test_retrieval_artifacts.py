"""The `two-tower` model in the BentoML store: round trip and refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import bentoml
import faiss
import numpy as np
import pytest

from data.errors import ArtifactError
from data.snapshot import FeatureSnapshot
from data.split import Split
from models.artifacts import get_model, load_two_tower, save_two_tower
from models.retriever import Retriever

pytestmark = pytest.mark.slow  # needs the trained retriever fixture


@pytest.fixture(scope="module")
def saved_tag(retriever: Retriever, fit_snapshot: FeatureSnapshot) -> str:
    metadata = {
        "feature_version": fit_snapshot.version,
        "dataset_fingerprint": fit_snapshot.metadata["dataset_fingerprint"],
        "metrics": {"valid_recall@100": 0.5},
    }
    return save_two_tower(retriever, metadata)


def test_round_trip_gives_same_results(
    retriever: Retriever, saved_tag: str, synth_split: Split
) -> None:
    loaded = load_two_tower(saved_tag, synth_split.train)
    users = synth_split.test["user_id"].unique()[:50]
    np.testing.assert_array_equal(loaded.item_ids, retriever.item_ids)
    np.testing.assert_array_equal(loaded.parts.item_embeddings, retriever.parts.item_embeddings)
    got, got_scores = loaded.recommend(users, 100)
    want, want_scores = retriever.recommend(users, 100)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_allclose(got_scores, want_scores, atol=1e-6)
    cold = loaded.retrieve(123_456_789, k=10)
    assert cold.cold_start
    assert cold.item_ids.tolist() == retriever.retrieve(123_456_789, k=10).item_ids.tolist()
    assert loaded.parts.model is None  # serving loads the numpy user tower only
    with_model = load_two_tower(saved_tag, synth_split.train, with_model=True)
    assert with_model.parts.model is not None
    np.testing.assert_array_equal(with_model.recommend(users, 100)[0], want)


def test_serving_loads_the_retriever_without_torch(saved_tag: str) -> None:
    """A served retriever starts without importing torch (seconds of start time here)."""
    script = (
        "import sys; import pandas as pd; from models.artifacts import load_two_tower; "
        f"r = load_two_tower({saved_tag!r}, "
        "pd.DataFrame({'user_id': [1], 'item_id': [1], 'timestamp': [0]})); "
        "print(r.retrieve(1, k=5).item_ids.size, 'torch' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert done.stdout.split()[-2:] == ["5", "False"], done.stdout + done.stderr


def test_metadata_and_files(saved_tag: str, fit_snapshot: FeatureSnapshot) -> None:
    model = get_model(saved_tag)
    meta = model.info.metadata
    assert meta["feature_version"] == fit_snapshot.version
    assert meta["dataset_fingerprint"] == fit_snapshot.metadata["dataset_fingerprint"]
    assert meta["index_kind"] == "flat"
    assert meta["index_recall_at_100"] == 1.0
    assert meta["schema_version"] == 1
    files = {p.name for p in Path(model.path).iterdir()}
    assert {"state_dict.pt", "config.json", "index.faiss", "item_embeddings.npy"} <= files
    assert {"user_tower_w1.npy", "user_tower_history_emb.npy"} <= files
    assert not any(name.endswith((".pkl", ".pickle")) for name in files)
    # The stored files agree with each other, read with the libraries' own loaders: the FAISS
    # index holds one row per stored embedding, of the configured size.
    index = faiss.read_index(str(Path(model.path) / "index.faiss"))
    embeddings = np.load(Path(model.path) / "item_embeddings.npy")
    config = json.loads((Path(model.path) / "config.json").read_text())
    assert index.ntotal == len(embeddings) == len(fit_snapshot.item_ids)
    assert index.d == embeddings.shape[1] == config["config"]["dim"]
    assert config["n_items"] == len(embeddings)


def _copy_with(saved_tag: str, change: str) -> str:
    """A new two-tower model identical to `saved_tag` except for one deliberate defect."""
    source = get_model(saved_tag)
    meta = dict(source.info.metadata)
    if change == "schema":
        meta["schema_version"] = 999
    with bentoml.models.create("two-tower", metadata=meta) as target:
        for path in Path(source.path).iterdir():
            if path.is_file() and path.name != "model.yaml":
                (Path(target.path) / path.name).write_bytes(path.read_bytes())
        if change == "dim":
            spec_path = Path(target.path) / "config.json"
            spec = json.loads(spec_path.read_text())
            spec["config"]["dim"] = 8
            spec_path.write_text(json.dumps(spec))
    return str(target.tag)


@pytest.mark.parametrize(
    "change",
    [
        "schema",  # written by an incompatible version of the code
        "dim",  # config says another embedding size than the stored arrays
    ],
)
def test_mismatched_artifact_is_refused(saved_tag: str, change: str, synth_split: Split) -> None:
    tag = _copy_with(saved_tag, change)
    with pytest.raises(ArtifactError, match=tag.split(":")[1]):
        load_two_tower(tag, synth_split.train)


def test_missing_tag_is_refused(synth_split: Split) -> None:
    with pytest.raises(ArtifactError, match="recsys train"):
        load_two_tower("two-tower:doesnotexist", synth_split.train)
