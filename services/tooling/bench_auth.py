"""What API keys cost (`recsys bench auth`): the key check per request, and a flood of bad keys.

Two measurements, each comparing like with like in one run:
- **The check**: `ApiKeyAuth` in front of an ASGI app that answers at once, driven through the
  real ASGI call path in a loop: no keys (auth off), a valid key, an unknown key (the 401). The
  difference of the p50s is what checking a key adds to a request.
- **Served**: the API (embedded, one worker, auth on) under sequential valid POST /recommend
  calls, alone, then while another process sends ~`flood_rps` requests per second with unknown
  keys, then alone again (the VM's speed drifts: the flood is compared with the quiet phases
  around it). And the same valid calls against the
  API with auth off, for the end-to-end difference.
"""

from __future__ import annotations

import asyncio
import gc
import multiprocessing
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from services.auth import ApiKeyAuth, AuthGate, hash_key, new_key
from services.tooling.bench_client import Connection, encode_posts
from services.tooling.bench_service import (
    request_bodies,
    sequential_latencies,
    serve,
)

SERVICE = "services.recommendation:RecommendationService"


@dataclass(frozen=True)
class CheckFigures:
    """Microseconds per request through the middleware (p50, p99)."""

    off_p50_us: float
    off_p99_us: float
    valid_p50_us: float
    valid_p99_us: float
    unknown_p50_us: float
    unknown_p99_us: float

    @property
    def added_p50_us(self) -> float:
        """What checking a valid key adds to a request (p50 valid - p50 off)."""
        return self.valid_p50_us - self.off_p50_us


@dataclass(frozen=True)
class ServedFigures:
    """Valid POST /recommend latency (ms) with auth off, on, and on under a bad-key flood."""

    off_p50_ms: float
    off_p99_ms: float
    on_p50_ms: float
    on_p99_ms: float
    flood_p50_ms: float
    flood_p99_ms: float
    after_p50_ms: float  # quiet again after the flood (the VM drifts: two quiet phases)
    after_p99_ms: float
    flood_rps: float  # bad-key requests per second actually sent during the flood phase
    flood_401s: int
    probe_p50_ms: float  # the same flood of GET /livez instead (no key check: the floor)
    probe_p99_ms: float
    probe_rps: float
    requests: int

    @property
    def flood_p99_ratio(self) -> float:
        """p99 under the flood / the mean p99 of the quiet phases around it (target <= 1.2)."""
        return self.flood_p99_ms / ((self.on_p99_ms + self.after_p99_ms) / 2)


def bench_check(settings: Any, requests: int = 20_000) -> CheckFigures:
    """Time the middleware's own work per request, through the ASGI call path."""
    key = new_key()

    async def answer(scope: dict, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        return None

    async def timed(app: Any, headers: list[tuple[bytes, bytes]]) -> list[float]:
        scope = {"type": "http", "method": "POST", "path": "/recommend", "headers": headers}
        took = []
        for _ in range(requests):
            began = time.perf_counter_ns()
            await app(dict(scope), receive, send)
            took.append((time.perf_counter_ns() - began) / 1000)
        return took

    import services.auth as auth

    off = asyncio.run(timed(answer, [(b"authorization", f"Bearer {key}".encode())]))
    saved = auth._GATE
    keys_file = Path(settings.auth.keys_file)
    keys_file.write_text(f"recommend:{hash_key(key)}\n")
    auth._GATE = AuthGate(settings)
    try:
        gated = ApiKeyAuth(answer)
        valid = asyncio.run(timed(gated, [(b"authorization", f"Bearer {key}".encode())]))
        unknown = asyncio.run(timed(gated, [(b"x-api-key", new_key().encode())]))
    finally:
        auth._GATE = saved

    def q(values: list[float], p: float) -> float:
        return float(np.percentile(values, p))

    return CheckFigures(
        q(off, 50), q(off, 99), q(valid, 50), q(valid, 99), q(unknown, 50), q(unknown, 99)
    )


def _flood(url: str, rps: float, seconds: float, out: Any, probes: bool = False) -> None:
    """Send unknown-key POST /recommend (or, with `probes`, GET /livez: the cheapest open route,
    for reference) at about `rps` for `seconds`, from a process of its own."""

    async def run() -> tuple[int, int]:
        raws = encode_posts(url, "/recommend", [{"user_id": 1}], {"X-API-Key": new_key()})
        if probes:
            host = url.split("://", 1)[-1]
            raws = [f"GET /livez HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()]
        conns = [Connection(url) for _ in range(8)]
        sent = refused = 0
        began = time.perf_counter()

        async def worker(conn: Connection) -> None:
            nonlocal sent, refused
            while time.perf_counter() - began < seconds:
                status, _ = await conn.request(raws[0])
                sent += 1
                refused += status in (200, 401)
                ahead = sent / rps - (time.perf_counter() - began)  # pace to the target rate
                if ahead > 0:
                    await asyncio.sleep(ahead)

        await asyncio.gather(*(worker(c) for c in conns))
        for conn in conns:
            await conn.close()
        return sent, refused

    sent, refused = asyncio.run(run())
    out.put((sent / seconds, refused))


def _under_flood(
    url: str, raws: list[bytes], rps: float, requests: int, probes: bool = False
) -> tuple[list[float], tuple[float, int]]:
    """Valid calls' latencies while a flood process runs; and (flood req/s, answered)."""
    context = multiprocessing.get_context("spawn")
    results: Any = context.Queue()
    seconds = 1.5 + requests * 0.012  # outlasts the timed calls
    flooder = context.Process(target=_flood, args=(url, rps, seconds, results, probes))
    flooder.start()
    time.sleep(1.0)  # the flood reaches its pace first
    latencies, _, _ = asyncio.run(sequential_latencies(url, raws, 100))
    flooder.join()
    return latencies, results.get()


def bench_served(
    known_users: Sequence[int],
    env: Mapping[str, str],
    keys_file: Path,
    *,
    requests: int = 1500,
    flood_rps: float = 1000.0,
    log_dir: Path = Path("reports/bench"),
) -> ServedFigures:
    """Serve the API with auth off, then on; time valid calls alone and under a bad-key flood."""
    key = new_key()
    keys_file.write_text(f"recommend:{hash_key(key)}\n")
    bodies = request_bodies(known_users, requests + 100)
    figures: dict[str, list[float]] = {}
    flood = probe = (0.0, 0)
    for phase, auth_on in (("off", False), ("on", True)):
        phase_env = {
            **env,
            "RECSYS_AUTH__ENABLED": str(auth_on).lower(),
            "RECSYS_AUTH__KEYS_FILE": str(keys_file),
            "RECSYS_AUTH__RECOMMEND__PER_SECOND": "100000",
            "RECSYS_AUTH__RECOMMEND__BURST": "100000",
        }
        log_name = f"auth-{phase}.log"
        with serve(SERVICE, extra_env=phase_env, log_dir=log_dir, log_name=log_name) as s:
            raws = encode_posts(s.url, "/recommend", bodies, {"Authorization": f"Bearer {key}"})
            gc.collect()
            gc.disable()
            try:
                figures[phase], _, _ = asyncio.run(sequential_latencies(s.url, raws, 100))
                if auth_on:
                    figures["flood"], flood = _under_flood(s.url, raws, flood_rps, requests)
                    figures["after"], _, _ = asyncio.run(sequential_latencies(s.url, raws, 100))
                    figures["probe"], probe = _under_flood(
                        s.url, raws, flood_rps, requests, probes=True
                    )
            finally:
                gc.enable()

    def ms(phase: str, p: float) -> float:
        return float(np.percentile(np.asarray(figures[phase]) * 1e3, p))

    return ServedFigures(
        ms("off", 50), ms("off", 99), ms("on", 50), ms("on", 99), ms("flood", 50),
        ms("flood", 99), ms("after", 50), ms("after", 99), flood[0], flood[1],
        ms("probe", 50), ms("probe", 99), probe[0], requests,
    )  # fmt: skip


def report(check: CheckFigures, served: ServedFigures | None) -> dict[str, Any]:
    """JSON-ready figures with the targets they are held to."""
    out: dict[str, Any] = {"check": asdict(check), "check_added_p50_us": check.added_p50_us}
    if served is not None:
        out["served"] = asdict(served)
        out["flood_p99_ratio"] = served.flood_p99_ratio
    return out
