"""The chart's distributed training Job (issue 15): an Indexed Job running `recsys train` under
torchrun, pods that find pod 0 through a headless Service, and the model store they write.
Rendered locally with helm (the variants `recsys helm check` renders); no cluster."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from data.download import DATASETS
from services.settings import Settings
from services.tooling.helm import VARIANTS, HelmCheckError

Objects = list[dict[str, Any]]
Process = subprocess.CompletedProcess[str]
JOB = "recsys-train"  # release "recsys" -> fullname "recsys"
LAUNCHER = ["python", "-m", "torch.distributed.run"]
FLAGS = ("--nnodes", "--nproc-per-node", "--node-rank", "--master-addr", "--master-port")


def find(objects: Objects, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]


def one(objects: Objects, kind: str, name: str) -> dict[str, Any]:
    found = find(objects, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, got {len(found)}"
    return found[0]


def pod_of(objects: Objects) -> dict[str, Any]:
    template: dict[str, Any] = one(objects, "Job", JOB)["spec"]["template"]
    return template


def train_container(objects: Objects) -> dict[str, Any]:
    (container,) = pod_of(objects)["spec"]["containers"]
    return container


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def torchrun_argv(container: dict[str, Any]) -> list[str]:
    """What the container runs: the launcher, its flags, the program and its arguments. With the
    S3 store a shell runs them ("$@" of its script), then the export."""
    command, args = container["command"], container["args"]
    argv: list[str] = args if command[0] == "/bin/sh" else command + args
    assert argv[: len(LAUNCHER)] == LAUNCHER
    return argv[len(LAUNCHER) :]


def flags_of(argv: list[str]) -> dict[str, str]:
    """torchrun's flags (each with one value), up to the program it starts."""
    return {argv[i]: argv[i + 1] for i in range(0, 2 * len(FLAGS), 2) if argv[i] in FLAGS}


def train_args(argv: list[str]) -> list[str]:
    """`recsys train ...` as torchrun starts it: the arguments after `--module services`."""
    at = argv.index("--module")
    assert argv[at + 1 : at + 3] == ["services", "train"]
    return argv[at + 2 :]


def option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args else None


def value(sets: dict[str, Any], chart_values: dict[str, Any], key: str) -> Any:
    """A value as a variant renders it: its --set override, else values.yaml's."""
    if key in sets:
        return sets[key]
    node: Any = chart_values
    for part in key.split("."):
        node = node[part]
    return node


def volumes_by_mount(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, Any]:
    volumes = {v["name"]: v for v in pod["volumes"]}
    return {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}


def test_training_is_off_by_default(
    default_objects: Objects, production_objects: Objects, chart_values: dict[str, Any]
) -> None:
    assert chart_values["training"]["enabled"] is False
    for objects in (default_objects, production_objects):
        assert not find(objects, "Job", JOB)
        assert not find(objects, "Service", JOB)
        assert not find(objects, "PersistentVolumeClaim", "recsys-model-store")
        assert not find(objects, "NetworkPolicy", "recsys-training")


def test_indexed_job_runs_torchrun_on_every_node(
    training_variant: str,
    check_variant: Callable[[str], Objects],
    chart_values: dict[str, Any],
) -> None:
    objects = check_variant(training_variant)
    sets = VARIANTS[training_variant][1]
    nodes = value(sets, chart_values, "training.nodes")
    procs = value(sets, chart_values, "training.procsPerNode")
    port = value(sets, chart_values, "training.masterPort")
    job = one(objects, "Job", JOB)["spec"]
    assert job["completionMode"] == "Indexed"
    assert job["completions"] == job["parallelism"] == nodes
    pod = pod_of(objects)
    assert pod["spec"]["restartPolicy"] == "Never"
    argv = torchrun_argv(train_container(objects))
    flags = flags_of(argv)
    assert flags.keys() == set(FLAGS)
    assert flags["--nnodes"] == str(nodes)
    assert flags["--nproc-per-node"] == str(procs)
    # each pod's node rank is its completion index (the Job controller sets the variable, the
    # kubelet expands $(...)), so pod 0 holds global rank 0, the one that writes the models
    assert flags["--node-rank"] == "$(JOB_COMPLETION_INDEX)"
    assert flags["--master-port"] == str(port)
    # the master address is pod 0's DNS name: hostname <job>-0 under the headless Service that
    # is the pods' subdomain
    subdomain = pod["spec"]["subdomain"]
    assert flags["--master-addr"] == f"{JOB}-0.{subdomain}.recsys.svc"
    service = one(objects, "Service", subdomain)["spec"]
    assert service["clusterIP"] == "None"
    assert service["publishNotReadyAddresses"] is True
    assert service["selector"].items() <= pod["metadata"]["labels"].items()
    assert port in [p["port"] for p in service["ports"]]
    # ...and selects no other pod of the release
    for other in find(objects, "Deployment"):
        labels = other["spec"]["template"]["metadata"]["labels"]
        assert not service["selector"].items() <= labels.items()
    assert train_args(argv)[0] == "train"


def test_torchrun_reads_the_command_as_a_static_rendezvous_through_pod_zero(
    check_variant: Callable[[str], Objects],
) -> None:
    from torch.distributed.run import config_from_args, get_args_parser

    for variant in (name for name in VARIANTS if "training" in name):
        argv = torchrun_argv(train_container(check_variant(variant)))
        flags = flags_of(argv)
        # what pod 2 runs once the kubelet has expanded its completion index
        args = get_args_parser().parse_args(
            [a.replace("$(JOB_COMPLETION_INDEX)", "2") for a in argv]
        )
        config, command, command_args = config_from_args(args)
        assert config.min_nodes == config.max_nodes == int(flags["--nnodes"]), variant
        assert config.nproc_per_node == int(flags["--nproc-per-node"]), variant
        assert config.rdzv_backend == "static", variant
        assert config.rdzv_endpoint == f"{flags['--master-addr']}:{flags['--master-port']}"
        assert config.rdzv_configs["rank"] == 2, variant
        # each process runs `python -m services train ...` (services/__main__.py: the CLI)
        assert command == sys.executable
        assert command_args[:4] == ["-u", "-m", "services", "train"], variant


def test_volume_store_is_bentoml_home(
    check_variant: Callable[[str], Objects], chart_values: dict[str, Any]
) -> None:
    objects = check_variant("training")
    pod = pod_of(objects)["spec"]
    container = train_container(objects)
    home = env_of(container)["BENTOML_HOME"]
    assert home == chart_values["training"]["modelStore"]["mountPath"]
    volume = volumes_by_mount(pod, container)[home]
    claim = one(objects, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    # every pod mounts it (one pod template), so pods on several nodes need ReadWriteMany
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    report = option(train_args(torchrun_argv(container)), "--report")
    assert report == f"{home}/train-report.json"
    assert "RECSYS_MODEL_EXPORT_URL" not in env_of(container)  # nothing to export


def test_existing_model_store_claim_is_mounted_instead(
    render_chart: Callable[..., Objects],
) -> None:
    objects = render_chart(
        **{"training.enabled": True, "training.modelStore.existingClaim": "shared-models"}
    )
    assert not find(objects, "PersistentVolumeClaim", "recsys-model-store")
    container = train_container(objects)
    mounts = volumes_by_mount(pod_of(objects)["spec"], container)
    home = env_of(container)["BENTOML_HOME"]
    assert mounts[home]["persistentVolumeClaim"]["claimName"] == "shared-models"


def test_s3_store_takes_credentials_only_from_the_secret(
    check_variant: Callable[[str], Objects],
) -> None:
    sets = VARIANTS["training-s3"][1]
    objects = check_variant("training-s3")
    container = train_container(objects)
    env = env_of(container)
    secret = sets["training.modelStore.s3.existingSecret"]
    for name, key in (("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"),
                      ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY")):  # fmt: skip
        assert env[name] == {"secretKeyRef": {"name": secret, "key": key}}
    literal = {e["name"] for e in container["env"] if "value" in e}
    assert not {n for n in literal if "SECRET" in n or "KEY" in n or "PASSWORD" in n}
    assert not find(objects, "Secret", secret)  # the user's, not rendered by the chart
    assert env["RECSYS_MODEL_EXPORT_URL"] == sets["training.modelStore.s3.url"]
    assert env["FSSPEC_S3_ENDPOINT_URL"] == sets["training.modelStore.s3.endpointUrl"]
    # the pod-local store the models are exported from: no claim at all
    assert env_of(container)["BENTOML_HOME"] in {
        path for path, v in volumes_by_mount(pod_of(objects)["spec"], container).items()
        if "emptyDir" in v
    }  # fmt: skip
    assert not find(objects, "PersistentVolumeClaim", "recsys-model-store")


def test_s3_export_runs_on_pod_zero_after_training_only(
    render_chart: Callable[..., Objects], model_store: Path, tmp_path: Path
) -> None:
    objects = render_chart(**{
        **VARIANTS["training-s3"][1], "training.modelStore.mountPath": str(model_store),
    })  # fmt: skip
    container = train_container(objects)
    shell, flag, script, name = container["command"]
    bucket = tmp_path / "bucket"
    bucket.mkdir()
    venv_bin = str(Path(sys.executable).parent)

    def run(index: int, *training: str, url: str = f"file://{bucket}/") -> Process:
        env = {**os.environ, **{k: v for k, v in env_of(container).items() if isinstance(v, str)}}
        env |= {
            "JOB_COMPLETION_INDEX": str(index),
            "PATH": f"{venv_bin}:{os.environ['PATH']}",
            "RECSYS_MODEL_EXPORT_URL": url,
            "BENTOML_DO_NOT_TRACK": "true",
        }
        env.pop("FSSPEC_S3_ENDPOINT_URL")  # fsspec would pass it to the file system
        # "$@" of the script is torchrun; `true`/`false` stand for a run that passes/fails
        return subprocess.run([shell, flag, script, name, *training], env=env, text=True,
                              capture_output=True, check=False, timeout=120)  # fmt: skip

    # a store the image cannot write to (s3:// without s3fs) fails pod 0 before training
    trained = tmp_path / "trained"
    early = run(0, "touch", str(trained), url="nosuchfs://bucket/")
    assert early.returncode != 0
    assert not trained.exists()
    for other in (1, 2):
        assert run(other, "true").returncode == 0
    assert not list(bucket.iterdir())  # only pod 0 holds the models
    failed = run(0, "false")
    assert failed.returncode != 0
    assert not list(bucket.iterdir())  # a failed run exports nothing
    done = run(0, "true")
    assert done.returncode == 0, done.stderr
    # every model of the store as <name>-<version>.bentomodel (what `bentoml models import`
    # takes), and the report
    stored = {f"{p.parent.name}-{p.name}.bentomodel"
              for p in (model_store / "models").glob("*/*") if p.is_dir()}  # fmt: skip
    assert len(stored) == 2
    assert {p.name for p in bucket.iterdir()} == stored | {"train-report.json"}
    report = (model_store / "train-report.json").read_text()
    assert (bucket / "train-report.json").read_text() == report


def test_gpu_variant_requests_gpus_and_runs_cuda(
    check_variant: Callable[[str], Objects], chart_values: dict[str, Any]
) -> None:
    sets = VARIANTS["production-training-gpu"][1]
    container = train_container(check_variant("production-training-gpu"))
    assert container["resources"]["limits"]["nvidia.com/gpu"] == sets["training.gpu"]
    assert env_of(container)["RECSYS_DEVICE"] == "cuda"
    # one process per GPU
    assert flags_of(torchrun_argv(container))["--nproc-per-node"] == str(sets["training.gpu"])
    cpu = train_container(check_variant("training"))
    assert chart_values["training"]["gpu"] == 0
    assert "nvidia.com/gpu" not in cpu["resources"].get("limits", {})
    assert env_of(cpu)["RECSYS_DEVICE"] == "cpu"


def test_every_pod_downloads_the_data_set_by_default(
    check_variant: Callable[[str], Objects],
    chart_values: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    objects = check_variant("training")
    pod = pod_of(objects)["spec"]
    (download,) = pod["initContainers"]
    dataset = chart_values["training"]["dataset"]
    assert download["command"] == ["python", "-m", "services", "data", "download", dataset]
    for name, val in env_of(download).items():
        if isinstance(val, str):
            monkeypatch.setenv(name, val)
    # `recsys data download` writes <cache_dir>/<name>: what the trainer reads
    data_dir = Settings().cache_dir / dataset
    container = train_container(objects)
    assert option(train_args(torchrun_argv(container)), "--data-dir") == str(data_dir)
    written = volumes_by_mount(pod, download)[str(Settings().cache_dir)]
    assert "emptyDir" in written
    assert volumes_by_mount(pod, container)[str(Settings().cache_dir)] == written


def test_data_set_from_an_existing_claim(check_variant: Callable[[str], Objects]) -> None:
    sets = VARIANTS["production-training-gpu"][1]
    objects = check_variant("production-training-gpu")
    pod = pod_of(objects)["spec"]
    assert "initContainers" not in pod  # nothing to download
    container = train_container(objects)
    data_dir = option(train_args(torchrun_argv(container)), "--data-dir")
    assert data_dir is not None
    (mount,) = [m for m in container["volumeMounts"] if m["mountPath"] == data_dir]
    assert mount["readOnly"] is True
    assert mount["subPath"] == sets["training.data.subPath"]
    volume = volumes_by_mount(pod, container)[data_dir]
    assert volume["persistentVolumeClaim"]["claimName"] == sets["training.data.existingClaim"]


def test_datasets_are_those_recsys_downloads(chart_dir: Path) -> None:
    schema = json.loads((chart_dir / "values.schema.json").read_text())
    assert schema["properties"]["training"]["properties"]["dataset"]["enum"] == list(DATASETS)


def test_training_pods_are_locked_down(
    training_variant: str, check_variant: Callable[[str], Objects]
) -> None:
    spec = pod_of(check_variant(training_variant))["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for container in [*spec.get("initContainers", []), *spec["containers"]]:
        sc = container["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        # torchrun and torch write under /tmp: a writable emptyDir on the read-only root
        assert "emptyDir" in volumes_by_mount(spec, container)["/tmp"]


def test_training_pods_reach_each_other_only(
    training_variant: str, check_variant: Callable[[str], Objects]
) -> None:
    objects = check_variant(training_variant)
    labels = pod_of(objects)["metadata"]["labels"]
    policy = one(objects, "NetworkPolicy", "recsys-training")["spec"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    (peer,) = rule["from"]
    assert peer.keys() == {"podSelector"}  # same namespace
    assert peer["podSelector"]["matchLabels"].items() <= labels.items()
    # every port: torchrun's store, and gloo/nccl connections between ranks on ports of their own
    assert "ports" not in rule
    # the other policies leave the training pods alone
    for other in find(objects, "NetworkPolicy"):
        if other["metadata"]["name"] != "recsys-training":
            selected = other["spec"]["podSelector"]["matchLabels"]
            assert not selected.items() <= labels.items(), other["metadata"]["name"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        # nccl needs a GPU per process
        ({"training.gpu": 1, "training.procsPerNode": 2}, "needs a GPU per process"),
        # the S3 store needs a bucket
        ({"training.modelStore.type": "s3"}, "needs training.modelStore.s3.url"),
        # a prefix without the trailing slash: every model would overwrite one object
        ({"training.modelStore.s3.url": "s3://bucket/models"}, "modelStore/s3/url"),
        # a store the chart does not know
        ({"training.modelStore.type": "gcs"}, "modelStore/type"),
        # a data set `recsys data download` does not know
        ({"training.dataset": "ml-10m"}, "training/dataset"),
        # an Indexed Job of no pods
        ({"training.nodes": 0}, "training/nodes"),
        # a stage `recsys train` does not know
        ({"training.stage": "ranker"}, "training/stage"),
    ],
)
def test_bad_training_values_fail_to_render(
    render_chart: Callable[..., Objects], values: dict[str, Any], message: str
) -> None:
    with pytest.raises(HelmCheckError, match=message):
        render_chart(**{"training.enabled": True, **values})
