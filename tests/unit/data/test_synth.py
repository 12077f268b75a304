"""The synthetic generator: determinism, planted structure, and its CLI command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from data.movielens import load_movielens
from data.synth import SYNTH_GENRES, SyntheticData, generate
from services.tooling.cli import app


def _in_cluster(data: SyntheticData) -> np.ndarray:
    """Per rating: does the movie lie in one of the rater's planted clusters?"""
    users = data.interactions["user_id"].to_numpy() - 1
    pos = np.searchsorted(data.items["item_id"].to_numpy(), data.interactions["item_id"])
    cluster = data.item_cluster[pos]
    return (cluster == data.user_cluster[users]) | (cluster == data.user_second_cluster[users])


def test_same_seed_same_data_other_seed_other_data():
    a, b, c = generate(40, 30, 500, seed=1), generate(40, 30, 500, seed=1), generate(40, 30, 500, 2)
    assert a.interactions.equals(b.interactions)
    assert a.users.equals(b.users)
    assert a.items.equals(b.items)
    assert not a.interactions.equals(c.interactions)


def test_sizes_and_canonical_shape(small_synth: SyntheticData):
    inter = small_synth.interactions
    assert len(inter) == 900
    assert inter["user_id"].nunique() == 60  # every user rates
    assert len(small_synth.items) == 50
    assert not inter.duplicated(["user_id", "item_id"]).any()
    assert set(inter["rating"]) <= {x / 2 for x in range(1, 11)}
    assert str(inter["rating"].dtype) == "float32"
    assert small_synth.items["item_id"].is_monotonic_increasing
    assert all(set(g) <= set(SYNTH_GENRES) and g for g in small_synth.items["genres"])


def test_timestamps_strictly_increase_per_user(small_synth: SyntheticData):
    steps = small_synth.interactions.groupby("user_id")["timestamp"].diff().dropna()
    assert (steps > 0).all()


def test_planted_structure_is_there():
    data = generate(400, 400, 16_000, seed=3)
    inside = _in_cluster(data)
    ratings = data.interactions["rating"].to_numpy()
    assert inside.mean() > 0.6  # most ratings fall in the user's clusters
    assert ratings[inside].mean() > ratings[~inside].mean() + 1.0  # and score higher there
    counts = data.interactions["item_id"].value_counts().to_numpy()
    assert counts[: len(counts) // 10].sum() > 0.25 * counts.sum()  # top 10% of movies: >25%
    # Each cluster's items mostly carry its core genres.
    for c, core in enumerate(data.cluster_genres):
        genres = data.items["genres"][data.item_cluster == c]
        assert np.mean([bool(set(g) & set(core)) for g in genres]) > 0.8


def test_demographics_follow_the_clusters():
    data = generate(2000, 200, 20_000, seed=4)
    by_cluster = data.users.groupby(data.user_cluster)["age_bucket"].agg(
        lambda s: s.value_counts(normalize=True).iloc[0]
    )
    assert by_cluster.mean() > 0.35  # a peaked age bucket per cluster (uniform would be 1/7)


def test_preferred_items_are_in_the_users_clusters(small_synth: SyntheticData):
    preferred = small_synth.preferred_items(1)
    pos = np.searchsorted(small_synth.items["item_id"].to_numpy(), preferred)
    clusters = {small_synth.user_cluster[0], small_synth.user_second_cluster[0]}
    assert set(small_synth.item_cluster[pos]) <= clusters
    assert len(preferred) > 0


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((10, 10, 5), "n_ratings >= n_users"),  # fewer ratings than users
        ((10, 10, 60), "do not fit"),  # more than half of every user's catalog
        ((0, 10, 5), "n_users >= 1"),  # no users at all
    ],
)
def test_impossible_sizes_are_refused(args: tuple[int, int, int], fragment: str):
    with pytest.raises(ValueError, match=fragment):
        generate(*args, seed=0)


def test_cli_synth_writes_loadable_files(tmp_path: Path):
    out = tmp_path / "syn"
    args = ["data", "synth", "--users", "30", "--items", "25", "--ratings", "300"]
    result = CliRunner().invoke(app, [*args, "--format", "ml-1m", "--out", str(out), "--seed", "5"])
    assert result.exit_code == 0, result.output
    dataset = load_movielens(out)
    assert (dataset.n_users, len(dataset.items), len(dataset.interactions)) == (30, 25, 300)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (["--format", "ml-2m"], "unknown format"),  # not a format the generator writes
        (["--ratings", "5"], "n_ratings >= n_users"),  # sizes the generator refuses
    ],
)
def test_cli_synth_errors_are_one_line(tmp_path: Path, extra: list[str], fragment: str):
    args = ["data", "synth", "--users", "30", "--items", "25", "--ratings", "300"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path), *extra])
    assert result.exit_code == 1
    assert fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
