"""A remote stage that stalls or dies is not an outage: real processes, stopped and killed.

The service runs with `RECSYS_STAGES=remote` under `bentoml serve`; the tests SIGSTOP or SIGKILL
the real retriever or ranker process while clients keep asking. Every request must still get a
200 with recommendations: without the ranker in retrieval order, without the retriever the most
rated movies the user has not rated. The answers say `degraded`, /health says so, Prometheus
counts it, and full answers come back on their own once the stage does.

Expected values come from outside the service: the rating file the models were trained on
(popularity, what each user rated) and the in-process embedded pipeline's retrieval order.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx
import pandas as pd
import psutil
import pytest

from models.train import TrainReport
from services.tooling.bench_service import ServedProcess, serve

from .conftest import event_log_at

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVICE = "services.recommendation:RecommendationService"
DEGRADE_ENV = {
    "RECSYS_STAGES": "remote",
    "RECSYS_REMOTE__DEADLINE_S": "0.3",
    "RECSYS_REMOTE__FAILURE_THRESHOLD": "2",
    "RECSYS_REMOTE__RESET_TIMEOUT_S": "0.5",
}
RECOVERY_S = 10.0


@pytest.fixture(scope="module")
def remote(
    trained_models: TrainReport,
    service_env: Mapping[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServedProcess]:
    """The service with remote stages, short deadlines and a quick breaker."""
    logs = tmp_path_factory.mktemp("degraded")
    env = {**service_env, **DEGRADE_ENV, "RECSYS_EVENTS__DIR": str(logs / "events")}
    with serve(SERVICE, extra_env=env, log_dir=logs) as served:
        yield served


def _stage_process(served: ServedProcess, stage: str) -> psutil.Process:
    """The worker process BentoML runs `stage` in (found by its command line)."""
    for child in psutil.Process(served.process.pid).children(recursive=True):
        with_name = " ".join(child.cmdline())
        if f"--service-name {stage}" in with_name:
            return child
    raise AssertionError(f"no {stage} process under {served.process.pid}")


class Load:
    """Clients asking for recommendations in threads until stopped; every answer is kept."""

    def __init__(self, url: str, users: list[int], clients: int = 4) -> None:
        self.url, self.users = url, users
        self.answers: list[tuple[int, int, dict | None, float]] = []  # user, status, body, s
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,)) for i in range(clients)]

    def _run(self, offset: int) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as http:
            i = offset
            while not self._stop.is_set():
                user = self.users[i % len(self.users)]
                began = time.perf_counter()
                response = http.post("/recommend", json={"user_id": user, "k": 10})
                took = time.perf_counter() - began
                body = response.json() if response.status_code == 200 else None
                self.answers.append((user, response.status_code, body, took))
                i += len(self._threads)

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()


def _full_again(http: httpx.Client, user: int, within_s: float = RECOVERY_S) -> float:
    """Seconds until an answer for `user` is no longer degraded (fails after `within_s`)."""
    began = time.perf_counter()
    while time.perf_counter() - began < within_s:
        body = http.post("/recommend", json={"user_id": user, "k": 10}).json()
        if not body["degraded"]:
            return time.perf_counter() - began
        time.sleep(0.1)
    raise AssertionError(f"answers still degraded {within_s} s after the stage returned")


def _metric(text: str, name: str, labels: str) -> float:
    pattern = re.compile(rf"^{re.escape(name)}\{{([^}}]*)\}} (\S+)$", re.MULTILINE)
    return sum(float(v) for lbl, v in pattern.findall(text) if labels in lbl)


@pytest.fixture(scope="module")
def retrieval_order(
    trained_models: TrainReport,
    service_env: Mapping[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[int, int], list[int]]:
    """First-stage answers of the same models, in process (the embedded pipeline), from an
    empty event log like the served one's."""
    from services.tooling.batch import recommend_many

    with event_log_at(tmp_path_factory.mktemp("no-events")):
        users = range(1, 301)  # the synthetic set's users
        found = {a["user_id"]: a["item_ids"] for a in recommend_many(users, 200, "retrieval")}
    return lambda user, k: [int(i) for i in found[user][:k]]


def test_a_stalled_ranker_gives_retrieval_order_then_recovers(
    remote: ServedProcess,
    history: pd.DataFrame,
    retrieval_order: Callable[[int, int], list[int]],
) -> None:
    users = [int(u) for u in history["user_id"].unique()[:20]]
    ranker = _stage_process(remote, "ranker")
    with httpx.Client(base_url=remote.url, timeout=10) as http:
        before = http.get("/metrics").text
        with Load(remote.url, users) as load:
            time.sleep(1.0)
            ranker.send_signal(signal.SIGSTOP)
            try:
                time.sleep(4.0)
                health = http.get("/health").json()
                during = http.post("/recommend", json={"user_id": users[3], "k": 10}).json()
            finally:
                ranker.send_signal(signal.SIGCONT)
            recovery = _full_again(http, users[0])
            time.sleep(0.5)
        after = http.get("/metrics").text
    statuses = Counter(status for _, status, _, _ in load.answers)
    assert statuses == {200: len(load.answers)}, statuses
    assert all(body and body["recommendations"] for _, _, body, _ in load.answers)
    degraded = [body for _, _, body, _ in load.answers if body and body["degraded"]]
    assert degraded
    assert all(b["degraded"] == ["ranker"] for b in degraded)
    assert health["status"] == "degraded"
    assert health["stage_circuits"]["ranker"] != "closed"
    assert during["degraded"] == ["ranker"]
    assert [r["item_id"] for r in during["recommendations"]] == retrieval_order(users[3], 10)
    assert _metric(after, "recsys_degraded_answers_total", 'stage="ranker"') - _metric(
        before, "recsys_degraded_answers_total", 'stage="ranker"'
    ) >= len(degraded)
    assert recovery < RECOVERY_S
    assert http_health_ok(remote)


def http_health_ok(served: ServedProcess) -> bool:
    """/health is ok again (both circuits closed)."""
    with httpx.Client(base_url=served.url, timeout=10) as http:
        health = http.get("/health").json()
    return health["status"] == "ok" and set(health["stage_circuits"].values()) == {"closed"}


def test_a_killed_ranker_is_restarted_and_no_request_fails(
    remote: ServedProcess, history: pd.DataFrame
) -> None:
    users = [int(u) for u in history["user_id"].unique()[:20]]
    ranker = _stage_process(remote, "ranker")
    with Load(remote.url, users) as load, httpx.Client(base_url=remote.url, timeout=10) as http:
        time.sleep(1.0)
        os.kill(ranker.pid, signal.SIGKILL)
        time.sleep(2.0)
        # BentoML restarts the process (it loads its models again: seconds, more on a busy
        # machine), then the breaker's next trial call lets it back.
        _full_again(http, users[1], within_s=60.0)
    assert _stage_process(remote, "ranker").pid != ranker.pid
    statuses = Counter(status for _, status, _, _ in load.answers)
    assert statuses == {200: len(load.answers)}, statuses
    assert all(body and body["recommendations"] for _, _, body, _ in load.answers)


def test_a_stalled_retriever_gives_popular_unseen_movies(
    remote: ServedProcess, history: pd.DataFrame, synth_dir: Path
) -> None:
    counts = history["item_id"].value_counts()
    popular = sorted(counts.index, key=lambda i: (-counts[i], i))  # ties: lower id first
    users = [int(u) for u in history["user_id"].unique()[:20]]
    retriever = _stage_process(remote, "retriever")
    with Load(remote.url, users) as load, httpx.Client(base_url=remote.url, timeout=10) as http:
        time.sleep(1.0)
        retriever.send_signal(signal.SIGSTOP)
        try:
            time.sleep(3.0)
            during = http.post("/recommend", json={"user_id": users[5], "k": 10}).json()
        finally:
            retriever.send_signal(signal.SIGCONT)
        _full_again(http, users[0])
    statuses = Counter(status for _, status, _, _ in load.answers)
    assert statuses == {200: len(load.answers)}, statuses
    assert during["degraded"] == ["retriever"]
    rated = set(history.loc[history["user_id"] == users[5], "item_id"])
    expected = [int(i) for i in popular if i not in rated][:10]
    assert [r["item_id"] for r in during["recommendations"]] == expected
    assert http_health_ok(remote)
