"""API keys, scopes and rate limits on the served API, in both placements (issue 18).

Each placement is served for real (`bentoml serve`) in redis mode against a redis-server that
requires a password, with API keys on: every protected route is called with no key, a key of
another scope, a revoked key and a valid key (401 / 403 / 401 / its own answer), the open routes
with none, and a key's rate limit is spent across two workers. Every answer and the server's log
are then searched for the Redis password and the keys: none may appear.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from feature_store.local_redis import LocalRedis, start_redis
from models.train import TrainReport
from services.auth import hash_key, new_key
from services.tooling.bench_service import ServedProcess, serve

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVICE = "services.recommendation:RecommendationService"
REDIS_PASSWORD = "s3cret-" + new_key()[4:20]
ADMIN_BURST = 8  # RECSYS_AUTH__ADMIN__BURST below


@dataclass
class Keys:
    """The keys of the test, by what they may do."""

    recommend: str = field(default_factory=new_key)
    events: str = field(default_factory=new_key)
    admin: str = field(default_factory=new_key)
    revoked: str = field(default_factory=new_key)  # every scope, removed after start
    limited: str = field(default_factory=new_key)  # admin, for spending its limit

    def file(self, revoked: bool) -> str:
        lines = [
            f"recommend:{hash_key(self.recommend)}",
            f"events:{hash_key(self.events)}",
            f"admin:{hash_key(self.admin)}",
            f"admin:{hash_key(self.limited)}",
        ]
        if not revoked:
            lines += [f"{s}:{hash_key(self.revoked)}" for s in ("recommend", "events", "admin")]
        return "# test keys\n" + "\n".join(lines) + "\n"

    def secrets(self) -> list[str]:
        return [self.recommend, self.events, self.admin, self.revoked, self.limited]


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture(scope="module")
def redis_with_password() -> Iterator[LocalRedis]:
    server = start_redis()
    import redis

    redis.Redis.from_url(server.url).config_set("requirepass", REDIS_PASSWORD)
    yield server
    server.stop()


@dataclass
class Served:
    """The running service, a client that records every answer, and the keys file."""

    process: ServedProcess
    http: httpx.Client
    keys_file: Path
    answers: list[str]

    def call(self, method: str, path: str, key: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {
            **kwargs.pop("headers", {}),
            **({"Authorization": f"Bearer {key}"} if key else {}),
        }
        return self.http.request(method, path, headers=headers, **kwargs)


@pytest.fixture(scope="module", params=["embedded", "remote"])
def served(
    request: pytest.FixtureRequest,
    keys: Keys,
    redis_with_password: LocalRedis,
    trained_models: TrainReport,
    service_env: Mapping[str, str],
    pinned_artifacts_env: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    import redis

    placement = str(request.param)
    # the buckets live in Redis: each placement starts with full ones
    redis.Redis.from_url(redis_with_password.url, password=REDIS_PASSWORD).flushall()
    logs = tmp_path_factory.mktemp(f"auth-{placement}")
    keys_file = logs / "api-keys"
    keys_file.write_text(keys.file(revoked=False))
    env = {
        **service_env,
        **pinned_artifacts_env(trained_models.tags),
        "RECSYS_STAGES": placement,
        "RECSYS_WORKERS": "2" if placement == "embedded" else "1",
        "RECSYS_EVENTS__DIR": str(logs / "events"),
        "RECSYS_DRIFT__LOG_DIR": str(logs / "drift-log"),  # its drift check: its own folders
        "RECSYS_DRIFT__REPORT_DIR": str(logs / "drift-reports"),
        "FEATURE_STORE_MODE": "redis",
        "REDIS_URL": redis_with_password.url,
        "REDIS_PASSWORD": REDIS_PASSWORD,
        "RECSYS_AUTH__ENABLED": "true",
        "RECSYS_AUTH__KEYS_FILE": str(keys_file),
        "RECSYS_AUTH__RELOAD_EVERY_S": "0.2",
        "RECSYS_AUTH__ADMIN__PER_SECOND": "0.01",
        "RECSYS_AUTH__ADMIN__BURST": str(ADMIN_BURST),
    }
    answers: list[str] = []

    def record(response: httpx.Response) -> None:
        response.read()
        answers.append(f"{response.headers}\n{response.text}")

    with (
        serve(SERVICE, extra_env=env, log_dir=logs) as process,
        httpx.Client(base_url=process.url, timeout=30, event_hooks={"response": [record]}) as http,
    ):
        out = Served(process, http, keys_file, answers)
        # the revoked key works until its lines leave the file, then stops without a restart
        assert out.call("POST", "/recommend", keys.revoked, json={"user_id": 1}).status_code == 200
        keys_file.write_text(keys.file(revoked=True))
        time.sleep(0.6)  # past RELOAD_EVERY_S
        yield out


@pytest.fixture(scope="module")
def rated(history: pd.DataFrame) -> tuple[int, int]:
    row = history.iloc[0]
    return int(row["user_id"]), int(row["item_id"])


def _routes(rated: tuple[int, int]) -> list[tuple[str, str, dict[str, Any] | None, str]]:
    user, item = rated
    events = {"events": [{"user_id": user, "item_id": item, "rating": 4}]}
    return [
        ("POST", "/recommend", {"user_id": user, "k": 3}, "recommend"),
        ("POST", "/events", events, "events"),
        ("GET", "/info", None, "admin"),
        ("GET", "/drift/status", None, "admin"),
        ("GET", "/drift/report", None, "admin"),
        ("POST", "/drift/check", None, "admin"),
        ("GET", "/drift/reports", None, "admin"),
        ("GET", "/ui/api/users/random", None, "recommend"),
        ("GET", f"/ui/api/users/{user}/history", None, "recommend"),
        ("GET", "/ui/api/status", None, "recommend"),
    ]


def test_every_protected_route_no_key_wrong_scope_revoked_valid(
    served: Served, keys: Keys, rated: tuple[int, int]
) -> None:
    for method, path, body, scope in _routes(rated):
        kwargs = {"json": body} if body is not None else {}
        wrong = keys.events if scope != "events" else keys.recommend
        none = served.call(method, path, **kwargs)
        assert none.status_code == 401, (path, none.text)
        assert none.headers["www-authenticate"].startswith("Bearer")
        assert none.json()["error"] == "missing API key"
        forbidden = served.call(method, path, wrong, **kwargs)
        assert forbidden.status_code == 403, (path, forbidden.text)
        assert scope in forbidden.json()["error"]
        assert served.call(method, path, keys.revoked, **kwargs).status_code == 401, path
        valid = served.call(method, path, getattr(keys, scope), **kwargs)
        assert valid.status_code not in (401, 403, 429), (path, valid.text)
        assert valid.status_code < 500, (path, valid.text)
        if path in ("/recommend", "/events", "/info", "/drift/status") or path.startswith("/ui/"):
            assert valid.status_code == 200, (path, valid.text)
    x_api_key = served.http.post(
        "/recommend", json={"user_id": rated[0]}, headers={"X-API-Key": keys.recommend}
    )
    assert x_api_key.status_code == 200


def test_probes_metrics_and_the_document_stay_open(served: Served) -> None:
    for path in ("/health", "/ready", "/livez", "/readyz", "/metrics", "/docs.json"):
        assert served.http.get(path).status_code == 200, path
    # the page and its files hold no data: open (their data calls carry the key)
    for path in ("/ui", "/ui/labels.json", "/ui/static/app.js"):
        assert served.http.get(path).status_code not in (401, 403), path
    spec = served.http.get("/docs.json").json()
    assert set(spec["components"]["securitySchemes"]) == {"bearer", "apiKey"}
    recommend = spec["paths"]["/recommend"]["post"]
    assert recommend["x-required-scope"] == "recommend"
    assert {"401", "403", "429"} <= set(recommend["responses"])
    assert "security" not in spec["paths"]["/health"]["get"]


def test_info_says_auth_is_on_without_keys_or_hashes(served: Served, keys: Keys) -> None:
    info = served.call("GET", "/info", keys.admin).json()
    assert info["auth"]["enabled"] is True
    assert info["auth"]["per_scope"] == {"recommend": 1, "events": 1, "admin": 2}
    assert info["auth"]["rate_limits"]["backend"] == "redis"
    text = json.dumps(info)
    for key in keys.secrets():
        assert hash_key(key) not in text


def test_a_key_over_its_limit_gets_429_across_workers(served: Served, keys: Keys) -> None:
    statuses = [
        served.call("GET", "/drift/status", keys.limited, headers={"Connection": "close"})
        for _ in range(2 * ADMIN_BURST)
    ]
    codes = [r.status_code for r in statuses]
    # One bucket in Redis for both workers: exactly the burst passes (per-worker buckets: 2x).
    assert codes.count(200) == ADMIN_BURST, codes
    limited = next(r for r in statuses if r.status_code == 429)
    assert int(limited.headers["retry-after"]) >= 1
    assert "rate limit" in limited.json()["error"]
    assert served.call("GET", "/drift/status", keys.admin).status_code == 200  # others unaffected


def test_no_secret_in_any_answer_or_the_log(served: Served, keys: Keys) -> None:
    served.call("GET", "/info", keys.admin)
    served.http.get("/metrics")
    assert len(served.answers) > 30
    everything = "\n".join(served.answers)
    log = served.process.log_path.read_text(errors="replace")
    assert "API keys on" in log  # said at start
    assert "rejected POST /recommend: missing API key" in log  # one line per kind of rejection
    for secret in (REDIS_PASSWORD, *keys.secrets()):
        assert secret not in everything
        assert secret not in log


def test_a_bento_built_beside_secrets_holds_none(
    keys: Keys,
    trained_models: TrainReport,
    pinned_artifacts_env: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import bentoml

    from services.settings import Settings
    from services.tooling.build import build_bentos

    keys_file = tmp_path / "api-keys"
    keys_file.write_text(keys.file(revoked=False))
    for name, value in {
        **pinned_artifacts_env(trained_models.tags),
        "REDIS_PASSWORD": REDIS_PASSWORD,
        "RECSYS_AUTH__ENABLED": "true",
        "RECSYS_AUTH__KEYS_FILE": str(keys_file),
        "RECSYS_TEST_ADMIN_KEY": keys.admin,  # as a deploy script might have it
    }.items():
        monkeypatch.setenv(name, value)
    (tag,) = build_bentos(Settings(), only=("recommendation",))
    root = Path(bentoml.get(tag).path)
    files = [p for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "bento.yaml" for p in files)
    secrets = [REDIS_PASSWORD, *keys.secrets(), *(hash_key(k) for k in keys.secrets())]
    for path in files:
        data = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in data, path
