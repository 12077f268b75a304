"""What every `recsys` command module shares: the consoles, error exit, data-dir option, tables."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from data.errors import RecsysError
from services.settings import Settings

console = Console(width=None if sys.stdout.isatty() else 140)
err_console = Console(stderr=True)

DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="MovieLens directory (default: DATA_DIR, else download)."),
]


def fail(exc: RecsysError) -> typer.Exit:
    """Print `exc` as one error line; the Exit (status 1) to raise."""
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


def print_table(title: str, rows: dict[str, dict[str, float]]) -> None:
    from rich.table import Table

    from models.evaluation import METRIC_NAMES

    table = Table(title=title)
    table.add_column("model")
    for name in METRIC_NAMES:
        table.add_column(name, justify="right")
    for model, metrics in rows.items():
        table.add_row(model, *(f"{metrics[name]:.4f}" for name in METRIC_NAMES))
    console.print(table)


def print_rows(title: str, header: list[str], rows: list[list[str]]) -> None:
    from rich.table import Table

    table = Table(title=title)
    for n, column in enumerate(header):
        table.add_column(column, justify="left" if n == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console.print(table)
