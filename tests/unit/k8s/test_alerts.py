"""The chart's alerting rules and ServiceMonitor (issue 19, "Drift as time series"): every alert's
expression names only metrics (and labels) the services export. Rendered locally with helm."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.tooling.helm import KUBE_VERSION, HelmCheckError, validate_objects

from .promql import unexported_names

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
    unknown = {name: unexported_names(rule["expr"], exported) for name, rule in rules.items()}
    unknown = {name: names for name, names in unknown.items() if names}
    assert not unknown, f"alerts name what no service exports: {unknown}"


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
