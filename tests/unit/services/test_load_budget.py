"""The Locust budget check: the CSV's Aggregated row and the verdict (issue 6, item 6)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.tooling.bench_service import COLD_EVERY, request_bodies
from services.tooling.load import LoadStats, LoadTestError, check_budget, read_aggregated

HEADER = (
    "Type,Name,Request Count,Failure Count,Median Response Time,Average Response Time,"
    "Min Response Time,Max Response Time,Average Content Size,Requests/s,Failures/s,"
    "50%,66%,75%,80%,90%,95%,98%,99%,99.9%,99.99%,100%"
)
KNOWN_ROW = (
    "POST,/recommend [known],150,0,5,5.7,1.4,24.9,2077,37.0,0.0,5,6,8,8,10,13,17,17,25,25,25"
)
AGGREGATED = ",Aggregated,151,2,5,5.74,1.44,80.5,2042.8,38.3,0.5,5,6,8,8,10,12,15,40,80,80,80"


def write_csv(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "locust_stats.csv"
    path.write_text("\n".join((HEADER, *rows)) + "\n")
    return path


def stats(requests: int = 100, failures: int = 0, p95: float = 10, p99: float = 20) -> LoadStats:
    return LoadStats(requests, failures, rps=50.0, p50_ms=5, p95_ms=p95, p99_ms=p99, max_ms=30)


def test_reads_the_aggregated_row_not_the_first(tmp_path: Path) -> None:
    got = read_aggregated(write_csv(tmp_path, KNOWN_ROW, AGGREGATED))
    assert got == LoadStats(
        requests=151, failures=2, rps=38.3, p50_ms=5, p95_ms=12, p99_ms=40, max_ms=80.5
    )


def test_a_run_without_requests_reads_as_nan_percentiles(tmp_path: Path) -> None:
    empty = ",Aggregated,0,0,0,0,0,0,0,0,0,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A,N/A"
    got = read_aggregated(write_csv(tmp_path, empty))
    assert got.requests == 0
    assert check_budget(got, p95_ms=50, p99_ms=100) == ["no request was made"]


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ((KNOWN_ROW,), "has no Aggregated row"),  # per-name rows only
        ((), "has no Aggregated row"),  # header only: Locust died before writing stats
    ],
)
def test_unusable_csv_is_an_error(tmp_path: Path, rows: tuple[str, ...], message: str) -> None:
    with pytest.raises(LoadTestError, match=message):
        read_aggregated(write_csv(tmp_path, *rows))


def test_missing_csv_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LoadTestError, match="wrote no statistics"):
        read_aggregated(tmp_path / "locust_stats.csv")


def test_within_budget_passes() -> None:
    assert check_budget(stats(p95=50, p99=100), p95_ms=50, p99_ms=100) == []


@pytest.mark.parametrize(
    ("run", "expected"),
    [
        # p95 over its budget, p99 within
        (stats(p95=51, p99=60), ["p95 51 ms exceeds the budget of 50 ms"]),
        # p99 over its budget, p95 within
        (stats(p95=40, p99=101), ["p99 101 ms exceeds the budget of 100 ms"]),
        # both over: both named
        (
            stats(p95=70, p99=200),
            ["p95 70 ms exceeds the budget of 50 ms", "p99 200 ms exceeds the budget of 100 ms"],
        ),
        # fast, but one request failed
        (stats(failures=1), ["1 of 100 requests failed"]),
    ],
)
def test_budget_violations_are_named(run: LoadStats, expected: list[str]) -> None:
    assert check_budget(run, p95_ms=50, p99_ms=100) == expected


def test_bench_bodies_mix_known_and_cold_users() -> None:
    known = range(1, 944)
    bodies = request_bodies(known, 200, k=10, seed=1)
    cold = [b for b in bodies if b["user_id"] > 943]
    assert len(cold) == 200 // COLD_EVERY
    assert all(1 <= b["user_id"] <= 943 for b in bodies if b not in cold)
    assert {b["k"] for b in bodies} == {10}
