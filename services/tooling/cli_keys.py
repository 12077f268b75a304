"""`recsys keys`: make API keys for the service's scopes (see `services.auth`)."""

from __future__ import annotations

from typing import Annotated

import typer

from services.auth import SCOPES, ApiScope, key_lines, new_key

keys_app = typer.Typer(help="API keys: `recsys keys new --scope recommend`.", no_args_is_help=True)


@keys_app.command("new")
def keys_new(
    scope: Annotated[
        list[str],
        typer.Option("--scope", help=f"Scope to grant, repeatable: {', '.join(SCOPES)}."),
    ],
) -> None:
    """Print a new key on the first line, then the `scope:hash` line(s) for the keys file.

    Give the key to the client; append the other line(s) to RECSYS_AUTH__KEYS_FILE (on Kubernetes,
    the Secret the chart mounts). The service never stores the key itself, only its hash.
    """
    unknown = [s for s in scope if s not in SCOPES]
    if unknown:
        raise typer.BadParameter(f"unknown scope {unknown[0]!r}: use {', '.join(SCOPES)}")
    chosen: list[ApiScope] = [s for s in SCOPES if s in scope]  # type: ignore[misc]
    key = new_key()
    typer.echo(key)  # plain stdout, no rich wrapping: scripts read these lines
    for line in key_lines(key, chosen):
        typer.echo(line)
