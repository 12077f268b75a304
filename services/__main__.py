"""`python -m services ...`: the `recsys` CLI where the console script is not installed (bentos)."""

from services.cli import app

app()
