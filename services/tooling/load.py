"""Locust load test with latency budgets (`recsys load`, `make load`).

Runs `locust -f tests/load/locustfile.py --headless ...` as a subprocess against a running
service, writes `<out>/locust_stats.csv` (and the other Locust CSVs) and `<out>/locust.html`,
then reads the CSV's Aggregated row: the run fails when p95 or p99 exceeds its budget, when any
request failed, or when no request was made.
"""

from __future__ import annotations

import csv
import logging
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from data.errors import RecsysError

logger = logging.getLogger(__name__)

LOCUSTFILE = Path("tests/load/locustfile.py")
OUT_DIR = Path("reports/load")


class LoadTestError(RecsysError):
    """Locust could not run, or wrote no statistics."""


@dataclass(frozen=True)
class LoadStats:
    """The Aggregated row of a Locust `*_stats.csv` (times in ms)."""

    requests: int
    failures: int
    rps: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float


@dataclass(frozen=True)
class LoadReport:
    """A finished load test: its statistics, the budgets and what broke them."""

    stats: LoadStats
    p95_budget_ms: float
    p99_budget_ms: float
    stats_csv: Path
    html: Path
    violations: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every budget held and no request failed."""
        return not self.violations

    def summary(self) -> str:
        """One line: counts, throughput, percentiles and where the statistics are."""
        s = self.stats
        return (
            f"{s.requests} requests, {s.failures} failed, {s.rps:.0f} req/s; p50 {s.p50_ms:g} "
            f"p95 {s.p95_ms:g} p99 {s.p99_ms:g} ms; stats {self.stats_csv}, {self.html}"
        )


def read_aggregated(stats_csv: Path) -> LoadStats:
    """Read the Aggregated row of a Locust stats CSV.

    Raises:
        LoadTestError: the file is missing or has no Aggregated row.
    """
    if not stats_csv.exists():
        raise LoadTestError(f"Locust wrote no statistics: {stats_csv} does not exist")
    with stats_csv.open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("Name") == "Aggregated"]
    if not rows:
        raise LoadTestError(f"{stats_csv} has no Aggregated row")
    row = rows[0]

    def number(column: str) -> float:
        value = row.get(column, "")
        # Locust writes "N/A" for percentiles of a run without requests.
        return float(value) if value not in ("", "N/A") else float("nan")

    return LoadStats(
        requests=int(number("Request Count")),
        failures=int(number("Failure Count")),
        rps=number("Requests/s"),
        p50_ms=number("50%"),
        p95_ms=number("95%"),
        p99_ms=number("99%"),
        max_ms=number("Max Response Time"),
    )


def check_budget(stats: LoadStats, p95_ms: float, p99_ms: float) -> list[str]:
    """Why `stats` fails the budgets (empty when it passes)."""
    violations = []
    if stats.requests == 0:
        violations.append("no request was made")
    if stats.failures:
        violations.append(f"{stats.failures} of {stats.requests} requests failed")
    if stats.requests and stats.p95_ms > p95_ms:
        violations.append(f"p95 {stats.p95_ms:g} ms exceeds the budget of {p95_ms:g} ms")
    if stats.requests and stats.p99_ms > p99_ms:
        violations.append(f"p99 {stats.p99_ms:g} ms exceeds the budget of {p99_ms:g} ms")
    return violations


def run_load(
    host: str,
    *,
    users: int = 16,
    rate: float = 4.0,
    duration: str = "30s",
    p95_ms: float = 50.0,
    p99_ms: float = 100.0,
    out_dir: Path = OUT_DIR,
    locustfile: Path = LOCUSTFILE,
    extra_args: tuple[str, ...] = (),
) -> LoadReport:
    """Run Locust headless against `host` and judge the run against the budgets.

    Args:
        host: base URL of the running service, e.g. http://127.0.0.1:3000.
        users: simulated users.
        rate: users started per second.
        duration: run time in Locust's syntax (30s, 2m).
        p95_ms: budget for the aggregated 95th percentile.
        p99_ms: budget for the aggregated 99th percentile.
        out_dir: where the CSV and HTML statistics go.
        locustfile: the load profile.
        extra_args: more Locust arguments (e.g. `--max-user-id 6040`).

    Returns:
        The statistics and the list of violated budgets (empty when the run passes).

    Raises:
        LoadTestError: the locustfile is missing or Locust wrote no statistics.
    """
    if not locustfile.exists():
        raise LoadTestError(f"no locustfile at {locustfile} (run from the repository root)")
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix, html = out_dir / "locust", out_dir / "locust.html"
    stats_csv = Path(f"{prefix}_stats.csv")
    stats_csv.unlink(missing_ok=True)  # never judge a previous run's file
    command = [
        sys.executable, "-m", "locust", "-f", str(locustfile), "--headless",
        "-u", str(users), "-r", str(rate), "-t", duration, "--host", host,
        "--csv", str(prefix), "--html", str(html), "--only-summary", *extra_args,
    ]  # fmt: skip
    logger.info("running %s", " ".join(command))
    # Locust exits 1 when a request failed; the statistics say why, so read them either way.
    code = subprocess.run(command, check=False).returncode
    logger.info("locust exited with status %d", code)
    stats = read_aggregated(stats_csv)
    return LoadReport(stats, p95_ms, p99_ms, stats_csv, html, check_budget(stats, p95_ms, p99_ms))
