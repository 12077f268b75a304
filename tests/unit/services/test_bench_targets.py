"""The serving bench's verdicts: which figures each placement's targets check, and how."""

from __future__ import annotations

import dataclasses

from services.tooling.bench_service import Comparison, ServiceFigures

TRIVIAL = ServiceFigures(
    service="trivial", start_s=2.0, seq_requests=100, seq_p50_ms=1.0, seq_p99_ms=2.0,
    seq_errors=0, clients=16, conc_requests=1000, conc_rps=700.0, conc_p50_ms=20.0,
    conc_p99_ms=30.0, conc_errors=0, first_error=None, worker_rss_mb=(60.0,), total_rss_mb=120.0,
)  # fmt: skip


def _verdicts(comparison: Comparison) -> dict[tuple[str, str], bool]:
    return {(t.variant, t.figure.split(",")[0]): t.held for t in comparison.targets()}


def test_embedded_targets_are_relative_to_the_trivial_service() -> None:
    embedded = dataclasses.replace(
        TRIVIAL, seq_p50_ms=2.4, seq_p99_ms=7.9, conc_rps=550.0, start_s=4.9
    )
    verdicts = _verdicts(Comparison({"trivial": TRIVIAL, "embedded": embedded}, (0, 0, 0), 2))
    assert verdicts[("embedded", "sequential p50 (ms)")]  # 2.4 <= 1.0 + 1.5
    assert verdicts[("embedded", "sequential p99 (ms)")]  # 7.9 <= 8
    assert not verdicts[("embedded", "sequential p99 / p50")]  # 3.29 > 3
    assert not verdicts[("embedded", "16 clients req/s")]  # 550 < 0.8 x 700
    assert verdicts[("embedded", "start to ready (s)")]
    slower = dataclasses.replace(embedded, seq_p50_ms=2.6, seq_errors=1)
    verdicts = _verdicts(Comparison({"trivial": TRIVIAL, "embedded": slower}, (0, 0, 0), 2))
    assert not verdicts[("embedded", "sequential p50 (ms)")]
    assert not verdicts[("embedded", "errors")]


def test_remote_targets_are_absolute_and_two_workers_are_held_to_throughput() -> None:
    remote = dataclasses.replace(TRIVIAL, seq_p50_ms=4.9, seq_p99_ms=15.5, conc_rps=430.0)
    two = dataclasses.replace(TRIVIAL, seq_p50_ms=3.0, seq_p99_ms=10.0)
    figures = {"trivial": TRIVIAL, "remote": remote, "embedded, 2 workers": two}
    verdicts = _verdicts(Comparison(figures, (0, 0, 0), 2))
    assert verdicts[("remote", "sequential p50 (ms)")]
    assert not verdicts[("remote", "sequential p99 (ms)")]
    assert verdicts[("remote", "16 clients req/s")]  # 430 >= 0.6 x 700
    assert {figure for variant, figure in verdicts if variant == "embedded, 2 workers"} == {
        "sequential p99 / p50",
        "errors",
        "16 clients req/s",
    }
    assert verdicts[("embedded, 2 workers", "16 clients req/s")]  # 700 >= 0.8 x 700
