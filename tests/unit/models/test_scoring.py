"""`recsys evaluate --recommendations`: batch answers scored by the protocol, known answers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from data.errors import DataError
from data.synth import generate, write_movielens
from models.scoring import score_recommendations
from services.tooling.cli import app


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A 50-movie catalog in ML-1M format."""
    return write_movielens(generate(20, 50, 300, seed=3), tmp_path / "ml", "ml-1m")


def _write(tmp_path: Path, answers: dict[int, list[int]]) -> tuple[Path, Path]:
    recs = tmp_path / "recs.jsonl"
    recs.write_text(
        "".join(json.dumps({"user_id": u, "items": i}) + "\n" for u, i in answers.items())
    )
    test = tmp_path / "test.csv"
    test.write_text("user_id,item_id,rating,timestamp\n1,10,4,5\n1,20,3,6\n2,30,5,7\n")
    return recs, test


def test_known_answer(tmp_path: Path, data_dir: Path) -> None:
    rated_by_1 = [
        int(line.split("::")[1])
        for line in (data_dir / "ratings.dat").read_text(encoding="latin-1").splitlines()
        if line.split("::")[0] == "1"
    ]
    recs, test = _write(tmp_path, {1: [10, 5, 20, rated_by_1[0]], 2: [7, 8]})
    metrics, info = score_recommendations(recs, test, data_dir)
    # User 1: hits at ranks 1 and 3 of 2 relevant; user 2: no hit.
    ndcg_1 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert metrics["recall@10"] == pytest.approx(0.5)
    assert metrics["ndcg@10"] == pytest.approx(ndcg_1 / 2)
    assert metrics["hit_rate@10"] == pytest.approx(0.5)
    assert metrics["mrr@10"] == pytest.approx(0.5)
    assert metrics["recall@100"] == pytest.approx(0.5)
    distinct = len({10, 5, 20, rated_by_1[0], 7, 8})
    assert metrics["coverage@10"] == pytest.approx(distinct / 50)
    assert info["users"] == 2
    assert info["users_without_answer"] == 0
    expected_already = sum(i in set(rated_by_1) for i in [10, 5, 20, rated_by_1[0]])
    assert info["already_rated_returned"] >= 1
    assert info["already_rated_returned"] == expected_already + sum(
        int(line.split("::")[1]) in (7, 8)
        for line in (data_dir / "ratings.dat").read_text(encoding="latin-1").splitlines()
        if line.split("::")[0] == "2"
    )


def test_a_user_without_answer_scores_zero(tmp_path: Path, data_dir: Path) -> None:
    recs, test = _write(tmp_path, {1: [10, 20]})
    metrics, info = score_recommendations(recs, test, data_dir)
    assert info["users_without_answer"] == 1
    assert metrics["recall@10"] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"user_id": 1}', "not a recommend --batch line"),  # no items
        ("not json", "not a recommend --batch line"),  # not JSON at all
        ('{"user_id": "x", "items": []}', "not a recommend --batch line"),  # user id not an integer
    ],
)
def test_bad_recommendation_lines_are_named(
    tmp_path: Path, data_dir: Path, line: str, message: str
) -> None:
    recs, test = _write(tmp_path, {})
    recs.write_text(line + "\n")
    with pytest.raises(DataError, match=message):
        score_recommendations(recs, test, data_dir)


def test_cli_scores_and_writes_json(tmp_path: Path, data_dir: Path) -> None:
    recs, test = _write(tmp_path, {1: [10, 20], 2: [30]})
    out = tmp_path / "scored.json"
    args = ["evaluate", "--recommendations", str(recs), "--test", str(test),
            "--data-dir", str(data_dir), "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    scored = json.loads(out.read_text())
    assert scored["metrics"][str(recs)]["recall@10"] == pytest.approx(1.0)
    assert scored["already_rated_returned"] >= 0


def test_cli_needs_both_files(tmp_path: Path, data_dir: Path) -> None:
    recs, _ = _write(tmp_path, {1: [10]})
    args = ["evaluate", "--recommendations", str(recs), "--data-dir", str(data_dir)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "go together" in result.output
