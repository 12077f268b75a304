"""The PromQL scan that checks the chart's alert and dashboard queries (promql.py here)."""

from __future__ import annotations

import pytest

from .promql import family, scan_promql, unexported_names

# What a tiny service would export: series name -> its labels.
EXPORTED = {"a_total": {"stage"}, "b_bucket": {"backend", "le"}, "c": {"source", "feature"}}


@pytest.mark.parametrize(
    ("expr", "metrics", "functions"),
    [
        # a selector with a matcher, a range, an aggregation with by
        ('sum by (stage) (rate(a_total{x="1"}[5m])) > 0', {"a_total"}, {"sum", "rate"}),
        # a bare name, arithmetic with numbers and a function without arguments
        ("time() - max(b_seconds) > 48 * 3600", {"b_seconds"}, {"time", "max"}),
        # quantile of buckets, by after the aggregation, a float
        ("histogram_quantile(0.99, sum(rate(c_bucket[1m])) by (le)) > 1e-3", {"c_bucket"},
         {"histogram_quantile", "sum", "rate"}),
        # and / or between two selectors, strings that hold braces and names
        ('d{e=~"x{1}"} and f{g!="rate(h)"} or absent(d)', {"d", "f"}, {"absent"}),
    ],
)  # fmt: skip
def test_promql_scan(expr: str, metrics: set[str], functions: set[str]) -> None:
    found = scan_promql(expr)
    assert found.metrics == metrics
    assert found.functions == functions


def test_promql_scan_rejects_unbalanced_brackets() -> None:
    with pytest.raises(AssertionError, match="unbalanced"):
        scan_promql("sum(rate(a_total[5m])")


def test_known_names_pass() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, backend) (rate(b_bucket{namespace=~"x"}[5m])))'
        ' / topk(3, max by (feature) (c{source="monitor"})) and a_total{stage="total"}'
    )
    assert unexported_names(expr, EXPORTED) == []


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        # a metric no service registers
        ("sum(rate(x_total[5m]))", "metric x_total"),
        # a family name instead of a series name (a counter's series ends in _total)
        ("rate(a[5m])", "metric a"),
        # a matcher on a label the metric does not have
        ('a_total{outcome="ok"}', "label outcome of a_total"),
        # grouping by a label none of the metrics has
        ("sum by (reason) (rate(a_total[5m]))", "label reason (grouping)"),
        # a function PromQL does not have
        ("percentile(0.9, a_total)", "function percentile()"),
        # a number is no query
        ("1 + 1", "no metric at all"),
    ],
)
def test_unknown_names_are_reported(expr: str, problem: str) -> None:
    assert problem in unexported_names(expr, EXPORTED)


@pytest.mark.parametrize(
    ("series", "name"),
    [("a_total", "a"), ("b_bucket", "b"), ("b_count", "b"), ("a_created", "a"), ("c", "c")],
)
def test_family_of_a_series(series: str, name: str) -> None:
    assert family(series) == name
