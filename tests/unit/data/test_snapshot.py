"""Feature snapshot files: round trip, and tampered or damaged files raise ArtifactError."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data.errors import ArtifactError
from data.features import build_snapshot
from data.movielens import load_movielens
from data.snapshot import FeatureSnapshot
from data.split import temporal_split
from data.synth import SyntheticData, write_movielens


@pytest.fixture
def snapshot(small_synth: SyntheticData, tmp_path: Path) -> FeatureSnapshot:
    dataset = load_movielens(write_movielens(small_synth, tmp_path / "ml-1m", "ml-1m"))
    return build_snapshot(dataset, temporal_split(dataset.interactions).train)


def test_round_trip(snapshot: FeatureSnapshot, tmp_path: Path):
    back = FeatureSnapshot.read(snapshot.write(tmp_path / "snap"))
    assert back.version == snapshot.version
    np.testing.assert_array_equal(back.user_matrix, snapshot.user_matrix)
    np.testing.assert_array_equal(back.item_ids, snapshot.item_ids)
    pd.testing.assert_frame_equal(back.catalog, snapshot.catalog)
    pd.testing.assert_frame_equal(back.history, snapshot.history)
    assert back.metadata == snapshot.metadata
    assert "Amélie" in back.catalog["title"].iloc[0]


def test_same_inputs_same_version(snapshot: FeatureSnapshot, small_synth: SyntheticData, tmp_path):
    dataset = load_movielens(write_movielens(small_synth, tmp_path / "again", "ml-1m"))
    again = build_snapshot(dataset, temporal_split(dataset.interactions).train)
    assert again.version == snapshot.version


def _edit_parquet(name: str, change: Callable[[pd.DataFrame], pd.DataFrame]):
    def damage(d: Path) -> None:
        (change(pd.read_parquet(d / name))).to_parquet(d / name, index=False)

    return damage


def _users_value(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[0, "user_count"] += 1
    return frame


def _history_rating(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[0, "rating"] = 5.0 if frame.loc[0, "rating"] != 5.0 else 1.0
    return frame


def _catalog_title(frame: pd.DataFrame) -> pd.DataFrame:
    frame.loc[0, "title"] = "Something Else (1999)"
    return frame


def _schema(change: Callable[[dict], None]):
    def damage(d: Path) -> None:
        schema = json.loads((d / "schema.json").read_text())
        change(schema)
        (d / "schema.json").write_text(json.dumps(schema))

    return damage


TAMPERING = [
    # a feature value edited by hand
    pytest.param(_edit_parquet("users.parquet", _users_value), "content hash", id="user-value"),
    # a rating in the served history edited
    pytest.param(_edit_parquet("history.parquet", _history_rating), "content hash", id="history"),
    # a catalog title edited
    pytest.param(_edit_parquet("catalog.parquet", _catalog_title), "content hash", id="catalog"),
    # the default row for unknown users edited
    pytest.param(
        _schema(lambda s: s["default_user"].__setitem__(0, 99.0)), "content hash", id="default"
    ),
    # written by a future schema
    pytest.param(
        _schema(lambda s: s.__setitem__("schema_version", 99)), "schema_version", id="schema-v"
    ),
    # a column the schema names is gone
    pytest.param(
        _schema(lambda s: s["user_columns"].append("user_new")), "consistent", id="column"
    ),
    # schema.json is not JSON any more
    pytest.param(lambda d: (d / "schema.json").write_text("{oops"), "JSON", id="bad-json"),
    # a truncated parquet file
    pytest.param(
        lambda d: (d / "items.parquet").write_bytes(b"PAR1 broken"), "consistent", id="truncated"
    ),
    # a file deleted
    pytest.param(lambda d: (d / "history.parquet").unlink(), "missing", id="missing-file"),
]


@pytest.mark.parametrize(("damage", "fragment"), TAMPERING)
def test_tampered_snapshot_raises(
    snapshot: FeatureSnapshot, tmp_path: Path, damage: Callable[[Path], None], fragment: str
):
    directory = snapshot.write(tmp_path / "snap")
    damage(directory)
    with pytest.raises(ArtifactError, match=fragment):
        FeatureSnapshot.read(directory)
