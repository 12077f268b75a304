"""What the chart's PromQL may name: the series the services export, and a scan of an expression
for the metrics, functions and labels it names (the alerting rules, the Grafana dashboard)."""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from importlib import resources

import prometheus_client
import yaml
from prometheus_client import CollectorRegistry

# The modules that register the services' metrics (importing them registers them in
# prometheus_client's default registry, as the served processes do).
METRIC_MODULES = (
    "services.recommendation", "services.retriever", "services.ranker", "services.pipeline",
    "services.stages", "services.events", "services.auth", "services.online_quality",
    "feature_store.metrics", "monitoring.metrics",
)  # fmt: skip
# Labels the scrape adds (a ServiceMonitor's target labels, the usual annotation-based scrape
# config's), and `le` of histogram buckets.
SCRAPE_LABELS = frozenset(
    {"namespace", "pod", "instance", "job", "service", "container", "endpoint", "le"}
)
# Suffixes of a counter's and a histogram's series.
SERIES_SUFFIXES = ("_total", "_created", "_bucket", "_sum", "_count")

# PromQL words that are neither metrics nor labels.
PROMQL_FUNCTIONS = frozenset({
    "sum", "min", "max", "avg", "count", "group", "stddev", "stdvar", "topk", "bottomk",
    "quantile", "count_values", "abs", "absent", "absent_over_time", "avg_over_time", "ceil",
    "changes", "clamp", "clamp_max", "clamp_min", "count_over_time", "delta", "deriv", "exp",
    "floor", "histogram_quantile", "idelta", "increase", "irate", "label_join", "label_replace",
    "last_over_time", "ln", "log2", "log10", "max_over_time", "min_over_time", "predict_linear",
    "quantile_over_time", "rate", "resets", "round", "scalar", "sort", "sort_desc", "sqrt",
    "stddev_over_time", "sum_over_time", "time", "timestamp", "vector",
})  # fmt: skip
PROMQL_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "inf", "nan"})
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_SELECTOR = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*\"\"")
_RANGE = re.compile(r"\[[^\]]*\]")
_NUMBER = re.compile(r"(?<![a-zA-Z0-9_:])\d+(?:\.\d+)?(?:e[+-]?\d+)?")
_IDENTIFIER = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?")


@dataclass
class Expression:
    """What a PromQL expression names: metrics, functions, and labels (by metric or grouping)."""

    metrics: set[str] = field(default_factory=set)
    functions: set[str] = field(default_factory=set)
    matcher_labels: dict[str, set[str]] = field(default_factory=dict)
    grouping_labels: set[str] = field(default_factory=set)


def scan_promql(expr: str) -> Expression:
    """A small PromQL identifier scan (the chart's subset of the language: selectors with label
    matchers, ranges, aggregations with by/without, functions, arithmetic and comparisons).

    Raises:
        AssertionError: brackets do not balance, or a selector without a metric name.
    """
    stack: list[str] = []
    for char in _STRING.sub('""', expr):
        if char in "({[":
            stack.append(char)
        elif char in ")}]":
            assert stack, f"unbalanced: {expr}"
            assert "({["[")}]".index(char)] == stack.pop(), f"unbalanced: {expr}"
    assert not stack, f"unbalanced: {expr}"
    found = Expression()
    text = _STRING.sub('""', expr)
    for match in _GROUPING.finditer(text):
        found.grouping_labels |= {x.strip() for x in match.group(2).split(",") if x.strip()}
    text = _GROUPING.sub(" ", text)
    for match in _SELECTOR.finditer(text):
        assert match.group(1), f"a selector without a metric name in {expr}"
        labels = found.matcher_labels.setdefault(match.group(1), set())
        labels |= set(_MATCHER.findall(match.group(2)))
    text = _SELECTOR.sub(lambda m: f" {m.group(1)} ", text)
    text = _NUMBER.sub(" ", _RANGE.sub(" ", text))
    for name, call in _IDENTIFIER.findall(text):
        if call:
            found.functions.add(name)
        elif name.lower() not in PROMQL_KEYWORDS:
            found.metrics.add(name)
    return found


def unexported_names(expr: str, exported: Mapping[str, set[str]]) -> list[str]:
    """What `expr` names that no service exports: metrics, labels of their matchers, labels of
    by/without/on (each checked against its metrics' labels and the scrape's), and functions
    PromQL does not have. Empty when every name is known.
    """
    found = scan_promql(expr)
    problems = [] if found.metrics else ["no metric at all"]
    problems += [f"function {f}()" for f in sorted(found.functions - PROMQL_FUNCTIONS)]
    problems += [f"metric {m}" for m in sorted(found.metrics - exported.keys())]
    for metric, labels in sorted(found.matcher_labels.items()):
        unknown = labels - exported.get(metric, labels) - SCRAPE_LABELS
        problems += [f"label {label} of {metric}" for label in sorted(unknown)]
    known = set().union(*(exported.get(m, set()) for m in found.metrics)) | SCRAPE_LABELS
    problems += [f"label {label} (grouping)" for label in sorted(found.grouping_labels - known)]
    return problems


def family(series: str) -> str:
    """The metric family a series belongs to (``x_total``, ``x_bucket`` -> ``x``)."""
    for suffix in SERIES_SUFFIXES:
        if series.endswith(suffix):
            return series.removesuffix(suffix)
    return series


def registered_labels(registry: CollectorRegistry) -> dict[str, set[str]]:
    """Series name -> label names, for every series name a metric of `registry` is exposed as
    (a counter's ``_total`` and ``_created``, a histogram's ``_bucket``, ``_sum``, ``_count``...).

    Reads prometheus_client's own maps (``_collector_to_names``, ``_labelnames``): a labelled
    metric that has seen no value yet exposes no sample to read its labels from.
    """
    out: dict[str, set[str]] = {}
    collectors = registry._collector_to_names  # the registry's own map of what it holds
    for collector, names in collectors.items():
        labels = set(getattr(collector, "_labelnames", ()))
        suffixed = getattr(collector, "_type", None) in {"counter", "histogram"}
        for name in names:
            if suffixed and not name.endswith(SERIES_SUFFIXES):
                continue  # the family's bare name: no series of that name is exposed
            out[name] = labels | ({"le"} if name.endswith("_bucket") else set())
    return out


def bentoml_metrics() -> dict[str, set[str]]:
    """What a served BentoML 1.4 process exports for HTTP traffic, from the installed BentoML.

    New-style services add ``RunnerTrafficMetricsMiddleware`` under the namespace of the v2
    configuration (``services.metrics.namespace``, ``bentoml_service``); the middleware registers
    its metrics only inside a served process, so it is set up here on a registry of our own.
    """
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware

    config = resources.files("bentoml._internal.configuration.v2") / "default_configuration.yaml"
    namespace = yaml.safe_load(config.read_text())["services"]["metrics"]["namespace"]
    registry = CollectorRegistry()

    class Client:  # the part of BentoML's PrometheusClient the middleware uses
        Histogram = partial(prometheus_client.Histogram, registry=registry)
        Counter = partial(prometheus_client.Counter, registry=registry)
        Gauge = partial(prometheus_client.Gauge, registry=registry)
        Summary = partial(prometheus_client.Summary, registry=registry)

    middleware = RunnerTrafficMetricsMiddleware(app=None, namespace=namespace)
    middleware._setup(metrics_client=Client(), duration_buckets=(0.1, 1.0))
    return registered_labels(registry)


def exported_series() -> dict[str, set[str]]:
    """Every series name the services export -> its label names (imports the services)."""
    for module in METRIC_MODULES:
        importlib.import_module(module)
    return {**registered_labels(prometheus_client.REGISTRY), **bentoml_metrics()}
