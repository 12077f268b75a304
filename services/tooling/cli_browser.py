"""`recsys browser`: the headless Chromium the page's browser tests drive (`make setup`)."""

from __future__ import annotations

import typer

from services.tooling.browser import install

browser_app = typer.Typer(
    help="Chromium for the page's browser tests: `recsys browser install`.", no_args_is_help=True
)


@browser_app.command("install")
def browser_install(
    quiet: bool = typer.Option(False, "--quiet", help="Say nothing when both are present."),
) -> None:
    """Install Debian's chromium and chromium-driver with apt-get where missing (as root).

    Where that cannot be done (not root, no apt-get, no network), print one line saying so and
    exit 0: the browser tests are then skipped with that reason, and the rest of the suite runs.
    """
    outcome, line = install()
    if not (quiet and outcome == "present"):
        typer.echo(f"browser: {line}")
