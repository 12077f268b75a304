"""Operator tooling: the `recsys` CLI, benchmarks, load tests, Helm checks, bento builds."""
