"""The ranker through the BentoML model store: round trip and refusals."""

from __future__ import annotations

import json
from pathlib import Path

import bentoml
import numpy as np
import pytest

from data.errors import ArtifactError
from feature_store.memory_store import MemoryFeatureStore
from models import artifacts
from models.config import RankingSettings
from models.ranker import FEATURE_NAMES, Ranker


def test_ranker_round_trips_through_the_model_store(
    trained_ranker: tuple[Ranker, dict[str, float]], fit_store: MemoryFeatureStore
) -> None:
    ranker, metrics = trained_ranker
    metadata = artifacts.base_metadata(fit_store.version, validation=metrics)
    tag = artifacts.save_ranker(ranker, metadata)

    loaded = artifacts.load_ranker(tag, RankingSettings(nthread=1))
    user_id = int(fit_store.snapshot.user_ids[3])
    item_ids = fit_store.snapshot.item_ids[:50]
    scores = np.linspace(1.0, 0.0, len(item_ids), dtype=np.float32)
    want = ranker.rank(user_id, item_ids, scores, fit_store, k=10)
    got = loaded.rank(user_id, item_ids, scores, fit_store, k=10)
    np.testing.assert_array_equal(got.item_ids, want.item_ids)
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6)
    np.testing.assert_array_equal(loaded.assembler.demo_lift, ranker.assembler.demo_lift)

    # The metadata describes the files it sits beside: XGBoost's own JSON, read without the
    # project's loader, has as many trees and the same feature list.
    stored = bentoml.models.get(tag)
    booster = json.loads((Path(stored.path) / artifacts.RANKER_BOOSTER_FILE).read_text())
    gbtree = booster["learner"]["gradient_booster"]["model"]
    assert len(gbtree["trees"]) == stored.info.metadata["trees"] > 0
    assert booster["learner"]["feature_names"] == stored.info.metadata["feature_names"]
    assert stored.info.metadata["feature_names"] == list(FEATURE_NAMES)
    assert stored.info.metadata["feature_version"] == fit_store.version
    assert stored.info.metadata["schema_version"] == artifacts.SCHEMA_VERSION
    assert not list(Path(stored.path).glob("*.pkl"))  # pickle-free


def _store_tampered(ranker: Ranker, field: str, value: object) -> str:
    """Save `ranker`, then overwrite one metadata or spec field in the stored copy."""
    metadata = artifacts.base_metadata("v")
    if field == "schema_version":
        metadata[field] = value
    tag = artifacts.save_ranker(ranker, metadata)
    if field == "feature_names":
        spec_path = Path(bentoml.models.get(tag).path) / artifacts.RANKER_SPEC_FILE
        spec = json.loads(spec_path.read_text())
        spec[field] = value
        spec_path.write_text(json.dumps(spec))
    return tag


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        # a model written by an incompatible version of the code
        ("schema_version", 999, "schema_version"),
        # a model trained with another feature list than this code assembles
        ("feature_names", ["user_count", "item_count"], "item_count"),
    ],
)
def test_load_ranker_refuses_incompatible_artifacts(
    trained_ranker: tuple[Ranker, dict[str, float]], field: str, value: object, message: str
) -> None:
    tag = _store_tampered(trained_ranker[0], field, value)
    with pytest.raises(ArtifactError, match=message):
        artifacts.load_ranker(tag)


def test_load_ranker_names_a_missing_tag() -> None:
    with pytest.raises(ArtifactError, match="ranker:doesnotexist"):
        artifacts.load_ranker("ranker:doesnotexist")
