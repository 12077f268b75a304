"""`recsys`: the one command-line entry point (noun, then verb).

Every command builds Settings, calls one library function and prints a summary. Errors the
project raises on purpose (`RecsysError`) print one line and exit with status 1.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

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

console = Console()
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
    err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
    return typer.Exit(code=1)


def resolve_data_dir(settings: Settings, data_dir: Path | None) -> Path:
    """The directory to read: --data-dir, else DATA_DIR, else the downloaded default dataset."""
    chosen = data_dir or settings.data_dir
    if chosen is not None:
        return chosen
    from data.download import ensure_dataset

    return ensure_dataset(settings.dataset, settings.cache_dir)


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
