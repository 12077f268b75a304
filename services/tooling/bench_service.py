"""Benchmark of the served API in each stage placement beside a trivial BentoML service, one run.

Each service runs as `bentoml serve <import path> --port P` in a process group of its own on a
free loopback port. The figures: start to ready (first 200 from /readyz), sequential latency of
POST /recommend k=10 (one keep-alive connection; known users and a few cold ones), then
throughput and latency with N concurrent clients for D seconds, and the resident memory of the
served processes (each worker's, and the group's total) after the load. The same is measured for
`services.tooling.trivial:TrivialService`: ratios to it are the figures that hold on a shared
machine. Every server is stopped (its whole process group) before the next starts.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil

from data.errors import RecsysError
from services.tooling.bench_client import Connection, HttpError, encode_posts

logger = logging.getLogger(__name__)

TRIVIAL_SERVICE = "services.tooling.trivial:TrivialService"
RECOMMENDATION_SERVICE = "services.recommendation:RecommendationService"
STARTUP_FAILED = b"Application startup failed"  # uvicorn's line when a worker cannot start
COLD_EVERY = 20  # one request in 20 is for a user the models have never seen


@dataclass(frozen=True)
class Variant:
    """One service configuration to serve and measure."""

    label: str
    import_path: str
    env: Mapping[str, str] = field(default_factory=dict)


TRIVIAL = Variant("trivial", TRIVIAL_SERVICE)
EMBEDDED = Variant("embedded", RECOMMENDATION_SERVICE, {"RECSYS_STAGES": "embedded"})
EMBEDDED_2 = Variant(
    "embedded, 2 workers",
    RECOMMENDATION_SERVICE,
    {"RECSYS_STAGES": "embedded", "RECSYS_WORKERS": "2"},
)
REMOTE = Variant("remote", RECOMMENDATION_SERVICE, {"RECSYS_STAGES": "remote"})
PLACEMENTS = (EMBEDDED, EMBEDDED_2, REMOTE)

# Targets of the serving-speed issue (ML-100K models, 2-core machine, same run, same client).
EMBEDDED_P50_OVER_TRIVIAL_MS = 1.5
EMBEDDED_P99_MS = 8.0
EMBEDDED_RPS_OF_TRIVIAL = 0.8
EMBEDDED_START_S = 5.0
REMOTE_P50_MS = 5.0
REMOTE_P99_MS = 15.0
REMOTE_RPS_OF_TRIVIAL = 0.6
P99_OVER_P50 = 3.0


class ServeError(RecsysError):
    """A service could not be started, or did not become ready in time."""


@dataclass(frozen=True)
class ServiceFigures:
    """What one served service measured."""

    service: str
    start_s: float
    seq_requests: int
    seq_p50_ms: float
    seq_p99_ms: float
    seq_errors: int
    clients: int
    conc_requests: int
    conc_rps: float
    conc_p50_ms: float
    conc_p99_ms: float
    conc_errors: int
    first_error: str | None
    worker_rss_mb: tuple[float, ...] = ()
    total_rss_mb: float = float("nan")

    @property
    def tail_ratio(self) -> float:
        """Sequential p99 over p50."""
        return self.seq_p99_ms / self.seq_p50_ms


@dataclass(frozen=True)
class Target:
    """One target checked against a run."""

    variant: str
    figure: str
    value: float
    bound: float
    at_most: bool = True

    @property
    def held(self) -> bool:
        """Whether the measured value is within the bound."""
        return self.value <= self.bound if self.at_most else self.value >= self.bound

    def line(self) -> str:
        """`variant: figure value <= bound: ok|MISSED`."""
        sign = "<=" if self.at_most else ">="
        verdict = "ok" if self.held else "MISSED"
        return f"{self.variant}: {self.figure} {self.value:.2f} {sign} {self.bound:.2f}: {verdict}"


@dataclass(frozen=True)
class Comparison:
    """Several variants and the trivial reference, measured one after another in one run."""

    figures: dict[str, ServiceFigures]  # by variant label, the trivial service included
    load_average: tuple[float, float, float]
    cores: int

    @property
    def labels(self) -> list[str]:
        """Variant labels in the order they were measured."""
        return list(self.figures)

    def rows(self) -> list[list[str]]:
        """(figure, one value per variant) rows."""
        clients = next(iter(self.figures.values())).clients
        spec = (
            ("start_s", "start to ready (s)", "{:.2f}"),
            ("seq_p50_ms", "sequential p50 (ms)", "{:.2f}"),
            ("seq_p99_ms", "sequential p99 (ms)", "{:.2f}"),
            ("tail_ratio", "sequential p99 / p50", "{:.2f}"),
            ("seq_errors", "sequential errors", "{:d}"),
            ("conc_rps", f"{clients} clients req/s", "{:.0f}"),
            ("conc_p50_ms", f"{clients} clients p50 (ms)", "{:.2f}"),
            ("conc_p99_ms", f"{clients} clients p99 (ms)", "{:.2f}"),
            ("conc_errors", f"{clients} clients errors", "{:d}"),
            ("total_rss_mb", "resident memory, all processes (MB)", "{:.0f}"),
            ("worker_rss_mb", "resident memory per process (MB)", ""),
        )
        out = []
        for name, label, fmt in spec:
            row = [label]
            for figures in self.figures.values():
                value = getattr(figures, name)
                if name == "worker_rss_mb":
                    row.append(" + ".join(f"{mb:.0f}" for mb in value) or "-")
                else:
                    row.append(fmt.format(value))
            out.append(row)
        return out

    def targets(self) -> list[Target]:
        """The serving-speed targets of the measured placements (latency: 1-worker variants)."""
        trivial = self.figures.get(TRIVIAL.label)
        checks: list[Target] = []
        for label, f in self.figures.items():
            if label == TRIVIAL.label:
                continue
            checks += [
                Target(label, "sequential p99 / p50", f.tail_ratio, P99_OVER_P50),
                Target(label, "errors", f.seq_errors + f.conc_errors, 0),
            ]
            if label == EMBEDDED.label:
                p50_bound = (trivial.seq_p50_ms if trivial else 0.0) + EMBEDDED_P50_OVER_TRIVIAL_MS
                checks += [
                    Target(label, "start to ready (s)", f.start_s, EMBEDDED_START_S),
                    Target(label, "sequential p50 (ms), trivial's + 1.5", f.seq_p50_ms, p50_bound),
                    Target(label, "sequential p99 (ms)", f.seq_p99_ms, EMBEDDED_P99_MS),
                ]
            elif label == REMOTE.label:
                checks += [
                    Target(label, "sequential p50 (ms)", f.seq_p50_ms, REMOTE_P50_MS),
                    Target(label, "sequential p99 (ms)", f.seq_p99_ms, REMOTE_P99_MS),
                ]
            share = {
                EMBEDDED.label: EMBEDDED_RPS_OF_TRIVIAL,
                EMBEDDED_2.label: EMBEDDED_RPS_OF_TRIVIAL,
                REMOTE.label: REMOTE_RPS_OF_TRIVIAL,
            }
            if trivial is not None and label in share:
                checks.append(
                    Target(
                        label,
                        f"{f.clients} clients req/s, {share[label]:g} x trivial's",
                        f.conc_rps,
                        share[label] * trivial.conc_rps,
                        at_most=False,
                    )
                )
        return checks


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServedProcess:
    """A running `bentoml serve` process group."""

    import_path: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    start_s: float = float("nan")

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the whole process group, SIGKILL what is left after `grace_s`."""
        if self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in %.0f s: killing it", self.import_path, grace_s)
        # Workers may outlive the arbiter: kill the group whatever happened above.
        _signal_group(self.process.pid, signal.SIGKILL)
        self.process.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.killpg(pgid, sig)


@contextmanager
def serve(
    import_path: str,
    *,
    port: int | None = None,
    extra_env: Mapping[str, str] | None = None,
    log_dir: Path = Path("reports/bench"),
    ready_timeout_s: float = 120.0,
    log_name: str | None = None,
) -> Iterator[ServedProcess]:
    """Run `bentoml serve import_path` on loopback until the block ends; wait for /readyz.

    Args:
        import_path: `module:ServiceClass`.
        port: port to listen on (default: a free one).
        extra_env: variables added to this process's environment for the server.
        log_dir: where the server's output goes (`<service>.log`).
        ready_timeout_s: how long to wait for /readyz to answer 200.
        log_name: the log file's name (default: `<service class>.log`).

    Yields:
        The running server, with `start_s` = seconds from spawn to the first 200 from /readyz.

    Raises:
        ServeError: the server exited early or was not ready in time (the log's tail is quoted).
    """
    _quiet_http_client()
    port = port or free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / (log_name or f"{import_path.rsplit(':', 1)[-1]}.log")
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", **(extra_env or {})}
    command = [sys.executable, "-m", "bentoml", "serve", import_path, "--host", "127.0.0.1"]
    with log_path.open("wb") as log:
        spawned = time.perf_counter()
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group, so stop() reaches every worker
        )
    served = ServedProcess(import_path, f"http://127.0.0.1:{port}", process, log_path)
    try:
        served.start_s = _wait_ready(served, spawned, ready_timeout_s)
        logger.info("%s ready on %s in %.2f s", import_path, served.url, served.start_s)
        yield served
    finally:
        served.stop()


def resident_memory_mb(served: ServedProcess) -> tuple[tuple[float, ...], float]:
    """Resident memory of the served processes: each worker's, and the total with the arbiter (MB).

    Workers are the processes `bentoml serve` starts under its arbiter: one per API worker, plus
    one per dependency process (remote stages).
    """
    try:
        arbiter = psutil.Process(served.process.pid)
        workers = arbiter.children(recursive=True)
        arbiter_mb = arbiter.memory_info().rss / 2**20
    except psutil.Error:
        return (), float("nan")
    sizes = []
    for worker in workers:
        with suppress(psutil.Error):
            sizes.append(worker.memory_info().rss / 2**20)
    return tuple(sorted(sizes, reverse=True)), arbiter_mb + sum(sizes)


def _quiet_http_client() -> None:
    # httpx logs every request at INFO: thousands of lines, and client CPU taken from the figures.
    logging.getLogger("httpx").setLevel(logging.WARNING)


def _wait_ready(served: ServedProcess, spawned: float, timeout_s: float) -> float:
    with httpx.Client(base_url=served.url, timeout=1.0) as client:
        while (elapsed := time.perf_counter() - spawned) < timeout_s:
            # BentoML's arbiter restarts a worker whose startup failed instead of exiting.
            if served.process.poll() is not None or STARTUP_FAILED in served.log_path.read_bytes():
                raise ServeError(
                    f"{served.import_path} failed to start (exit status {served.process.poll()}); "
                    f"log {served.log_path}: {_tail(served.log_path)}"
                )
            try:
                if client.get("/readyz").status_code == 200:
                    return time.perf_counter() - spawned
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    raise ServeError(
        f"{served.import_path} not ready after {elapsed:.0f} s; log {served.log_path}: "
        f"{_tail(served.log_path)}"
    )


def _tail(path: Path, lines: int = 5) -> str:
    text = path.read_text(errors="replace").strip().splitlines()
    return " | ".join(text[-lines:]) if text else "(empty)"


def request_bodies(known_users: Sequence[int], n: int, k: int = 10, seed: int = 0) -> list[dict]:
    """`n` POST /recommend bodies: known users at random, every COLD_EVERY-th one a cold user."""
    rng = np.random.default_rng(seed)
    users = rng.choice(np.asarray(known_users, dtype=np.int64), size=n)
    cold_base = int(max(known_users)) + 1
    bodies = []
    for i, user in enumerate(users.tolist()):
        cold = i % COLD_EVERY == COLD_EVERY - 1
        bodies.append({"user_id": cold_base + i if cold else user, "k": k, "exclude_seen": True})
    return bodies


def _ms(seconds: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(seconds) * 1e3, q)) if seconds else float("nan")


async def _send(conn: Connection, raw: bytes) -> str | None:
    """One request; None when it answered 200, else why not."""
    try:
        status, _ = await conn.request(raw)
    except HttpError as exc:
        return str(exc)
    return None if status == 200 else f"HTTP {status}"


async def sequential_latencies(
    url: str, raws: list[bytes], warmup: int
) -> tuple[list[float], int, str | None]:
    """Send `raws` one after another on one connection: (latencies after `warmup`, errors, first
    error)."""
    latencies: list[float] = []
    errors, first_error = 0, None
    conn = Connection(url)
    try:
        for i, raw in enumerate(raws):
            began = time.perf_counter()
            error = await _send(conn, raw)
            took = time.perf_counter() - began
            if i < warmup:
                continue
            if error is None:
                latencies.append(took)
            else:
                errors += 1
                first_error = first_error or error
    finally:
        await conn.close()
    return latencies, errors, first_error


async def _concurrent(
    url: str, raws: list[bytes], clients: int, duration_s: float, warmup_s: float
) -> tuple[list[float], int, float, str | None]:
    latencies: list[float] = []
    errors, first_error = 0, None
    measure_from = time.perf_counter() + warmup_s
    deadline = measure_from + duration_s

    async def worker(offset: int) -> None:
        nonlocal errors, first_error
        conn, i = Connection(url), offset
        try:
            while (now := time.perf_counter()) < deadline:
                error = await _send(conn, raws[i % len(raws)])
                i += clients
                if now < measure_from:
                    continue
                if error is None:
                    latencies.append(time.perf_counter() - now)
                else:
                    errors += 1
                    first_error = first_error or error
        finally:
            await conn.close()

    await asyncio.gather(*(worker(c) for c in range(clients)))
    return latencies, errors, time.perf_counter() - measure_from, first_error


def measure(
    served: ServedProcess,
    known_users: Sequence[int],
    *,
    requests: int = 2000,
    duration_s: float = 10.0,
    clients: int = 16,
    warmup: int = 100,
) -> ServiceFigures:
    """Sequential then concurrent POST /recommend k=10 against a ready server.

    Args:
        served: the running server.
        known_users: user ids the models know (cold ids are drawn above their maximum).
        requests: timed sequential requests (after `warmup` untimed ones).
        duration_s: seconds of concurrent load (after one untimed second).
        clients: concurrent clients.
        warmup: untimed sequential requests first.

    Returns:
        The figures; latencies count successful requests only, errors are counted apart.
    """
    _quiet_http_client()
    raws = encode_posts(served.url, "/recommend", request_bodies(known_users, requests + warmup))
    gc.collect()
    gc.disable()  # the client's own GC pauses would show as server latency
    try:
        seq, seq_errors, first = asyncio.run(sequential_latencies(served.url, raws, warmup))
        conc, conc_errors, elapsed, conc_first = asyncio.run(
            _concurrent(served.url, raws, clients, duration_s, warmup_s=1.0)
        )
    finally:
        gc.enable()
    workers, total = resident_memory_mb(served)
    return ServiceFigures(
        service=served.import_path,
        start_s=served.start_s,
        seq_requests=len(seq) + seq_errors,
        seq_p50_ms=_ms(seq, 50),
        seq_p99_ms=_ms(seq, 99),
        seq_errors=seq_errors,
        clients=clients,
        conc_requests=len(conc) + conc_errors,
        conc_rps=(len(conc) + conc_errors) / elapsed,
        conc_p50_ms=_ms(conc, 50),
        conc_p99_ms=_ms(conc, 99),
        conc_errors=conc_errors,
        first_error=first or conc_first,
        worker_rss_mb=workers,
        total_rss_mb=total,
    )


def bench_service(
    known_users: Sequence[int],
    *,
    variants: Sequence[Variant] = (TRIVIAL, *PLACEMENTS),
    requests: int = 2000,
    duration_s: float = 10.0,
    clients: int = 16,
    extra_env: Mapping[str, str] | None = None,
    log_dir: Path = Path("reports/bench"),
) -> Comparison:
    """Serve and measure each variant, one at a time, in this run.

    Args:
        known_users: user ids the service's models know.
        variants: what to serve, in order (the trivial reference first, by default).
        requests: timed sequential requests per service.
        duration_s: seconds of concurrent load per service.
        clients: concurrent clients.
        extra_env: environment added for every server.
        log_dir: where the servers' logs go (`<label>.log`).

    Returns:
        Every variant's figures and the load average when the run ended.

    Raises:
        ServeError: a server did not start.
    """
    figures: dict[str, ServiceFigures] = {}
    for variant in variants:
        env = {**(extra_env or {}), **variant.env}
        log_name = variant.label.replace(" ", "").replace(",", "-") + ".log"
        with serve(
            variant.import_path, extra_env=env, log_dir=log_dir, log_name=log_name
        ) as served:
            figures[variant.label] = measure(
                served, known_users, requests=requests, duration_s=duration_s, clients=clients
            )
    return Comparison(figures=figures, load_average=os.getloadavg(), cores=os.cpu_count() or 1)
