"""`recsys recommend`: one-off and batch answers through the pipeline the service runs."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from services.tooling.cli import app

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.usefixtures("service_env")
@pytest.mark.parametrize("stage", ["two-stage", "retrieval"])
def test_batch_writes_one_line_per_user(tmp_path: Path, history: pd.DataFrame, stage: str) -> None:
    known = [int(u) for u in history["user_id"].unique()[:3]]
    users = tmp_path / "users.txt"
    users.write_text("\n".join(str(u) for u in [*known, 55_000_000]) + "\n# trailing comment\n")
    out = tmp_path / "recs.jsonl"
    result = CliRunner().invoke(
        app,
        ["recommend", "--batch", str(users), "-k", "7", "--out", str(out), "--stage", stage],
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["user_id"] for line in lines] == [*known, 55_000_000]
    for line in lines:
        assert len(line["items"]) == 7
        seen = set(history.loc[history["user_id"] == line["user_id"], "item_id"])
        assert not set(line["items"]) & seen


@pytest.mark.usefixtures("service_env")
def test_one_user_prints_the_recommend_body(history: pd.DataFrame) -> None:
    user_id = int(history["user_id"].iloc[0])
    result = CliRunner().invoke(app, ["recommend", "--user-id", str(user_id), "-k", "3"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output[result.output.index("{") :])
    assert body["user_id"] == user_id
    assert len(body["recommendations"]) == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--batch", "/no/such/users.txt"], "does not exist"),  # missing users file
        ([], "exactly one of --user-id or --batch"),  # neither a user nor a batch
    ],
)
def test_recommend_errors_are_one_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["recommend", *args])
    assert result.exit_code == 1
    assert message in result.output
