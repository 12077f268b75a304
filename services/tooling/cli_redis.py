"""`recsys redis acl`: the least-privilege Redis ACL of a role (see `feature_store.acl`)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from feature_store.acl import ROLES, Role, acl_file_line, acl_rules, password_sha256

redis_app = typer.Typer(
    help="Redis for the online store: `recsys redis acl --role serving`.", no_args_is_help=True
)


@redis_app.command("acl")
def redis_acl(
    role: Annotated[str, typer.Option("--role", help=f"Whose rules: {', '.join(ROLES)}.")],
    user: Annotated[
        str | None, typer.Option("--user", help="Print an ACL file line for this Redis user.")
    ] = None,
    password_env: Annotated[
        str | None,
        typer.Option(
            "--password-env",
            help="Environment variable holding that user's password (only its SHA-256 is printed).",
        ),
    ] = None,
    cluster: Annotated[
        bool, typer.Option("--cluster", help="Add what a Redis Cluster client needs.")
    ] = False,
) -> None:
    """Print the role's ACL rules, or with --user and --password-env one line for an ACL file.

    The rules go after ``ACL SETUSER <name> on >password``; the line (``user NAME on #<sha256>
    <rules>``) goes into the file of Redis' ``aclfile``. The password is read from the named
    variable, so it never appears on a command line, and is never printed.
    """
    if role not in ROLES:
        raise typer.BadParameter(
            f"unknown role {role!r}: use {', '.join(ROLES)}", param_hint="--role"
        )
    chosen: Role = role  # type: ignore[assignment]  # checked just above
    if user is None and password_env is None:
        typer.echo(acl_rules(chosen, cluster=cluster))
        return
    if user is None or password_env is None:
        raise typer.BadParameter("give both --user and --password-env (or neither)")
    password = os.environ.get(password_env, "")
    if not password:
        raise typer.BadParameter(f"${password_env} is unset or empty", param_hint="--password-env")
    try:
        line = acl_file_line(user, password_sha256(password), chosen, cluster=cluster)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--user") from exc
    typer.echo(line)  # plain stdout, no rich wrapping: scripts append it to an ACL file
