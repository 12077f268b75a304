"""`recsys load` against a really served service: the budget check passes and fails (issue 6).

Locust runs as a subprocess against `bentoml serve services.tooling.trivial:TrivialService`; the
same short run passes a generous budget and fails an impossible one, and a run whose requests all
fail is refused whatever its latency.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx
import pytest

from services.tooling.bench_service import ServedProcess, ServeError, free_port, measure, serve
from services.tooling.trivial import FIXED_ITEMS

REPO_ROOT = Path(__file__).resolve().parents[3]

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def run_load(command: list[str], host: str, out: Path, *budget: str) -> subprocess.CompletedProcess:
    args = ["load", "--host", host, "--users", "4", "--rate", "4", "--duration", "4s"]
    return subprocess.run(
        [*command, *args, "--out", str(out), *budget],
        cwd=REPO_ROOT,  # the locustfile's default path is relative to the repository
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_trivial_service_answers_the_recommend_body(trivial_server: ServedProcess) -> None:
    body = {"user_id": 5, "k": 3, "exclude_seen": False}
    answer = httpx.post(f"{trivial_server.url}/recommend", json=body, timeout=10).json()
    assert [r["item_id"] for r in answer["recommendations"]] == list(FIXED_ITEMS[:3])
    bad = httpx.post(f"{trivial_server.url}/recommend", json={"user_id": "x"}, timeout=10)
    assert bad.status_code == 400


def test_generous_budget_passes(
    trivial_server: ServedProcess, recsys_command: list[str], tmp_path: Path
) -> None:
    # Generous for both percentiles: a 4 s run's p99 is its slowest request or two, and on a
    # busy 2-core machine that one can take 200 ms.
    done = run_load(
        recsys_command, trivial_server.url, tmp_path, "--p95-ms", "5000", "--p99-ms", "5000"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "budgets held" in done.stdout
    assert (tmp_path / "locust_stats.csv").exists()
    assert (tmp_path / "locust.html").exists()


def test_impossible_budget_fails_naming_the_percentile(
    trivial_server: ServedProcess, recsys_command: list[str], tmp_path: Path
) -> None:
    done = run_load(recsys_command, trivial_server.url, tmp_path, "--p95-ms", "0.001")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "load budget failed" in done.stderr
    assert "exceeds the budget of 0.001 ms" in done.stderr
    assert "p95" in done.stderr


def test_failed_requests_fail_the_run(recsys_command: list[str], tmp_path: Path) -> None:
    nothing_listens = f"http://127.0.0.1:{free_port()}"
    done = run_load(recsys_command, nothing_listens, tmp_path, "--p95-ms", "5000")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "requests failed" in done.stderr


def test_bench_measures_and_leaves_nothing_running(tmp_path: Path) -> None:
    with serve("services.tooling.trivial:TrivialService", log_dir=tmp_path) as served:
        figures = measure(served, range(1, 944), requests=50, duration_s=1.0, clients=4, warmup=5)
        group = served.process.pid
    assert figures.seq_errors == 0
    assert figures.conc_errors == 0
    assert figures.seq_requests == 50
    assert figures.conc_requests > 0
    assert figures.start_s > 0
    assert len(figures.worker_rss_mb) == 1  # one API worker under the `bentoml serve` arbiter
    assert 10 < figures.worker_rss_mb[0] < figures.total_rss_mb < 4096
    with pytest.raises(ProcessLookupError):
        os.killpg(group, 0)  # signal 0: does the process group still exist?


def test_a_service_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    with (
        pytest.raises(ServeError, match=r"failed to start.*log"),
        serve("services.no_such_module:Nothing", log_dir=tmp_path, ready_timeout_s=60),
    ):
        pass
