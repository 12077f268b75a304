"""`recsys bench …`, `recsys load`, `recsys helm …` and `recsys drift …`: operator checks."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer

from data.errors import RecsysError
from services.settings import get_settings
from services.tooling.cli_common import (
    console,
    fail,
    print_rows,
)

bench_app = typer.Typer(help="Benchmarks that print latency and throughput figures.")
helm_app = typer.Typer(help="The Helm chart in k8s/.")
drift_app = typer.Typer(help="Drift reports against the training baseline.")


@bench_app.command("features")
def bench_features(
    redis_url: Annotated[
        str | None, typer.Option(help="Use this Redis (its active version is switched!).")
    ] = None,
    reads: Annotated[int, typer.Option(help="Timed reads per store.")] = 5000,
) -> None:
    """Time 1-user + 100-item reads (Redis, embedded) and materializing an ML-1M-sized snapshot."""
    from feature_store.bench import bench_features as run

    try:
        figures = run(redis_url=redis_url, reads=reads)
    except RecsysError as exc:
        raise fail(exc) from exc
    for fig in figures:
        verdict = (
            ""
            if fig.target is None
            else f"  target < {fig.target:g}: {'ok' if fig.ok else 'MISSED'}"
        )
        console.print(f"{fig.name:>52}: {fig.value:9.3f} {fig.unit}{verdict}")


@bench_app.command("retrieval")
def bench_retrieval(
    calls: Annotated[int, typer.Option(help="Timed retrieve calls per case.")] = 5000,
    large_items: Annotated[
        int, typer.Option(help="Synthetic catalog size for the index case (0 = skip).")
    ] = 1_000_000,
    stored: Annotated[bool, typer.Option(help="Time the stored two-tower model.")] = False,
) -> None:
    """Retrieve p50/p99 at ML-1M catalog size; index build, size, recall on a 1M catalog."""
    from models.retrieval_bench import bench_retrieval as run

    s = get_settings()
    tags = (s.artifacts.two_tower_tag, s.artifacts.snapshot_tag) if stored else (None, None)
    sources = {"item_knn": s.artifacts.item_knn_tag, "content": s.artifacts.content_tag,
               "popularity": s.artifacts.popularity_tag}  # fmt: skip
    try:
        rows = run(s.retrieval, calls, large_items, 64, *tags, source_tags=sources)
    except RecsysError as exc:
        raise fail(exc) from exc
    for r in rows:
        console.print(f"{r.case}: {r.items:,} items, index {r.index_kind} {r.index_params}, "
                      f"{r.calls} calls: p50 {r.p50_us:.0f} us  p99 {r.p99_us:.0f} us  "
                      f"recall@100 {r.recall_at_100:.3f}  build {r.build_seconds:.1f} s  "
                      f"index {r.index_mb:.0f} MB", highlight=False)  # fmt: skip


@bench_app.command("ranking")
def bench_ranking(
    requests: Annotated[int, typer.Option(help="Timed requests.")] = 3000,
    candidates: Annotated[int, typer.Option(help="Candidates per request.")] = 200,
) -> None:
    """Time fetching features and scoring the fused candidates in process (p50/p99)."""
    from models.ranker_bench import bench_ranking as run

    s = get_settings()
    try:
        b = run(s.artifacts.ranker_tag, s.artifacts.snapshot_tag, s.ranking,
                s.feature_store_mode, s.redis, requests, candidates=candidates)  # fmt: skip
    except RecsysError as exc:
        raise fail(exc) from exc
    console.print(f"{b.source}: {b.trees} trees, {b.features} features, {b.requests} requests "
                  f"of {b.candidates} candidates")  # fmt: skip
    for step in b.p50_ms:
        console.print(f"{step:>9}: p50 {b.p50_ms[step]:.3f} ms  p99 {b.p99_ms[step]:.3f} ms")
    console.print(f"target {b.target}: {'ok' if b.ok else 'MISSED'}")


@helm_app.command("check")
def helm_check(
    chart: Annotated[Path, typer.Option("--chart", help="Chart directory.")] = Path("k8s"),
    kube_version: Annotated[
        str, typer.Option("--kube-version", help="Kubernetes version of the schemas.")
    ] = "1.31",
) -> None:
    """Lint the chart, render every variant (default, production, KServe; remote and embedded
    stages), schema-check every object."""
    from services.tooling.helm import check_chart

    try:
        report = check_chart(chart, kube_version=kube_version)
    except RecsysError as exc:
        raise fail(exc) from exc
    for line in report.lines():
        console.print(line, highlight=False)


@drift_app.command("report")
def drift_report(
    current: Annotated[
        Path | None, typer.Option(help="Inference-log dir or parquet (default: drift.log_dir).")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output dir (default: reports/drift).")] = None,
    method: Annotated[str, typer.Option(help="Score that decides drift: psi or kl.")] = "psi",
) -> None:
    """Evidently drift report (PSI and KL per feature) of logged traffic vs the training sample."""
    from models.artifacts import load_drift_reference
    from monitoring.drift import DriftSpec, run_drift_report

    s = get_settings()
    try:
        baseline, sample = load_drift_reference(s.artifacts.drift_reference_tag)
        spec = DriftSpec.from_baseline(
            baseline,
            method=method,
            threshold=s.drift.psi_drift,
            max_rows=s.drift.report_max_rows,
            min_requests=s.drift.min_window_requests,
            smoothing=s.drift.smoothing,
        )
        result = run_drift_report(
            current or s.drift.log_dir, sample, out or s.drift.report_dir, spec,
            keep=s.drift.report_history,
        )  # fmt: skip
    except RecsysError as exc:
        raise fail(exc) from exc
    console.print(result.summary(), highlight=False)


@bench_app.command("drift")
def bench_drift(
    requests: Annotated[int, typer.Option(help="Timed monitor updates (100 x 50 each).")] = 20_000,
    logged: Annotated[int, typer.Option(help="Logged requests for the report job.")] = 100_000,
    rows: Annotated[int, typer.Option(help="Logged rows per request.")] = 10,
) -> None:
    """Time the drift monitor per request and the Evidently job on a generated log."""
    from monitoring.bench import bench_drift_report, bench_monitor

    m = bench_monitor(requests=requests)
    console.print(
        f"monitor.update {m.rows}x{m.features}: mean {m.mean_us:.1f} us  p50 {m.p50_us:.1f}  "
        f"p99 {m.p99_us:.1f}  max {m.max_us:.0f}  (target mean < 20 us)"
    )
    console.print(f"inference_log.log: {m.log_mean_us:.1f} us; status(): {m.status_ms:.1f} ms")
    r = bench_drift_report(requests=logged, rows_per_request=rows)
    console.print(
        f"report job: {r.logged_requests} requests = {r.logged_rows} logged rows (written in "
        f"{r.log_write_s:.1f}s); evidently import {r.evidently_import_s:.1f}s; report "
        f"{r.report_s:.1f}s on {r.result.current_rows} sampled rows"
    )


# --- serving benchmarks and load tests (issue 6) ------------------------------------------------


@bench_app.command("service")
def bench_service(
    requests: Annotated[int, typer.Option(help="Timed sequential requests per service.")] = 2000,
    duration: Annotated[float, typer.Option(help="Seconds of concurrent load per service.")] = 10,
    clients: Annotated[int, typer.Option(help="Concurrent clients.")] = 16,
    placement: Annotated[
        list[str] | None,
        typer.Option(
            help="Measure only these (repeatable): embedded, embedded2 (2 workers), remote. "
            "Default: all three."
        ),
    ] = None,
    max_user_id: Annotated[
        int, typer.Option(help="Known users 1..N (default: the served feature snapshot's).")
    ] = 0,
    out: Annotated[Path, typer.Option(help="JSON file for the figures.")] = Path(
        "reports/bench/service.json"
    ),
) -> None:
    """Serve the API in each stage placement and a trivial BentoML service; compare them."""
    from services.tooling import bench_service as bench

    chosen = {"embedded": bench.EMBEDDED, "embedded2": bench.EMBEDDED_2, "remote": bench.REMOTE}
    unknown = set(placement or ()) - set(chosen)
    if unknown:
        raise fail(RecsysError(f"unknown placement {sorted(unknown)}: use {sorted(chosen)}"))
    variants = [bench.TRIVIAL, *(chosen[name] for name in placement or chosen)]
    try:
        users = range(1, max_user_id + 1) if max_user_id else _snapshot_users()
        result = bench.bench_service(
            users, variants=variants, requests=requests, duration_s=duration, clients=clients
        )
    except RecsysError as exc:
        raise fail(exc) from exc
    _print_comparison(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "figures": {label: asdict(f) for label, f in result.figures.items()},
                "targets": [t.line() for t in result.targets()],
                "load_average": result.load_average,
                "cores": result.cores,
            },
            indent=2,
        )
    )
    console.print(f"wrote {out}")


@bench_app.command("events")
def bench_events(
    calls: Annotated[int, typer.Option(help="Timed one-event calls, sequential.")] = 2000,
    clients: Annotated[int, typer.Option(help="Concurrent clients posting batches.")] = 16,
    batch: Annotated[int, typer.Option(help="Events per concurrent call.")] = 10,
    duration: Annotated[float, typer.Option(help="Seconds of concurrent posting.")] = 5,
    trials: Annotated[int, typer.Option(help="Freshness trials.")] = 1000,
    redis_url: Annotated[
        str | None,
        typer.Option(help="Serve in redis mode on this Redis (the snapshot is materialized)."),
    ] = None,
) -> None:
    """Serve the API with a fresh event log; time POST /events, count lost events, freshness."""
    from feature_store.config import RedisSettings
    from feature_store.materialize import materialize
    from models.artifacts import load_snapshot
    from services.tooling.bench_events import bench_events as run

    settings = get_settings()
    try:
        snapshot = load_snapshot(settings.artifacts.snapshot_tag)
        env = {}
        if redis_url is not None:
            materialize(snapshot, RedisSettings(url=redis_url))
            env = {"FEATURE_STORE_MODE": "redis", "REDIS_URL": redis_url}
        users, items = snapshot.user_ids.tolist(), snapshot.item_ids.tolist()
        r = run(
            users,
            items,
            calls=calls,
            clients=clients,
            batch=batch,
            duration_s=duration,
            trials=trials,
            extra_env=env,
        )
    except RecsysError as exc:
        raise fail(exc) from exc
    print_rows(
        "POST /events, served RecommendationService", ["figure", "value", "target"], r.rows()
    )
    if r.first_error:
        console.print(f"first error: {r.first_error}")
    load = ", ".join(f"{x:.2f}" for x in r.load_average)
    console.print(f"start to ready {r.start_s:.1f} s; load average {load} on {r.cores} cores")


def _snapshot_users() -> list[int]:
    from models.artifacts import load_snapshot

    return load_snapshot(get_settings().artifacts.snapshot_tag).user_ids.tolist()


def _print_comparison(result: Any) -> None:
    from rich.table import Table

    table = Table(title="POST /recommend k=10, each placement beside a trivial BentoML service")
    table.add_column("figure")
    for label in result.labels:
        table.add_column(label, justify="right")
    for row in result.rows():
        table.add_row(*row)
    console.print(table)
    for target in result.targets():
        console.print(target.line(), highlight=False)
    errors = [f"{label}: {f.first_error}" for label, f in result.figures.items() if f.first_error]
    if errors:
        console.print("first errors: " + "; ".join(errors))
    load = ", ".join(f"{x:.2f}" for x in result.load_average)
    console.print(f"load average (1, 5, 15 min): {load} on {result.cores} cores")


@bench_app.command("all")
def bench_all() -> None:
    """Run every in-process benchmark (features, ranking, ...), `bench service`, `bench events`."""
    failed = []
    for command in bench_app.registered_commands:
        name = command.name or ""
        if name in ("all", "service", "events") or command.callback is None:
            continue
        console.rule(f"recsys bench {name}")
        try:
            command.callback()
        except typer.Exit as exc:
            if exc.exit_code:
                failed.append(name)
    console.rule("recsys bench service")
    bench_service()
    console.rule("recsys bench events")
    try:
        bench_events()
    except typer.Exit as exc:
        if exc.exit_code:
            failed.append("events")
    if failed:
        raise fail(RecsysError(f"benchmarks failed: {', '.join(failed)}"))


def load(
    host: Annotated[str, typer.Option(help="Base URL of the running service.")] = (
        "http://127.0.0.1:3000"
    ),
    users: Annotated[int, typer.Option(help="Simulated users.")] = 16,
    rate: Annotated[float, typer.Option(help="Users started per second.")] = 4,
    duration: Annotated[str, typer.Option(help="Run time (30s, 2m).")] = "30s",
    p95_ms: Annotated[float, typer.Option("--p95-ms", help="Budget for p95 (ms).")] = 50,
    p99_ms: Annotated[float, typer.Option("--p99-ms", help="Budget for p99 (ms).")] = 100,
    max_user_id: Annotated[int, typer.Option(help="Known users are 1..N.")] = 943,
    out: Annotated[Path, typer.Option(help="Directory for the CSV/HTML stats.")] = Path(
        "reports/load"
    ),
    serve: Annotated[
        str | None,
        typer.Option(
            help="Serve the API first, in this placement (embedded or remote), on a free port "
            "(--host is then ignored); stopped after the run."
        ),
    ] = None,
) -> None:
    """Locust load test (tests/load/locustfile.py) that fails when p95/p99 exceed the budgets."""
    from contextlib import nullcontext

    from services.tooling.bench_service import RECOMMENDATION_SERVICE
    from services.tooling.bench_service import serve as serving
    from services.tooling.load import run_load

    if serve not in (None, "embedded", "remote"):
        raise fail(RecsysError(f"--serve must be embedded or remote, not {serve!r}"))
    try:
        server = (
            serving(RECOMMENDATION_SERVICE, extra_env={"RECSYS_STAGES": serve}, log_dir=out)
            if serve
            else nullcontext()
        )
        with server as served:
            if served is not None:
                host = served.url
                console.print(f"serving with stages {serve} at {host}")
            r = run_load(
                host,
                users=users,
                rate=rate,
                duration=duration,
                p95_ms=p95_ms,
                p99_ms=p99_ms,
                out_dir=out,
                extra_args=("--max-user-id", f"{max_user_id}"),
            )
    except RecsysError as exc:
        raise fail(exc) from exc
    console.print(r.summary(), highlight=False)
    if not r.ok:
        raise fail(RecsysError("load budget failed: " + "; ".join(r.violations)))
    console.print(f"budgets held: p95 <= {p95_ms:g} ms, p99 <= {p99_ms:g} ms, no failures")
