"""`recsys`: the one command-line entry point (noun, then verb).

Every command builds Settings, calls one library function and prints a summary. Errors the
project raises on purpose (`RecsysError`) print one line and exit with status 1. Training,
evaluation and serving commands live here; `cli_data` holds `data`, `features` and `events`,
`cli_bench` the operator checks (`bench`, `load`, `helm`, `drift`).
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from data.errors import RecsysError
from services.settings import get_settings
from services.tooling import cli_bench_serving  # noqa: F401  (registers bench auth, drift-job)
from services.tooling.cli_bench import bench_app, drift_app, helm_app, load
from services.tooling.cli_browser import browser_app
from services.tooling.cli_common import (
    DataDirOption,
    console,
    fail,
    print_rows,
    print_table,
    resolve_data_dir,
)
from services.tooling.cli_data import data_app, events_app, features_app, features_materialize
from services.tooling.cli_keys import keys_app
from services.tooling.cli_redis import redis_app

app = typer.Typer(
    help="Two-stage movie recommender: data, training, evaluation, serving.",
    pretty_exceptions_show_locals=False,
)
app.add_typer(data_app, name="data")
app.add_typer(features_app, name="features")
app.add_typer(drift_app, name="drift")
app.add_typer(bench_app, name="bench")
app.add_typer(helm_app, name="helm")
app.add_typer(events_app, name="events")
app.add_typer(keys_app, name="keys")
app.add_typer(redis_app, name="redis")
app.add_typer(browser_app, name="browser")


@app.callback()
def _main() -> None:
    logging.basicConfig(
        level=get_settings().log_level.upper(), format="%(levelname)s %(name)s: %(message)s"
    )


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
    report_file: Annotated[
        Path | None,
        typer.Option("--report", help="Also write what training prints as JSON to this file."),
    ] = None,
    nproc: Annotated[
        int,
        typer.Option(
            min=1,
            help="Train the two-tower model in this many data-parallel processes (torchrun).",
        ),
    ] = 1,
) -> None:
    """Train the deployable models on all the data and store them (the backtest: `evaluate`).

    Under torchrun (`--nproc N` here, or torchrun on several nodes running `recsys train`) the
    two-tower model trains data-parallel; rank 0 trains the rest and stores every model.
    """
    from feature_store.event_sources import load_events
    from models.distributed import current_rank, resolve_device, torchrun_command
    from models.train import models_exist, train_all

    settings = get_settings()
    try:
        resolve_device(settings.device)  # a wrong RECSYS_DEVICE fails before any work
    except RecsysError as exc:
        raise fail(exc) from exc
    if nproc > 1 and not current_rank().distributed:
        command = torchrun_command(nproc, _without_option(sys.argv[1:], "--nproc"))
        console.print("running: " + " ".join(command))
        raise typer.Exit(subprocess.run(command, check=False).returncode)
    if not current_rank().main:
        report_file = None  # rank 0 writes the report
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
                           events=given, device=settings.device)  # fmt: skip
    except RecsysError as exc:
        raise fail(exc) from exc
    console.print({"validation": report.metrics, "tags": report.tags, **report.info})
    console.print(f"seconds: {report.seconds}; total {sum(report.seconds.values()):.1f}")
    console.print(f"peak resident memory (MiB) after each step: {report.peak_rss_mb}")
    if report_file is not None:
        report_file.parent.mkdir(parents=True, exist_ok=True)
        report_file.write_text(json.dumps(report.to_dict(), indent=2))
        console.print(f"wrote {report_file}")


@app.command("training-table")
def training_table(
    reports: Annotated[list[Path], typer.Argument(help="`recsys train --report` files.")],
    readme: Annotated[
        Path | None, typer.Option(help="Replace the table between this file's markers.")
    ] = None,
) -> None:
    """README's training table (time, memory, validation recall) from training reports."""
    from services.tooling.training_table import replace_block, table

    text = table(reports)
    if readme is None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)
        return
    try:
        readme.write_text(replace_block(readme.read_text(), text))
    except ValueError as exc:
        raise fail(RecsysError(f"{readme}: {exc}")) from exc
    console.print(f"wrote the table of {len(reports)} reports into {readme}")


def _without_option(args: list[str], name: str) -> list[str]:
    """`args` without ``name VALUE`` or ``name=VALUE``."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            out.append(arg)
    return out


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
        raise fail(exc) from exc
    print_table(title, rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"metrics": rows, **info}, indent=2))
    console.print(f"wrote {out}; {info}")


# --- serving ------------------------------------------------------------------------------------


@app.command()
def serve(
    port: Annotated[int, typer.Option(help="HTTP port.")] = 3000,
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    stages: Annotated[
        str | None,
        typer.Option(
            help="embedded (retriever and ranker in the API's process) or remote (their own "
            "processes). Default: RECSYS_STAGES, else embedded."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="API worker processes. Default: RECSYS_WORKERS, else 1."),
    ] = None,
) -> None:
    """Run the RecommendationService with `bentoml serve`.

    With FEATURE_STORE_MODE=redis the served snapshot is materialized into Redis first.
    """
    import os

    if stages is not None:
        if stages not in ("embedded", "remote"):
            raise fail(RecsysError(f"--stages must be embedded or remote, not {stages!r}"))
        os.environ["RECSYS_STAGES"] = stages
    if workers is not None:
        os.environ["RECSYS_WORKERS"] = str(workers)
    get_settings.cache_clear()
    settings = get_settings()
    if settings.feature_store_mode == "redis":
        features_materialize(redis_url=None, snapshot_tag=None)
    console.print(f"serving with stages {settings.stages}, {settings.workers} worker(s)")
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
    from services.tooling.build import BENTOFILES, build_bentos

    try:
        tags = build_bentos(get_settings(), tuple(only or BENTOFILES))
    except RecsysError as exc:
        raise fail(exc) from exc
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
    from services.tooling.batch import recommend_many, write_batch

    if (user_id is None) == (batch is None):
        raise fail(RecsysError("give exactly one of --user-id or --batch"))
    try:
        if batch is not None:
            n = write_batch(batch, out, k, stage)
            console.print(f"wrote {n} users to {out}")
        else:
            print(json.dumps(next(recommend_many([user_id], k, stage)), indent=2))
    except (RecsysError, ValueError) as exc:
        raise fail(RecsysError(str(exc))) from exc


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
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="RECSYS_API_KEY",
            help="Key sent as Bearer (auth on): recommend, events; admin for online figures.",
        ),
    ] = None,
) -> None:
    """Replay held-out ratings in time order: /recommend each, then (applied) post the rating.

    After the applied pass the service's own online HitRate/MRR (GET /info) are shown beside it.
    """
    from services.tooling.replay import load_rows, parse_modes
    from services.tooling.replay import replay as run

    try:
        sequence = load_rows(test, limit=limit, users=users)
        report = run(url, sequence, k=k, modes=parse_modes(mode), api_key=api_key)
    except RecsysError as exc:
        raise fail(exc) from exc
    title = f"replay of {report.rows} ratings, {report.users} users ({report.selection})"
    print_rows(title, *report.table())
    online = report.online_table()
    if online is not None:
        print_rows("the service's own online figures over the applied pass", *online)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report.to_json(), indent=2))
        console.print(f"wrote {out}")


app.command()(load)  # defined with the other operator checks (cli_bench)
