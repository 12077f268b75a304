"""The chart's alerting rules and ServiceMonitor (issue 19, "Drift as time series"): every alert's
expression names only metrics (and labels) the services export. Rendered locally with helm."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
import yaml
from prometheus_client import CollectorRegistry

from services.tooling.helm import KUBE_VERSION, HelmCheckError, validate_objects

Objects = list[dict[str, Any]]
RULES = "monitoring.prometheusRule"
ALL_ALERTS_ON = {
    f"{RULES}.enabled": True,
    f"{RULES}.alerts.onlineHitRate.enabled": True,
    f"{RULES}.alerts.driftReportStale.enabled": True,
}
ALERTS = {
    "RecsysFeatureDrift", "RecsysDegradedAnswers", "RecsysStageBreakerOpen",
    "RecsysFeatureStoreBreakerOpen", "RecsysHighErrorRate", "RecsysLatencyP99OverBudget",
    "RecsysOnlineHitRateLow", "RecsysDriftReportStale",
}  # fmt: skip
OFF_BY_DEFAULT = {"RecsysOnlineHitRateLow", "RecsysDriftReportStale"}

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
    """A small PromQL identifier scan (the rules' subset of the language: selectors with label
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
            if suffixed and not name.endswith(("_total", "_created", "_bucket", "_sum", "_count")):
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


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    """Every series name the services export -> its label names."""
    for module in METRIC_MODULES:
        importlib.import_module(module)
    return {**registered_labels(prometheus_client.REGISTRY), **bentoml_metrics()}


@pytest.fixture(scope="module")
def all_alerts(render_chart: Callable[..., Objects]) -> Objects:
    """The chart rendered with every alert on (the optional ones too)."""
    return render_chart(**ALL_ALERTS_ON)


def rules_of(objects: Objects) -> dict[str, dict[str, Any]]:
    """Alerting rules by name (asserts a single PrometheusRule)."""
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    return {r["alert"]: r for group in rule["spec"]["groups"] for r in group["rules"]}


def test_bentoml_names_are_the_ones_a_served_process_exports(
    exported: dict[str, set[str]],
) -> None:
    # what tests/integration/serving/test_served.py reads from a served /metrics
    assert {"endpoint", "http_response_code"} <= exported["bentoml_service_request_total"]
    assert "le" in exported["bentoml_service_request_duration_seconds_bucket"]


def test_exported_names_are_series_names(exported: dict[str, set[str]]) -> None:
    # a counter's and a histogram's series, not their family names
    assert exported["recsys_degraded_answers_total"] == {"stage"}
    assert "recsys_degraded_answers" not in exported
    assert exported["recsys_stage_seconds_bucket"] == {"stage", "le"}
    assert "recsys_stage_seconds" not in exported
    assert exported["recsys_drift_drifted_features"] == {"source"}  # a gauge: its own name


def test_every_alert_names_only_exported_metrics(
    all_alerts: Objects, exported: dict[str, set[str]]
) -> None:
    rules = rules_of(all_alerts)
    assert rules.keys() == ALERTS
    unknown = {}
    for name, rule in rules.items():
        found = scan_promql(rule["expr"])
        assert found.metrics, name
        assert found.functions <= PROMQL_FUNCTIONS, (name, found.functions - PROMQL_FUNCTIONS)
        missing = found.metrics - exported.keys()
        if missing:
            unknown[name] = missing
            continue
        for metric, labels in found.matcher_labels.items():
            assert labels <= exported[metric] | SCRAPE_LABELS, (name, metric, labels)
        known = set().union(*(exported[m] for m in found.metrics))
        assert found.grouping_labels <= known | SCRAPE_LABELS, (name, found.grouping_labels)
    assert not unknown, f"alerts name metrics no service exports: {unknown}"


def test_rules_are_off_by_default_and_on_in_production(
    default_objects: Objects, production_objects: Objects
) -> None:
    kinds = {"PrometheusRule", "ServiceMonitor"}
    assert not [o for o in default_objects if o["kind"] in kinds]
    assert sorted(o["kind"] for o in production_objects if o["kind"] in kinds) == sorted(kinds)
    assert rules_of(production_objects).keys() == ALERTS - OFF_BY_DEFAULT


def test_every_alert_says_how_bad_what_and_where_to_look(all_alerts: Objects) -> None:
    for name, rule in rules_of(all_alerts).items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name
        assert rule["annotations"].keys() == {"summary", "description", "runbook"}, name
        assert all(rule["annotations"].values()), name


# A values file as an operator would write it (helm --set passes 0.02 as a string).
TUNED_VALUES = """
monitoring:
  prometheusRule:
    enabled: true
    labels: {release: prometheus}
    alertLabels: {team: recsys}
    seriesSelector: 'cluster="eu", namespace="{{ .Release.Namespace }}"'
    runbookBaseUrl: https://runbooks.example/recsys
    rateWindow: 2m
    alerts:
      drift: {features: 5, for: 45m, source: report}
      errorRate: {ratio: 0.02}
      latencyP99: {budgetSeconds: 0.25, severity: critical}
      onlineHitRate: {enabled: true, floor: 0.1, k: 5}
      driftReportStale: {enabled: true}
      stageBreakerOpen: {enabled: false}
"""


def test_thresholds_labels_and_selector_come_from_values(
    render_chart: Callable[..., Objects], tmp_path: Path
) -> None:
    values = tmp_path / "values-alerts.yaml"
    values.write_text(TUNED_VALUES)
    objects = render_chart((values,))
    (rule,) = [o for o in objects if o["kind"] == "PrometheusRule"]
    assert rule["metadata"]["labels"]["release"] == "prometheus"
    rules = rules_of(objects)
    assert "RecsysStageBreakerOpen" not in rules
    selector = 'cluster="eu", namespace="recsys"'
    drift = rules["RecsysFeatureDrift"]
    assert drift["expr"] == (
        f'max(recsys_drift_drifted_features{{source="report",{selector}}}) >= 5'
    )
    assert drift["for"] == "45m"
    assert drift["labels"] == {"team": "recsys", "severity": "warning"}
    assert drift["annotations"]["runbook_url"] == (
        "https://runbooks.example/recsys#recsysfeaturedrift"
    )
    assert rules["RecsysHighErrorRate"]["expr"].endswith("> 0.02")
    assert "[2m]" in rules["RecsysHighErrorRate"]["expr"]
    latency = rules["RecsysLatencyP99OverBudget"]
    assert latency["expr"] == (
        "histogram_quantile(0.99, sum by (le) (rate("
        f'recsys_stage_seconds_bucket{{stage="total",{selector}}}[2m]))) > 0.25'
    )
    assert latency["labels"]["severity"] == "critical"
    assert 'recsys_online_hits_total{k="5",' in rules["RecsysOnlineHitRateLow"]["expr"]
    assert "< 0.1 and" in rules["RecsysOnlineHitRateLow"]["expr"]
    for name, alert in rules.items():
        assert selector in alert["expr"], name


def test_empty_series_selector_leaves_bare_names(render_chart: Callable[..., Objects]) -> None:
    rules = rules_of(render_chart(**ALL_ALERTS_ON, **{f"{RULES}.seriesSelector": ""}))
    assert rules["RecsysDegradedAnswers"]["expr"] == (
        "sum by (stage) (rate(recsys_degraded_answers_total[5m])) > 0"
    )
    assert "{" not in rules["RecsysDriftReportStale"]["expr"]
    for rule in rules.values():
        assert ",}" not in rule["expr"]
        assert "{," not in rule["expr"]


def test_no_alert_enabled_renders_no_rule(render_chart: Callable[..., Objects]) -> None:
    off = {f"{RULES}.alerts.{a}.enabled": False for a in (
        "drift", "degradedAnswers", "stageBreakerOpen", "featureStoreBreakerOpen", "errorRate",
        "latencyP99",
    )}  # fmt: skip
    objects = render_chart(**{f"{RULES}.enabled": True}, **off)
    assert not [o for o in objects if o["kind"] == "PrometheusRule"]


def test_service_monitor_scrapes_every_bento_service(
    production_objects: Objects, render_chart: Callable[..., Objects]
) -> None:
    for objects in (production_objects, render_chart(**{
        "monitoring.serviceMonitor.enabled": True, "stages": "embedded",
        "monitoring.serviceMonitor.labels.release": "prometheus",
    })):  # fmt: skip
        (monitor,) = [o for o in objects if o["kind"] == "ServiceMonitor"]
        spec = monitor["spec"]
        services = [o for o in objects if o["kind"] == "Service"]
        selected = [
            s for s in services
            if spec["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
        ]  # fmt: skip
        assert selected == services
        assert spec["namespaceSelector"] == {"matchNames": ["recsys"]}
        (endpoint,) = spec["endpoints"]
        for service in services:
            assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
        assert endpoint["path"] == "/metrics"
        # BentoML's `endpoint` label (the route) must not become exported_endpoint
        assert endpoint["honorLabels"] is True
    assert monitor["metadata"]["labels"]["release"] == "prometheus"


def test_kserve_renders_no_service_monitor(render_chart: Callable[..., Objects]) -> None:
    objects = render_chart(**{"monitoring.serviceMonitor.enabled": True, "kserve.enabled": True})
    assert not [o for o in objects if o["kind"] == "ServiceMonitor"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        # drift on no feature at all is no alert
        ({f"{RULES}.alerts.drift.features": 0}, "features"),
        # only the two sources of the drift gauges
        ({f"{RULES}.alerts.drift.source": "evidently"}, "source"),
        # a duration Prometheus does not parse
        ({f"{RULES}.alerts.latencyP99.for": "10 minutes"}, "for"),
        # a share, not a percentage
        ({f"{RULES}.alerts.errorRate.ratio": 5}, "ratio"),
        # a misspelled alert key
        ({f"{RULES}.alerts.latencyP999.enabled": True}, "latencyP999"),
        # matchers without braces: the template adds them
        ({f"{RULES}.seriesSelector": '{namespace="x"}'}, "seriesSelector"),
        # the severity label is each alert's own
        ({f"{RULES}.alertLabels.severity": "page"}, "propertyName 'severity'"),
    ],
)
def test_bad_monitoring_values_fail_to_render(
    render_chart: Callable[..., Objects], values: dict[str, Any], message: str
) -> None:
    with pytest.raises(HelmCheckError, match=message):
        render_chart(**values)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        # a misspelled rule field (the API server would drop it: no alert duration)
        (("spec", "groups", 0, "rules", 0, "fro"), "5m", "fro"),
        # a rule with no expression
        (("spec", "groups", 0, "rules", 0, "expr"), None, "expr"),
        # a duration Prometheus does not parse
        (("spec", "groups", 0, "rules", 0, "for"), "5 min", "5 min"),
        # the wrong API group
        (("apiVersion",), "monitoring.coreos.com/v1beta1", "was expected"),
    ],
)
def test_helm_check_validates_the_rules(
    all_alerts: Objects, path: tuple[Any, ...], value: Any, message: str
) -> None:
    (rule,) = [o for o in all_alerts if o["kind"] == "PrometheusRule"]
    assert validate_objects([rule], KUBE_VERSION) == []
    broken = yaml.safe_load(yaml.safe_dump(rule))
    *parents, last = path
    target = broken
    for key in parents:
        target = target[key]
    if value is None:
        del target[last]
    else:
        target[last] = value
    (failure,) = validate_objects([broken], KUBE_VERSION)
    assert failure.startswith("PrometheusRule/recsys: ")
    assert message in failure
