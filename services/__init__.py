"""Composition root: settings, the serving pipeline, BentoML services and the `recsys` CLI."""
