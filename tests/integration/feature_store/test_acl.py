"""Least-privilege Redis users (issue 18): the real code paths run as each ACL user of
`feature_store.acl` on a real redis-server, and everything else is refused with NOPERM.

Each test creates the users with ``ACL SETUSER`` from `acl_rules` (and drops them after), runs
the project's code as them, then reads ``ACL LOG``: the only refusals allowed are redis-py's
optional ``CLIENT SETINFO`` / ``CLIENT MAINT_NOTIFICATIONS`` on connect, so a silent fallback
(the rate limiter and the resilient store swallow Redis errors) cannot hide a missing command.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import redis
import redis.asyncio as aioredis
import typer
from redis.backoff import NoBackoff
from redis.retry import Retry
from typer.testing import CliRunner

from data.snapshot import FeatureSnapshot
from feature_store import keys
from feature_store.acl import ROLES, Role, acl_file_line, acl_rules, password_sha256
from feature_store.config import RedisSettings
from feature_store.errors import FeatureStoreUnavailable
from feature_store.event_sources import load_events
from feature_store.events import RatingEvent
from feature_store.live_users import UserRowUpdater
from feature_store.local_redis import (
    LocalRedis,
    cluster_port,
    find_redis_binary,
    free_port,
    server_command,
)
from feature_store.materialize import materialize
from feature_store.memory_store import MemoryFeatureStore
from feature_store.redis_events import RedisEvents
from feature_store.redis_store import RedisFeatureStore
from feature_store.resilient import build_feature_store
from services.auth import AuthSettings
from services.rate_limit import KEY_PREFIX, RateLimiter
from services.tooling.cli_redis import redis_app
from services.tooling.helm import render

pytestmark = pytest.mark.integration

NO_RETRY = Retry(NoBackoff(), 0)  # redis-py retries a failed AUTH for seconds by default
TOLERATED = {"client"}  # redis-py's CLIENT SETINFO / MAINT_NOTIFICATIONS on connect (ignored)
Users = dict[Role, RedisSettings]
REPO_ROOT = Path(__file__).resolve().parents[3]


@contextmanager
def acl_users(admin: redis.Redis, url: str, cluster: bool = False) -> Iterator[Users]:
    """One ACL user per role with a random password; yields settings that connect as each."""
    users: Users = {}
    for role in ROLES:
        name, password = f"test-{role}", secrets.token_urlsafe(24)
        rules = acl_rules(role, cluster=cluster).split()
        admin.execute_command("ACL", "SETUSER", name, "reset", "on", f">{password}", *rules)
        users[role] = RedisSettings(
            url=url, username=name, password=password, cluster=cluster, active_version_ttl_s=0.0
        )
    admin.acl_log_reset()
    try:
        yield users
    finally:
        admin.execute_command("ACL", "DELUSER", *(u.username for u in users.values()))


def refused(admin: redis.Redis) -> set[tuple[str, str]]:
    """(user, command or key) of every ACL LOG entry other than the tolerated ones."""
    return {
        (entry["username"], entry["object"])
        for entry in admin.acl_log(count=1000)
        if entry["object"] not in TOLERATED
    }


def _events(snapshot: FeatureSnapshot, user: int, n: int) -> list[RatingEvent]:
    return [
        RatingEvent(user, int(snapshot.item_ids[j]), float(1 + j % 5), 2_000_000 + j)
        for j in range(n)
    ]


def _writer(snapshot: FeatureSnapshot, settings: RedisSettings) -> RedisEvents:
    store = RedisFeatureStore(settings, expected_version=snapshot.version)
    updater = UserRowUpdater.from_snapshot(snapshot)
    return RedisEvents(store, updater, MemoryFeatureStore(snapshot).base_row, 10_000)


def test_each_role_runs_its_code_with_no_refusal(
    snapshot: FeatureSnapshot,
    other_snapshot: FeatureSnapshot,
    redis_settings: RedisSettings,
    raw: redis.Redis,
) -> None:
    with acl_users(raw, str(redis_settings.url)) as users:
        # materialize: write, verify, switch, then switch again (SCAN + UNLINK of the old one)
        materialize(other_snapshot, users["materialize"])
        report = materialize(snapshot, users["materialize"])
        assert report.previous_version == other_snapshot.version
        assert report.deleted_keys > 0
        assert raw.get(keys.ACTIVE_KEY) == snapshot.version.encode()

        # serving: features, POST /events (one WATCH/MULTI/EXEC), a user's events
        serving = users["serving"]
        store = RedisFeatureStore(serving, expected_version=snapshot.version)
        rows = store.read(int(snapshot.user_ids[3]), snapshot.item_ids[:20])
        np.testing.assert_array_equal(rows.items, snapshot.item_matrix[:20])
        user, events = int(snapshot.user_ids[3]), _events(snapshot, int(snapshot.user_ids[3]), 6)
        writer = _writer(snapshot, serving)
        writer.apply(events[:3])
        writer.apply(events[3:])
        assert writer.events_of(user) == events
        resilient = build_feature_store("redis", serving, snapshot)
        count = snapshot.user_columns.index("user_count")
        served = resilient.read(user, snapshot.item_ids[:1])
        assert served.backend == "redis"  # no silent fallback to the embedded store
        base = snapshot.user_rows(np.array([user]))[0][0][count]
        assert served.user[count] == base + 6

        # a transaction abandoned while WATCHing: redis-py's UNWATCH, not a NOPERM, on the way out
        with pytest.raises(KeyError, match="mid-transaction"):
            _abandon_watch(store.client, keys.user_key(snapshot.version, user))

        # the rate limiter's token bucket: SCRIPT LOAD (the cache is empty) then EVALSHA
        raw.script_flush()
        granted = asyncio.run(_take_tokens(serving, "key-a"))
        assert granted == [0.0, 0.0]
        bucket = f"{KEY_PREFIX}key-a:recommend"
        assert raw.exists(bucket)
        assert raw.pttl(bucket) > 0

        # reading the event stream back for training (`recsys events export`): materialize
        assert load_events(str(redis_settings.url), users["materialize"]) == events
        store.close()
        assert refused(raw) == set()


def _abandon_watch(client: Any, key: str) -> None:
    with client.pipeline(transaction=True) as pipe:
        pipe.watch(key)
        raise KeyError("the caller failed mid-transaction")


async def _take_tokens(settings: RedisSettings, owner: str) -> list[float]:
    client = aioredis.Redis.from_url(
        str(settings.url), username=settings.username, password=settings.password
    )
    limiter = RateLimiter(AuthSettings(), client)
    try:
        return [await limiter.take(owner, "recommend") for _ in range(2)]
    finally:
        await client.aclose()


# (role, what it tries); each must fail with NOPERM
DENIED: list[tuple[Role, Callable[[redis.Redis], Any]]] = [
    ("serving", lambda r: r.flushall()),  # wipe everything
    ("serving", lambda r: r.flushdb()),
    ("serving", lambda r: r.config_get("requirepass")),  # read or change the server's config
    ("serving", lambda r: r.config_set("appendonly", "no")),
    ("serving", lambda r: r.keys("*")),  # O(N) over the whole keyspace
    ("serving", lambda r: r.execute_command("DEBUG", "SLEEP", "0")),
    ("serving", lambda r: r.execute_command("ACL", "SETUSER", "test-serving", "+@all")),
    ("serving", lambda r: r.acl_list()),  # see other users
    ("serving", lambda r: r.execute_command("MONITOR")),  # watch everyone's traffic
    ("serving", lambda r: r.eval("return 1", 0)),  # arbitrary script text
    ("serving", lambda r: r.script_flush()),
    ("serving", lambda r: r.publish("chan", "x")),  # no Pub/Sub channels
    ("serving", lambda r: r.mset({keys.item_key("v", 1): b"x"})),  # materialization's writes
    ("serving", lambda r: r.unlink(keys.ACTIVE_KEY)),  # drop a version or the pointer
    ("serving", lambda r: r.scan(0)),
    ("serving", lambda r: r.get("sessions:42")),  # keys outside rs:v1:*
    ("serving", lambda r: r.set("rs:v2:active", "x")),  # another layout's keys
    ("serving", lambda r: r.mget([keys.ACTIVE_KEY, "other"])),  # one key outside is enough
    ("serving", lambda r: r.xadd("events", {"u": 1})),
    ("materialize", lambda r: r.flushall()),
    ("materialize", lambda r: r.keys("*")),
    ("materialize", lambda r: r.config_get("*")),
    ("materialize", lambda r: r.xadd(keys.stream_key("v"), {"u": 1})),  # events are serving's
    ("materialize", lambda r: r.rpush(keys.history_key("v", 1), b"x")),
    ("materialize", lambda r: r.get("sessions:42")),
]


@pytest.mark.parametrize(("role", "attempt"), DENIED)
def test_everything_else_is_refused(
    role: Role,
    attempt: Callable[[redis.Redis], Any],
    redis_settings: RedisSettings,
    raw: redis.Redis,
) -> None:
    with acl_users(raw, str(redis_settings.url)) as users:
        client = redis.Redis.from_url(
            str(redis_settings.url), username=users[role].username, password=users[role].password
        )
        with pytest.raises(redis.exceptions.NoPermissionError):
            attempt(client)
        client.close()


def test_serving_cannot_materialize(snapshot: FeatureSnapshot, redis_settings, raw) -> None:
    with acl_users(raw, str(redis_settings.url)) as users:
        with pytest.raises(FeatureStoreUnavailable, match="no permissions to run the 'mset'"):
            materialize(snapshot, users["serving"])
        assert raw.get(keys.ACTIVE_KEY) is None
        assert raw.dbsize() == 0  # not even a first batch written


def _cli(*args: str, env: dict[str, str] | None = None) -> Any:
    app = typer.Typer()
    app.add_typer(redis_app, name="redis")  # as `recsys redis`
    return CliRunner().invoke(app, ["redis", "acl", *args], env=env)


def test_cli_prints_rules_and_an_acl_file_line_redis_loads(tmp_path: Path) -> None:
    for role in ROLES:
        result = _cli("--role", role)
        assert result.exit_code == 0, result.output
        assert result.output == acl_rules(role) + "\n"
    admin_pw, serving_pw = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    result = _cli(
        "--role", "serving", "--user", "recsys-serving", "--password-env", "PW",
        env={"PW": serving_pw},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert serving_pw not in result.output
    line = result.output.strip()
    assert line == acl_file_line("recsys-serving", password_sha256(serving_pw), "serving")
    # an ACL file replaces every user: without a `default` line Redis would create it with
    # nopass, so the file carries the admin's line too (as the chart's does)
    acl_file = tmp_path / "users.acl"
    acl_file.write_text(f"user default on #{password_sha256(admin_pw)} ~* &* +@all\n{line}\n")
    with _redis_with_aclfile(acl_file, admin_pw) as server:
        user = redis.Redis(port=server.port, username="recsys-serving", password=serving_pw)
        assert user.get(keys.ACTIVE_KEY) is None
        with pytest.raises(redis.exceptions.NoPermissionError):
            user.flushall()
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(
                port=server.port, username="recsys-serving", password="wrong", retry=NO_RETRY
            ).get("x")
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=server.port, retry=NO_RETRY).get("x")  # default needs its password
        user.close()


def test_the_acl_file_the_chart_generates_runs_the_roles(
    snapshot: FeatureSnapshot, tmp_path: Path
) -> None:
    objects = render(REPO_ROOT / "k8s")
    (secret,) = [o for o in objects if o["metadata"]["name"] == "recsys-redis-users"]
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    acl_file = tmp_path / "users.acl"
    acl_file.write_text(data["users.acl"])
    with _redis_with_aclfile(acl_file, data["redis-password"]) as server:
        url = f"redis://127.0.0.1:{server.port}/0"
        users = {
            role: RedisSettings(url=url, username=f"recsys-{role}",
                                password=data[f"{role}-password"])
            for role in ROLES
        }  # fmt: skip
        materialize(snapshot, users["materialize"])
        store = RedisFeatureStore(users["serving"], expected_version=snapshot.version)
        rows = store.read(int(snapshot.user_ids[0]), snapshot.item_ids[:5])
        np.testing.assert_array_equal(rows.items, snapshot.item_matrix[:5])
        with pytest.raises(redis.exceptions.NoPermissionError):
            store.client.flushall()
        store.close()
        admin = redis.Redis(port=server.port, password=data["redis-password"])
        assert refused(admin) == {("recsys-serving", "flushall")}
        admin.close()


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--role", "admin"], {}, "unknown role"),  # only the project's roles
        (["--role", "serving", "--user", "u"], {}, "both --user and --password-env"),
        (["--role", "serving", "--user", "u", "--password-env", "NOPE"], {}, "unset or empty"),
        (["--role", "serving", "--user", "a b", "--password-env", "PW"], {"PW": "x"}, "username"),
    ],
)
def test_cli_refuses_bad_input(args: list[str], env: dict[str, str], message: str) -> None:
    result = _cli(*args, env=env)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


@contextmanager
def _redis_with_aclfile(acl_file: Path, admin_password: str) -> Iterator[LocalRedis]:
    """redis-server with `acl_file` and requirepass (as the chart runs Redis)."""
    port = free_port()
    # one argument "--aclfile PATH", as the Bitnami chart's start script passes extraFlags
    command = server_command(port, "--requirepass", admin_password, f"--aclfile {acl_file}")
    server = LocalRedis(subprocess.Popen(command, stdout=subprocess.DEVNULL), port)
    deadline = time.monotonic() + 10
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "redis-server with an aclfile did not start"
                time.sleep(0.02)
        assert redis.Redis(port=port, password=admin_password).ping()
        yield server
    finally:
        server.stop()


@pytest.mark.slow  # cluster creation takes 3-8 s
def test_cluster_rules_let_each_role_work_on_a_three_node_cluster(
    snapshot: FeatureSnapshot,
    private_redis: Callable[..., LocalRedis],
    tmp_path: Path,
) -> None:
    nodes = [
        private_redis(port, "--cluster-enabled", "yes", "--cluster-config-file",
                      str(tmp_path / f"nodes-{port}.conf"), "--dir", str(tmp_path))
        for port in (cluster_port() for _ in range(3))
    ]  # fmt: skip
    subprocess.run(
        [str(find_redis_binary("redis-cli")), "--cluster", "create",
         *(f"127.0.0.1:{n.port}" for n in nodes), "--cluster-replicas", "0", "--cluster-yes"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    admins = [redis.Redis(port=n.port) for n in nodes]
    deadline = time.monotonic() + 20
    while not all(b"cluster_state:ok" in a.execute_command("CLUSTER", "INFO") for a in admins):
        assert time.monotonic() < deadline, "cluster did not become ready"
        time.sleep(0.1)
    with _users_on_every_node(admins, nodes[1].url) as users:
        materialize(snapshot, users["materialize"])
        store = RedisFeatureStore(users["serving"], expected_version=snapshot.version)
        rows = store.read(int(snapshot.user_ids[5]), snapshot.item_ids)
        np.testing.assert_array_equal(rows.items, snapshot.item_matrix)
        store.close()
        assert set().union(*(refused(a) for a in admins)) == set()
    # without the cluster commands the client cannot even learn the slot map
    with (
        _users_on_every_node(admins, nodes[1].url, cluster=False) as users,
        pytest.raises(FeatureStoreUnavailable),
    ):
        RedisFeatureStore(users["serving"]).read(1, snapshot.item_ids[:1])


@contextmanager
def _users_on_every_node(
    admins: list[redis.Redis], url: str, cluster: bool = True
) -> Iterator[Users]:
    """ACL users are per node: the same users (same passwords) on each."""
    with acl_users(admins[0], url, cluster) as users:
        for admin in admins[1:]:
            for role, settings in users.items():
                rules = acl_rules(role, cluster=cluster).split()
                admin.execute_command("ACL", "SETUSER", settings.username, "reset", "on",
                                      f">{settings.password}", *rules)  # fmt: skip
            admin.acl_log_reset()
        try:
            yield {r: s.model_copy(update={"cluster": True}) for r, s in users.items()}
        finally:
            for admin in admins[1:]:
                admin.execute_command("ACL", "DELUSER", *(s.username for s in users.values()))
