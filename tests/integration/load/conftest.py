"""Fixtures of the load-test and service-bench tests: the trivial BentoML service, really served."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.tooling.bench_service import TRIVIAL_SERVICE, ServedProcess, serve


@pytest.fixture(scope="module")
def trivial_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedProcess]:
    """`bentoml serve services.tooling.trivial:TrivialService` on a free port (no models)."""
    with serve(TRIVIAL_SERVICE, log_dir=tmp_path_factory.mktemp("bench-logs")) as served:
        yield served


@pytest.fixture(scope="session")
def recsys_command() -> list[str]:
    """The installed `recsys` console script of this interpreter's environment."""
    script = Path(sys.executable).parent / "recsys"
    assert script.exists(), f"expected the recsys console script at {script}"
    return [str(script)]
