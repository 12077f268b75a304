"""Commands against a served API: `recsys bench auth|drift-job` and `recsys drift plot`.

Registered on `cli_bench`'s apps. The benches serve the API for real and print figures beside
their targets (JSON under reports/bench); the plot samples a running service's /metrics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from data.errors import RecsysError
from services.settings import get_settings
from services.tooling.cli_bench import _snapshot_users, bench_app, drift_app
from services.tooling.cli_common import console, fail


@bench_app.command("auth")
def bench_auth(
    served: Annotated[bool, typer.Option(help="Also serve the API: off/on/bad-key flood.")] = True,
    requests: Annotated[int, typer.Option(help="Timed sequential requests per phase.")] = 1500,
    flood: Annotated[float, typer.Option(help="Bad-key requests per second.")] = 1000.0,
    out: Annotated[Path, typer.Option(help="JSON file for the figures.")] = Path(
        "reports/bench/auth.json"
    ),
) -> None:
    """What API keys cost: the check per request, and valid calls' p99 under a bad-key flood."""
    import tempfile

    from services.auth import AuthSettings, RateLimit
    from services.settings import Settings
    from services.tooling import bench_auth as bench

    with tempfile.TemporaryDirectory() as tmp:
        keys = Path(tmp) / "keys"
        keys.write_text("")
        unlimited = RateLimit(per_second=1e9, burst=10**9)  # time the check, not 429s
        auth = AuthSettings(enabled=True, keys_file=keys, recommend=unlimited)
        check = bench.bench_check(Settings(auth=auth))
        console.print(
            f"key check per request (us, p50/p99): off {check.off_p50_us:.1f}/"
            f"{check.off_p99_us:.1f}, valid key {check.valid_p50_us:.1f}/{check.valid_p99_us:.1f}"
            f", unknown key (401) {check.unknown_p50_us:.1f}/{check.unknown_p99_us:.1f}; "
            f"added p50 {check.added_p50_us:.1f} us (target <= 50)"
        )
        figures = None
        if served:
            try:
                figures = bench.bench_served(_snapshot_users(), {}, keys, requests=requests,
                                             flood_rps=flood)  # fmt: skip
            except RecsysError as exc:
                raise fail(exc) from exc
            console.print(
                f"served POST /recommend p50/p99 ms: auth off {figures.off_p50_ms:.2f}/"
                f"{figures.off_p99_ms:.2f}, on {figures.on_p50_ms:.2f}/{figures.on_p99_ms:.2f}, "
                f"on + {figures.flood_rps:.0f} bad-key req/s {figures.flood_p50_ms:.2f}/"
                f"{figures.flood_p99_ms:.2f}, on again {figures.after_p50_ms:.2f}/"
                f"{figures.after_p99_ms:.2f} (flood p99 / quiet p99 x{figures.flood_p99_ratio:.2f}"
                f", target <= 1.2); reference: on + {figures.probe_rps:.0f} GET /livez req/s "
                f"{figures.probe_p50_ms:.2f}/{figures.probe_p99_ms:.2f}"
            )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(bench.report(check, figures), indent=2))
    console.print(f"wrote {out}")


@bench_app.command("drift-job")
def bench_drift_job(
    logged: Annotated[int, typer.Option(help="Requests in the inference log.")] = 100_000,
    requests: Annotated[int, typer.Option(help="Timed sequential requests (quiet phases).")] = 1000,
    out: Annotated[Path, typer.Option(help="JSON file for the figures.")] = Path(
        "reports/bench/drift-job.json"
    ),
) -> None:
    """/recommend latency quiet, while POST /drift/check's job runs, and quiet again."""
    from dataclasses import asdict

    from models import artifacts
    from services.tooling.bench_drift_job import bench_drift_job as bench

    try:
        tag = str(artifacts.get_model(get_settings().artifacts.drift_reference_tag).tag)
        f = bench(_snapshot_users(), tag, logged=logged, requests=requests)
    except RecsysError as exc:
        raise fail(exc) from exc
    console.print(
        f"POST /recommend p50/p99 ms over a log of {f.logged_requests} requests: quiet "
        f"{f.quiet_p50_ms:.2f}/{f.quiet_p99_ms:.2f}; during the drift job ({f.job_s:.1f} s, "
        f"{f.report_rows} rows, {f.during_requests} calls) {f.during_p50_ms:.2f}/"
        f"{f.during_p99_ms:.2f}; after {f.after_p50_ms:.2f}/{f.after_p99_ms:.2f} (p99 during / "
        f"quiet before and after x{f.ratio:.2f}, / before x{f.ratio_before:.2f}; target <= 1.5)"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({**asdict(f), "ratio": f.ratio, "ratio_before": f.ratio_before}, indent=2)
    )
    console.print(f"wrote {out}")


@drift_app.command("plot")
def drift_plot(
    url: Annotated[str, typer.Option(help="The served API.")] = "http://127.0.0.1:3000",
    seconds: Annotated[float, typer.Option(help="How long to sample /metrics.")] = 60.0,
    every: Annotated[float, typer.Option(help="Seconds between samples.")] = 2.0,
    top: Annotated[int, typer.Option(help="Features drawn: the highest PSI at any time.")] = 5,
    out: Annotated[Path, typer.Option(help="The SVG written.")] = Path(
        "reports/drift/timeseries.svg"
    ),
) -> None:
    """Sample the monitor's PSI gauges from /metrics over time; draw them as an SVG chart."""
    import time

    import httpx

    from monitoring.plot import drift_svg, scrape_drift

    samples: list[tuple[float, dict[str, float]]] = []
    began = time.monotonic()
    while (now := time.monotonic() - began) <= seconds:
        text = httpx.get(f"{url}/metrics", timeout=10).text
        samples.append((now, scrape_drift(text)))
        time.sleep(every)
    features = {name for _, psi in samples for name in psi}
    worst = sorted(features, key=lambda f: -max(psi.get(f, 0.0) for _, psi in samples))[:top]
    series = {f: [psi.get(f, 0.0) for _, psi in samples] for f in worst}
    s = get_settings().drift
    svg = drift_svg(
        [t for t, _ in samples], series, {"warn": s.psi_warn, "drift": s.psi_drift},
        "PSI per feature, in-process drift monitor (recsys_drift_psi)",
    )  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(svg)
    console.print(f"{len(samples)} samples of {len(features)} features; drew {worst} -> {out}")
