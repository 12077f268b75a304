"""`recsys data stats` on the real MovieLens 100K (DESIGN.md's figures)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from services.tooling.cli import app


def test_stats_json_on_ml100k(ml100k_dir: Path):
    result = CliRunner().invoke(app, ["data", "stats", str(ml100k_dir), "--json"])
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["format"] == "ml-100k"
    assert (stats["users"], stats["items"], stats["ratings"]) == (943, 1682, 100_000)
    assert stats["has_demographics"] is True
    assert stats["first_timestamp"] < stats["last_timestamp"]
    assert stats["dropped_unknown_item_ratings"] == 0


def test_stats_json_on_generated_ml_latest(write_format):
    result = CliRunner().invoke(app, ["data", "stats", str(write_format("ml-latest")), "--json"])
    stats = json.loads(result.stdout)
    assert stats["format"] == "ml-latest"
    assert stats["has_demographics"] is False
    assert (stats["users"], stats["items"], stats["ratings"]) == (60, 50, 900)
