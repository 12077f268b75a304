"""`recsys features materialize` end to end: snapshot from the model store into Redis."""

from __future__ import annotations

import pytest
import redis
from typer.testing import CliRunner

from feature_store import keys
from models.artifacts import save_snapshot
from services.tooling.cli import app

pytestmark = pytest.mark.integration


def test_materialize_command_writes_the_stored_snapshot(snapshot, redis_settings) -> None:
    tag = save_snapshot(snapshot)
    result = CliRunner().invoke(
        app, ["features", "materialize", "--redis-url", str(redis_settings.url),
              "--snapshot-tag", tag],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert snapshot.version in result.output
    client = redis.Redis.from_url(str(redis_settings.url))
    assert client.get(keys.ACTIVE_KEY) == snapshot.version.encode()
    client.close()


def test_unreachable_redis_is_one_line_and_exit_code_1(snapshot) -> None:
    tag = save_snapshot(snapshot)
    result = CliRunner().invoke(
        app, ["features", "materialize", "--redis-url", "redis://127.0.0.1:1/0",
              "--snapshot-tag", tag],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "error:" in result.output
