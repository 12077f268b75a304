"""The Grafana dashboard the chart ships (issue 16, "Grafana"): a ConfigMap for Grafana's dashboard
sidecar whose panels query only metrics (and labels) the services export, and show every metric
family of the service. Rendered locally with helm."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from services.tooling.helm import KUBE_VERSION, HelmCheckError, render, validate_objects

from .promql import family, scan_promql, unexported_names

Objects = list[dict[str, Any]]
Dashboards = list[tuple[dict[str, Any], dict[str, Any]]]
GRAFANA = "monitoring.grafanaDashboard"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
PANEL_TYPES = {"row", "stat", "timeseries", "state-timeline", "table"}
# Grafana's own variables, replaced by a value of their kind before a query is scanned.
BUILTIN_VARIABLES = {"__rate_interval": "1m", "__interval": "1m", "__range": "6h"}
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")
_LEGEND_LABEL = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_LABEL_VALUES = re.compile(r"^label_values\((?:(.+),\s*)?(\w+)\)$")
# Series a panel must show, by family: every recsys_* family and BentoML's HTTP metrics. A metric
# family left off the dashboard goes here, with the reason.
NOT_ON_DASHBOARD: dict[str, str] = {}
HTTP_FAMILIES = {"bentoml_service_request", "bentoml_service_request_duration_seconds"}
# The issue's list ("request rate and latency per stage, errors, degraded answers, cold starts,
# feature-store reads/fallbacks/breaker state, events, drift status"): a panel whose title holds
# the first string queries the second.
OPERATOR_VIEWS = [
    ("Recommendations by outcome", "sum by (outcome) (rate(recsys_requests_total{"),
    ("Latency per stage", "histogram_quantile(0.5, sum by (le, stage) (rate(recsys_stage_sec"),
    ("Latency per stage", "histogram_quantile(0.99, sum by (le, stage) (rate(recsys_stage_se"),
    ("5xx share by bento", 'bentoml_service_request_total{http_response_code=~"5..",'),
    ("Degraded answers by missing stage", "sum by (stage) (rate(recsys_degraded_answers_tot"),
    ("Cold-start share", "sum(rate(recsys_cold_starts_total{"),
    ("Candidates by source", "sum by (source) (rate(recsys_candidates_total{"),
    ("Feature reads by backend", "sum by (backend) (rate(recsys_feature_store_reads_total{"),
    ("Fallbacks by reason", "sum by (reason) (rate(recsys_feature_store_fallbacks_total{"),
    ("Redis circuit breaker", "max(recsys_feature_store_circuit_state{"),
    ("Stage circuit breakers", "max by (stage) (recsys_stage_circuit_state{"),
    ("Events by outcome", "sum by (outcome) (rate(recsys_events_total{"),
    ("Events by outcome", 'endpoint="/events",http_response_code=~"4.."'),
    ("Events pending", "max(recsys_events_pending{"),
    ("Auth rejections by reason", "sum by (reason) (rate(recsys_auth_rejections_total{"),
    ("Drifted features", "max by (source) (recsys_drift_drifted_features{"),
    ("PSI per feature", "topk($topk, max by (feature) (recsys_drift_psi{"),
    ("Drift status per feature", "max by (feature) (recsys_drift_status{"),
    ("HitRate@10 by segment", 'sum by (segment) (increase(recsys_online_hits_total{k="10",'),
    ("MRR@10 by segment", "sum by (segment) (increase(recsys_online_reciprocal_rank_total{"),
]


def all_panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(panel title, target) of every panel query."""
    for panel in all_panels(dashboard):
        for target in panel.get("targets", []):
            yield panel["title"], target


def variable_query(variable: dict[str, Any]) -> str:
    query = variable["query"]
    return str(query["query"] if isinstance(query, dict) else query)


def substituted(expr: str, dashboard: dict[str, Any]) -> str:
    """`expr` with the dashboard's variables replaced by a value each (their current or first
    option; `recsys` for query variables) and Grafana's by one of their kind.

    Raises:
        AssertionError: a variable the dashboard does not define.
    """
    values = dict(BUILTIN_VARIABLES)
    for variable in dashboard["templating"]["list"]:
        options = [o["value"] for o in variable.get("options", [])]
        current = variable.get("current", {}).get("value") or (options or ["recsys"])[0]
        values[variable["name"]] = str(current)

    def value(match: re.Match[str]) -> str:
        name = next(g for g in match.groups() if g)
        assert name in values, f"${name} is no variable of the dashboard: {expr}"
        return values[name]

    return _VARIABLE.sub(value, expr)


def test_dashboard_is_off_by_default_and_on_in_production(
    default_objects: Objects,
    production_objects: Objects,
    dashboards_in: Callable[[Objects], Dashboards],
) -> None:
    assert dashboards_in(default_objects) == []
    assert len(dashboards_in(production_objects)) == 1


def test_configmap_is_labelled_for_the_sidecar(
    production_objects: Objects, dashboards_in: Callable[[Objects], Dashboards]
) -> None:
    ((configmap, _),) = dashboards_in(production_objects)
    meta = configmap["metadata"]
    assert meta["name"] == "recsys-grafana-dashboard"
    assert meta["namespace"] == "recsys"
    assert meta["labels"]["grafana_dashboard"] == "1"
    assert meta["labels"]["app.kubernetes.io/instance"] == "recsys"
    assert "annotations" not in meta
    assert list(configmap["data"]) == ["recsys-overview.json"]
    # kubectl apply (client side) keeps the object in an annotation of at most 256 KiB
    assert len(configmap["data"]["recsys-overview.json"].encode()) < 256 * 1024
    assert validate_objects([configmap], KUBE_VERSION) == []


def test_dashboard_has_grafanas_shape(dashboard: dict[str, Any]) -> None:
    assert dashboard["schemaVersion"] == 39
    assert dashboard["title"] == "Recommender overview (recsys/recsys)"
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard["uid"])
    assert dashboard.get("id") is None  # provisioned: Grafana assigns the id
    panels = list(all_panels(dashboard))
    ids = [p["id"] for p in panels]
    assert all(isinstance(i, int) and i > 0 for i in ids)
    assert len(set(ids)) == len(ids), "panel ids must be unique"
    titles = [p["title"] for p in panels]
    assert len(set(titles)) == len(titles), "panel titles must be unique"
    cells: dict[tuple[int, int], str] = {}
    for panel in panels:
        assert panel["type"] in PANEL_TYPES, panel["title"]
        grid = panel["gridPos"]
        assert all(isinstance(grid[k], int) for k in ("h", "w", "x", "y")), panel["title"]
        assert min(grid["h"], grid["w"]) > 0, panel["title"]
        assert min(grid["x"], grid["y"]) >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
        if panel["type"] == "row":
            assert "targets" not in panel
            continue
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["description"], panel["title"]
        assert "defaults" in panel["fieldConfig"], panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs, panel["title"]
        assert len(set(refs)) == len(refs), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert isinstance(target["expr"], str), panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_datasource_and_namespace_are_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    namespace = variables["namespace"]
    assert namespace["type"] == "query"
    assert namespace["datasource"] == DATASOURCE
    assert namespace["current"]["value"] == "recsys"  # the release's namespace
    # All matches series without a namespace label too (a scrape that does not add it)
    assert namespace["includeAll"]
    assert namespace["allValue"] == ".*"
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"] == DATASOURCE, variable["name"]


def test_every_query_names_only_exported_metrics(
    dashboard: dict[str, Any], exported: dict[str, set[str]]
) -> None:
    unknown: dict[str, list[str]] = {}
    for title, target in queries(dashboard):
        expr = substituted(target["expr"], dashboard)
        problems = unexported_names(expr, exported)
        found = scan_promql(expr)
        # a legend names labels the query's result has
        known = found.grouping_labels or set().union(
            *(exported.get(m, set()) for m in found.metrics)
        )
        legend = set(_LEGEND_LABEL.findall(target.get("legendFormat", "")))
        problems += [f"legend label {label}" for label in sorted(legend - known)]
        if problems:
            unknown[f"{title} [{target['refId']}]"] = problems
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        match = _LABEL_VALUES.fullmatch(variable_query(variable))
        assert match, f"variable {variable['name']}: label_values(metric, label) expected"
        selector, label = match.groups()
        # label_values(metric, label) reads a label of that metric's series
        problems = unexported_names(f"group by ({label}) ({selector or ''})", exported)
        if problems:
            unknown[f"variable {variable['name']}"] = problems
    assert not unknown, f"dashboard queries name what no service exports: {unknown}"


def test_every_query_is_narrowed_to_the_namespace(dashboard: dict[str, Any]) -> None:
    for title, target in queries(dashboard):
        expr = target["expr"]
        for metric in scan_promql(substituted(expr, dashboard)).metrics:
            for match in re.finditer(rf"\b{metric}\b(\{{[^}}]*\}})?", expr):
                selector = match.group(1) or ""
                assert 'namespace=~"$namespace"' in selector, f"{title}: {match.group(0)}"


def test_every_metric_family_is_on_a_panel(
    dashboard: dict[str, Any], exported: dict[str, set[str]]
) -> None:
    shown = {
        family(metric)
        for _, target in queries(dashboard)
        for metric in scan_promql(substituted(target["expr"], dashboard)).metrics
    }
    service = {family(s) for s in exported if s.startswith("recsys_")} | HTTP_FAMILIES
    missing = service - shown - NOT_ON_DASHBOARD.keys()
    assert not missing, f"add a panel for {sorted(missing)} (or list it in NOT_ON_DASHBOARD)"
    assert not NOT_ON_DASHBOARD.keys() & shown, "NOT_ON_DASHBOARD lists metrics a panel shows"


@pytest.mark.parametrize(("title", "query"), OPERATOR_VIEWS)
def test_operator_views(dashboard: dict[str, Any], title: str, query: str) -> None:
    exprs = [t["expr"] for panel_title, t in queries(dashboard) if title in panel_title]
    assert exprs, f"no panel titled {title!r}"
    assert any(query in expr for expr in exprs), (title, exprs)


def test_rendered_dashboard_is_the_charts_file(
    dashboard: dict[str, Any], dashboard_file: dict[str, Any]
) -> None:
    # helm parses and writes the file back (fromJson/toPrettyJson): only what the release sets
    # may differ, and numbers and nulls survive
    shipped = {**dashboard, "uid": None, "title": None}
    original = {**dashboard_file, "uid": None, "title": None}
    for variables in (shipped, original):
        variables["templating"] = {"list": [
            {**v, "current": None} if v["name"] == "namespace" else v
            for v in variables["templating"]["list"]
        ]}  # fmt: skip
    assert shipped == original


# Values an operator of kube-prometheus-stack would write: Grafana's namespace, its folder
# annotation, a label value of their own.
SIDECAR_VALUES = """
monitoring:
  grafanaDashboard:
    enabled: true
    namespace: monitoring
    labelKey: grafana-dashboards
    labelValue: recsys
    labels: {team: recsys}
    annotations: {grafana_folder: Recommender}
    uid: recsys-prod
    title: Recommender (prod)
"""


def test_release_values_set_where_and_how_the_sidecar_loads_it(
    render_chart: Callable[..., Objects],
    dashboards_in: Callable[[Objects], Dashboards],
    tmp_path: Path,
) -> None:
    values = tmp_path / "values-grafana.yaml"
    values.write_text(SIDECAR_VALUES)
    ((configmap, dashboard),) = dashboards_in(render_chart((values,)))
    meta = configmap["metadata"]
    assert meta["namespace"] == "monitoring"
    assert meta["labels"]["grafana-dashboards"] == "recsys"
    assert "grafana_dashboard" not in meta["labels"]
    assert meta["labels"]["team"] == "recsys"
    assert meta["annotations"] == {"grafana_folder": "Recommender"}
    assert (dashboard["uid"], dashboard["title"]) == ("recsys-prod", "Recommender (prod)")
    # the panels still default to the release's namespace, not the ConfigMap's
    (namespace,) = [v for v in dashboard["templating"]["list"] if v["name"] == "namespace"]
    assert namespace["current"]["value"] == "recsys"


def test_default_uid_fits_grafanas_limit(
    chart_dir: Path, helm: Path, dashboards_in: Callable[[Objects], Dashboards]
) -> None:
    release = "a-release-name-long-enough-to-overflow-a-uid"
    objects = render(
        chart_dir, (), {f"{GRAFANA}.enabled": True}, release=release, namespace="team-a", helm=helm
    )
    ((configmap, dashboard),) = dashboards_in(objects)
    assert len(dashboard["uid"]) <= 40
    assert dashboard["uid"].startswith("team-a-a-release-name")
    assert not dashboard["uid"].endswith("-")
    assert dashboard["title"] == f"Recommender overview (team-a/{release}-recsys)"
    assert configmap["metadata"]["namespace"] == "team-a"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        # a label value Kubernetes refuses
        ({f"{GRAFANA}.labelValue": "my dashboards"}, "labelValue"),
        # a label key Kubernetes refuses
        ({f"{GRAFANA}.labelKey": "grafana dashboard"}, "labelKey"),
        # Grafana's uids are at most 40 characters
        ({f"{GRAFANA}.uid": "u" * 41}, "uid"),
        # a namespace is a DNS label
        ({f"{GRAFANA}.namespace": "Monitoring"}, "namespace"),
        # a misspelled key
        ({f"{GRAFANA}.folder": "Recommender"}, "folder"),
    ],
)
def test_bad_dashboard_values_fail_to_render(
    render_chart: Callable[..., Objects], values: dict[str, Any], message: str
) -> None:
    with pytest.raises(HelmCheckError, match=message):
        render_chart(**{f"{GRAFANA}.enabled": True}, **values)
