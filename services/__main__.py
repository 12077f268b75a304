"""`python -m services ...`: the `recsys` CLI where the console script is not installed (bentos)."""

from services.tooling.cli import app

app()
