"""The chart's side of issue 18: API keys from a Secret, least-privilege Redis users, and no
secret outside Secret objects. Rendered locally with helm; no cluster."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from feature_store.acl import ROLES, acl_rules, password_sha256
from services.auth import hash_key, parse_keys
from services.settings import Settings
from services.tooling.helm import VARIANTS as CHECK_VARIANTS
from services.tooling.helm import HelmCheckError, render

Objects = list[dict[str, Any]]
SCOPES = ("recommend", "events", "admin")
KEYS_FILE = "/etc/recsys/api-keys/keys"
# the variants of `recsys helm check` without values-production.yaml (which brings its own Secret)
VARIANTS = {name: sets for name, (production, sets) in CHECK_VARIANTS.items() if not production}


def find(objects: Objects, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]


def secret_data(objects: Objects, name: str) -> dict[str, str]:
    (secret,) = find(objects, "Secret", name)
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def pods(objects: Objects) -> dict[str, dict[str, Any]]:
    """Pod spec of every workload, by name (InferenceServices: their predictor)."""
    out = {}
    for o in objects:
        if o["kind"] in ("Deployment", "Job"):
            out[o["metadata"]["name"]] = o["spec"]["template"]["spec"]
        elif o["kind"] == "CronJob":
            out[o["metadata"]["name"]] = o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif o["kind"] == "InferenceService":
            out[o["metadata"]["name"]] = o["spec"]["predictor"]
    return out


def env_of(pod: dict[str, Any]) -> dict[str, Any]:
    (container,) = pod["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


@pytest.mark.parametrize("variant", VARIANTS)
def test_api_keys_are_on_and_mounted_only_in_the_recommendation_pods(
    render_chart: Callable[..., Objects], variant: str
) -> None:
    objects = render_chart(**VARIANTS[variant])
    for name, pod in pods(objects).items():
        env = env_of(pod)
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        if name == "recsys-recommendation":
            assert env["RECSYS_AUTH__ENABLED"] == "true"
            assert env["RECSYS_AUTH__KEYS_FILE"] == KEYS_FILE
            # only the keys file (hashes), never the keys, read-only, as a directory so that
            # a Secret update reaches it (the service re-reads it: rotation without restart)
            assert volumes["api-keys"]["secret"]["secretName"] == "recsys-api-keys"
            assert volumes["api-keys"]["secret"]["items"] == [{"key": "keys", "path": "keys"}]
            (mount,) = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "api-keys"]
            assert mount == {"name": "api-keys", "mountPath": str(Path(KEYS_FILE).parent),
                             "readOnly": True}  # fmt: skip
        else:  # stages behind the NetworkPolicy and the jobs check no keys
            assert not [k for k in env if k.startswith("RECSYS_AUTH__")], name
            assert "api-keys" not in volumes, name


def test_generated_keys_file_grants_each_key_its_scope(default_objects: Objects) -> None:
    data = secret_data(default_objects, "recsys-api-keys")
    keys = {scope: data[f"{scope}-key"] for scope in SCOPES}
    for key in keys.values():  # the shape of `recsys keys new`: rsk_ + 43 url-safe characters
        assert re.fullmatch(r"rsk_[A-Za-z0-9_-]{43}", key)
    assert parse_keys(data["keys"]) == {hash_key(k): frozenset({s}) for s, k in keys.items()}


def test_auth_off_renders_no_keys(render_chart: Callable[..., Objects]) -> None:
    objects = render_chart(**{"auth.enabled": False})
    assert not find(objects, "Secret", "recsys-api-keys")
    pod = pods(objects)["recsys-recommendation"]
    env = env_of(pod)
    assert env["RECSYS_AUTH__ENABLED"] == "false"
    assert "RECSYS_AUTH__KEYS_FILE" not in env
    assert "api-keys" not in {v["name"] for v in pod["volumes"]}


def test_existing_keys_secret_is_mounted_instead(render_chart: Callable[..., Objects]) -> None:
    objects = render_chart(**{"auth.existingSecret": "our-keys"})
    assert not find(objects, "Secret", "recsys-api-keys")
    volumes = {v["name"]: v for v in pods(objects)["recsys-recommendation"]["volumes"]}
    assert volumes["api-keys"]["secret"]["secretName"] == "our-keys"


def test_rate_limits_map_onto_settings(
    render_chart: Callable[..., Objects], monkeypatch: pytest.MonkeyPatch
) -> None:
    objects = render_chart(**{
        "auth.rateLimits.recommend.perSecond": 50, "auth.rateLimits.recommend.burst": 80,
        "auth.rateLimits.driftCheck.perSecond": 0.5, "auth.rateLimits.driftCheck.burst": 3,
    })  # fmt: skip
    env = env_of(pods(objects)["recsys-recommendation"])
    assert {k: v for k, v in env.items() if "__PER_SECOND" in k or "__BURST" in k} == {
        "RECSYS_AUTH__RECOMMEND__PER_SECOND": "50", "RECSYS_AUTH__RECOMMEND__BURST": "80",
        "RECSYS_AUTH__DRIFT_CHECK__PER_SECOND": "0.5", "RECSYS_AUTH__DRIFT_CHECK__BURST": "3",
    }  # fmt: skip
    for key, value in env.items():
        if isinstance(value, str):
            monkeypatch.setenv(key, value)
    auth = Settings().auth
    assert auth.enabled
    assert str(auth.keys_file) == KEYS_FILE
    assert (auth.recommend.per_second, auth.recommend.burst) == (50, 80)
    assert (auth.drift_check.per_second, auth.drift_check.burst) == (0.5, 3)
    assert auth.events == type(auth)().events  # scopes left out keep the service's default


def acl_lines(objects: Objects) -> dict[str, list[str]]:
    """users.acl of the Redis users Secret: user name -> the rest of its line, split."""
    text = secret_data(objects, "recsys-redis-users")["users.acl"]
    lines = {}
    for line in text.splitlines():
        word, name, *rest = line.split()
        assert word == "user"
        lines[name] = rest
    return lines


def test_redis_users_carry_exactly_the_rules_of_feature_store_acl(
    default_objects: Objects,
) -> None:
    data = secret_data(default_objects, "recsys-redis-users")
    lines = acl_lines(default_objects)
    assert lines.keys() == {"default", "recsys-serving", "recsys-materialize"}
    # the admin keeps everything and the Redis password; without this line Redis would make it
    # nopass (an ACL file defines every user)
    assert lines["default"] == ["on", f"#{password_sha256(data['redis-password'])}",
                                "~*", "&*", "+@all"]  # fmt: skip
    for role in ROLES:
        state, digest, *rules = lines[f"recsys-{role}"]
        assert (state, digest) == ("on", f"#{password_sha256(data[f'{role}-password'])}")
        assert " ".join(rules) == acl_rules(role)
    assert len({data[f"{r}-password"] for r in ROLES} | {data["redis-password"]}) == 3


def test_each_pod_connects_as_its_role(default_objects: Objects) -> None:
    expected = {
        "recsys-retriever": "serving", "recsys-ranker": "serving",
        "recsys-recommendation": "serving", "recsys-materialize": "materialize",
    }  # fmt: skip
    for name, pod in pods(default_objects).items():
        env = env_of(pod)
        role = expected.get(name)
        if role is None:  # the drift CronJob reads the inference log, never Redis
            assert not {"REDIS_HOST", "REDIS_USERNAME", "REDIS_PASSWORD"} & env.keys(), name
            continue
        assert env["REDIS_USERNAME"] == f"recsys-{role}", name
        assert env["REDIS_PASSWORD"] == {
            "secretKeyRef": {"name": "recsys-redis-users", "key": f"{role}-password"}
        }, name


def test_acl_users_off_connects_as_the_default_user(
    render_chart: Callable[..., Objects],
) -> None:
    objects = render_chart(**{"redisAcl.enabled": False})
    assert acl_lines(objects).keys() == {"default"}
    for name, pod in pods(objects).items():
        env = env_of(pod)
        assert "REDIS_USERNAME" not in env, name
        if "REDIS_HOST" in env:
            assert env["REDIS_PASSWORD"] == {
                "secretKeyRef": {"name": "recsys-redis-users", "key": "redis-password"}
            }


def test_external_redis_users_per_role(render_chart: Callable[..., Objects]) -> None:
    objects = render_chart(**{
        "redis.enabled": False, "externalRedis.host": "redis.example.internal",
        "externalRedis.existingSecret": "ext-admin",
        "externalRedis.users.serving.username": "app",
        "externalRedis.users.serving.existingSecret": "ext-app",
    })  # fmt: skip
    assert not find(objects, "Secret", "recsys-redis-users")  # not ours to run
    ranker = env_of(pods(objects)["recsys-ranker"])
    assert ranker["REDIS_USERNAME"] == "app"
    assert ranker["REDIS_PASSWORD"] == {
        "secretKeyRef": {"name": "ext-app", "key": "serving-password"}
    }
    job = env_of(pods(objects)["recsys-materialize"])  # no user named: the default user
    assert "REDIS_USERNAME" not in job
    assert job["REDIS_PASSWORD"] == {"secretKeyRef": {"name": "ext-admin", "key": "redis-password"}}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        # Redis must load the ACL file and password of the Secret the app reads
        ({"redis.auth.existingSecret": "other"}, "must name the Redis users Secret"),
        # ... under the key the app reads
        ({"redis.auth.existingSecretPasswordKey": "pw"}, "existingSecretPasswordKey"),
        # auth comes from `auth`, which the container env would override anyway
        ({"config.RECSYS_AUTH__ENABLED": "false"}, "RECSYS_AUTH__ENABLED"),
        # a password in the ConfigMap is a leak
        ({"config.RECSYS_REDIS__PASSWORD": "x"}, "RECSYS_REDIS__PASSWORD"),
        # a token bucket needs both figures
        ({"auth.rateLimits.recommend.perSecond": 5}, "burst"),
        # an unknown scope
        ({"auth.rateLimits.everything.perSecond": 5}, "everything"),
        # a username Redis' ACL file cannot hold
        ({"redisAcl.users.serving": "two words"}, "redisAcl/users/serving"),
        # a named external user needs a Secret with its password
        ({"redis.enabled": False, "externalRedis.host": "h",
          "externalRedis.users.serving.username": "app"}, "holding its password"),
    ],
)  # fmt: skip
def test_bad_security_values_fail_to_render(
    render_chart: Callable[..., Objects], values: dict[str, Any], message: str
) -> None:
    with pytest.raises(HelmCheckError, match=message):
        render_chart(**values)


@pytest.mark.parametrize("variant", [*VARIANTS, "production", "external"])
def test_secrets_never_leak_outside_secret_objects(
    render_chart: Callable[..., Objects], chart_dir: Path, variant: str
) -> None:
    known = "KnownRedisPassw0rd-d0-not-leak"
    if variant == "production":
        objects = render_chart((chart_dir / "values-production.yaml",))
    elif variant == "external":
        objects = render_chart(**{"redis.enabled": False, "externalRedis.host": "h",
                                  "externalRedis.existingSecret": "ext"})  # fmt: skip
    else:
        objects = render_chart(**VARIANTS[variant], **{"redis.auth.password": known})
    secrets = {known}
    for secret in find(objects, "Secret"):
        for value in secret["data"].values():
            plain = base64.b64decode(value).decode()
            secrets |= {plain} | {part for part in re.split(r"[\s#:]+", plain) if len(part) > 20}
    if variant in VARIANTS:
        assert secret_data(objects, "recsys-redis-users")["redis-password"] == known
    secrets = {s for s in secrets if len(s) > 20}
    forms = secrets | {base64.b64encode(s.encode()).decode() for s in secrets}
    for obj in objects:
        if obj["kind"] == "Secret":
            continue
        text = yaml.safe_dump(obj)
        leaked = [f for f in forms if f in text]
        assert not leaked, f"{obj['kind']}/{obj['metadata']['name']} holds a secret"


def test_bundled_redis_reads_the_users_secret_this_chart_renders(
    chart_with_stub_redis: Callable[[str], Path], helm: Path
) -> None:
    # a stand-in for the Bitnami chart: it resolves the same values with tpl in its own context
    chart = chart_with_stub_redis(
        "data:\n"
        "  secret: {{ tpl .Values.auth.existingSecret . | quote }}\n"
        "  key: {{ .Values.auth.existingSecretPasswordKey | quote }}\n"
        '  master: {{ tpl (toYaml (pick .Values.master "extraFlags" "extraVolumes"'
        ' "extraVolumeMounts")) . | quote }}\n'
        '  replica: {{ tpl (toYaml (pick .Values.replica "extraFlags" "extraVolumes"'
        ' "extraVolumeMounts")) . | quote }}\n'
    )
    objects = render(chart, (), {}, helm=helm)
    (stub,) = find(objects, "ConfigMap", "recsys-redis-stub")
    (users,) = find(objects, "Secret", "recsys-redis-users")
    assert stub["data"]["secret"] == users["metadata"]["name"]  # Redis' requirepass
    assert stub["data"]["key"] == "redis-password"
    for node in ("master", "replica"):
        spec = yaml.safe_load(stub["data"][node])
        (flag,) = spec["extraFlags"]
        path = flag.removeprefix("--aclfile ")
        (volume,) = spec["extraVolumes"]
        assert volume["secret"]["secretName"] == users["metadata"]["name"]
        (item,) = volume["secret"]["items"]
        (mount,) = spec["extraVolumeMounts"]
        assert mount["name"] == volume["name"]
        assert f"{mount['mountPath']}/{item['path']}" == path
        assert item["key"] == "users.acl"
