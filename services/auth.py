"""API keys with scopes: who may call what.

A key is ``rsk_`` + 43 url-safe characters (32 random bytes). The service never holds a key,
only its SHA-256: the keys file (`AuthSettings.keys_file`, on Kubernetes a mounted Secret) has
one ``scope:sha256-hex`` line per key and scope (``#`` comments and blank lines allowed), so a key
with two scopes has two lines and rotation is "add the new key's lines, move clients, delete the
old key's lines". The file is re-read when it changes (checked at most every
``reload_every_s``); a file that no longer parses keeps the keys in force and logs why.

`ApiKeyAuth` is the ASGI middleware in front of the RecommendationService's routes:
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; no key or an unknown (revoked) key is
401, a key without the route's scope 403, a key over its rate (`services.rate_limit`) 429 with
``Retry-After``. Health, readiness, /metrics and the API document stay open: the chart's
NetworkPolicy decides who reaches them. A key is hashed once per request (SHA-256 of ~50 bytes,
about a microsecond) and looked up in a dict; keys are high-entropy random tokens, so a fast
hash is enough (a password hash such as bcrypt would cost milliseconds per request).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, model_validator
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from data.errors import RecsysError

if TYPE_CHECKING:
    from services.settings import Settings

logger = logging.getLogger(__name__)

ApiScope = Literal["recommend", "events", "admin"]
SCOPES: tuple[ApiScope, ...] = ("recommend", "events", "admin")
KEY_PREFIX = "rsk_"
# Which scope each protected route needs; every other route is open (probes, metrics, docs).
ROUTE_SCOPES: dict[tuple[str, str], ApiScope] = {
    ("POST", "/recommend"): "recommend",  # the page (/ui, its files) holds no data: open
    ("POST", "/events"): "events",
    ("GET", "/info"): "admin",
    ("GET", "/drift/status"): "admin",
    ("POST", "/drift/check"): "admin",
    ("GET", "/drift/report"): "admin",
    ("GET", "/drift/reports"): "admin",
}
# Path prefixes with one scope (routes with ids in the path): the page's read routes.
PREFIX_SCOPES: tuple[tuple[str, str, ApiScope], ...] = (("GET", "/ui/api/", "recommend"),)
# Routes that also spend from a bucket of their own (the drift job is seconds of CPU).
ROUTE_BUCKETS: dict[tuple[str, str], str] = {("POST", "/drift/check"): "drift_check"}
_LINE = re.compile(r"^(?P<scope>[a-z_]+):(?P<digest>[0-9a-f]{64})$")


class AuthConfigError(RecsysError):
    """The API keys cannot be loaded as configured (what to fix is in the message)."""


REJECTED = Counter(
    "recsys_auth_rejections", "Requests refused by API-key checks, by reason", ["reason"]
)


class RateLimit(BaseModel):
    """One token bucket: `per_second` tokens refill continuously, up to `burst`."""

    model_config = ConfigDict(frozen=True)

    per_second: float = Field(gt=0)
    """Sustained requests per second per key."""
    burst: int = Field(ge=1)
    """Requests a key may send at once after being idle."""


class AuthSettings(BaseModel):
    """API keys and rate limits (RECSYS_AUTH__*)."""

    model_config = ConfigDict(frozen=True)

    enabled: bool = False
    """Check API keys. Off for a local `make serve` (said at start and in /info); the chart
    turns it on."""
    keys_file: Path | None = None
    """File of `scope:sha256-hex` lines (`recsys keys new` prints one); needed when enabled."""
    reload_every_s: float = Field(1.0, gt=0)
    """How often the keys file is checked for changes (rotation without a restart)."""
    recommend: RateLimit = RateLimit(per_second=500, burst=1000)
    """Per key: POST /recommend and GET /ui."""
    events: RateLimit = RateLimit(per_second=100, burst=200)
    """Per key: POST /events."""
    admin: RateLimit = RateLimit(per_second=5, burst=20)
    """Per key: /info and the drift routes."""
    drift_check: RateLimit = RateLimit(per_second=1 / 60, burst=2)
    """Per key, on top of `admin`: POST /drift/check starts a drift job (single-flight anyway)."""

    @model_validator(mode="after")
    def _check(self) -> AuthSettings:
        if self.enabled and self.keys_file is None:
            raise ValueError(
                "RECSYS_AUTH__ENABLED=true needs RECSYS_AUTH__KEYS_FILE (a file of scope:hash "
                "lines; `recsys keys new --scope recommend` prints one)"
            )
        return self

    def limit(self, bucket: str) -> RateLimit:
        """The rate limit of a bucket (a scope or ``drift_check``)."""
        value = getattr(self, bucket)
        if not isinstance(value, RateLimit):
            raise KeyError(bucket)
        return value


def hash_key(key: str) -> str:
    """Lowercase hex SHA-256 of a key: what the keys file holds."""
    return hashlib.sha256(key.encode()).hexdigest()


def key_id(digest: str) -> str:
    """A short, safe name for a key in logs and limits (the first 12 hex of its hash)."""
    return digest[:12]


def new_key() -> str:
    """A fresh random key: ``rsk_`` + 32 random bytes, url-safe base64 without padding."""
    return KEY_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def key_lines(key: str, scopes: list[ApiScope]) -> list[str]:
    """The keys-file lines that grant `scopes` to `key`."""
    digest = hash_key(key)
    return [f"{scope}:{digest}" for scope in scopes]


def parse_keys(text: str, source: str = "keys file") -> dict[str, frozenset[ApiScope]]:
    """Parse `scope:hash` lines into hash -> scopes.

    Raises:
        AuthConfigError: a line that is not ``scope:64-hex`` or names an unknown scope.
    """
    granted: dict[str, set[ApiScope]] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None or match["scope"] not in SCOPES:
            shown = line if len(line) < 20 else line[:16] + "..."
            raise AuthConfigError(
                f"{source} line {number}: expected `scope:sha256-hex` with scope one of "
                f"{', '.join(SCOPES)}, got {shown!r} (`recsys keys new` prints valid lines)"
            )
        scope: ApiScope = match["scope"]  # type: ignore[assignment]  # checked just above
        granted.setdefault(match["digest"], set()).add(scope)
    return {digest: frozenset(scopes) for digest, scopes in granted.items()}


class KeyRing:
    """The keys in force, from the keys file, re-read when the file changes."""

    def __init__(self, path: Path, reload_every_s: float = 1.0) -> None:
        """Read the keys file.

        Raises:
            AuthConfigError: the file is missing or does not parse.
        """
        self.path = Path(path)
        self.reload_every_s = reload_every_s
        self._stamp = self._file_stamp()
        if self._stamp is None:
            raise AuthConfigError(
                f"API keys file {self.path} does not exist: create it with `recsys keys new`, "
                "or set RECSYS_AUTH__ENABLED=false for a local, open service"
            )
        self._keys = parse_keys(self.path.read_text(), str(self.path))
        self._checked_at = time.monotonic()
        if not self._keys:
            logger.warning("API keys file %s holds no key: every protected call is 401", path)

    def _file_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)  # follows the symlinks a mounted Secret swaps on update
        except OSError:
            return None
        return st.st_mtime_ns, st.st_ino, st.st_size

    def _maybe_reload(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < self.reload_every_s:
            return
        self._checked_at = now
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return
        if stamp is None:
            logger.error("API keys file %s vanished: keeping the %d keys in force", self.path,
                         len(self._keys))  # fmt: skip
            return
        try:
            keys = parse_keys(self.path.read_text(), str(self.path))
        except (OSError, AuthConfigError) as exc:
            logger.error("API keys file not reloaded, keeping the keys in force: %s", exc)
            return
        self._stamp, self._keys = stamp, keys
        logger.info("API keys reloaded from %s: %d keys", self.path, len(keys))

    def scopes(self, digest: str) -> frozenset[ApiScope] | None:
        """The scopes of the key with this hash, or None for an unknown (or revoked) key."""
        self._maybe_reload()
        return self._keys.get(digest)

    def summary(self) -> dict[str, Any]:
        """Counts per scope (no hashes): what /info shows."""
        self._maybe_reload()
        per_scope = {s: sum(s in scopes for scopes in self._keys.values()) for s in SCOPES}
        return {"keys": len(self._keys), "per_scope": per_scope, "file": str(self.path)}


@dataclass
class _RejectionLog:
    """One log line per reason and interval, with a count: a flood of bad keys is not log spam."""

    every_s: float = 10.0
    _counts: dict[str, int] | None = None
    _since: float = 0.0

    def note(self, reason: str, method: str, path: str) -> None:
        now = time.monotonic()
        counts = self._counts if self._counts is not None else {}
        first = reason not in counts
        counts[reason] = counts.get(reason, 0) + 1
        self._counts = counts
        if first:
            logger.warning("rejected %s %s: %s", method, path, reason)
            self._since = self._since or now
        elif now - self._since >= self.every_s:
            summary = ", ".join(f"{n} {why}" for why, n in counts.items())
            logger.warning("rejected in the last %.0f s: %s", now - self._since, summary)
            self._counts, self._since = {}, now


def _prefix_scope(method: str, path: str) -> ApiScope | None:
    """The scope of a route known by its path prefix (`PREFIX_SCOPES`), if any."""
    for want, prefix, scope in PREFIX_SCOPES:
        if method == want and path.startswith(prefix):
            return scope
    return None


def presented_key(scope: Scope) -> str | None:
    """The key a request carries: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    for name, value in scope.get("headers") or ():
        if name == b"authorization":
            kind, _, token = value.decode("latin-1").partition(" ")
            if kind.lower() == "bearer" and token.strip():
                return token.strip()
        elif name == b"x-api-key" and value.strip():
            return value.decode("latin-1").strip()
    return None


class AuthGate:
    """This process's keys and buckets: built once, shared by every app the process serves."""

    def __init__(self, settings: Settings) -> None:
        """Load the keys (when enabled) and say when the service runs open.

        Args:
            settings: the service's settings; `auth` holds the keys file and the limits,
                `feature_store_mode`/`redis` where the buckets live.

        Raises:
            AuthConfigError: enabled without a readable, valid keys file.
        """
        from services.rate_limit import RateLimiter

        auth = settings.auth
        self.keyring: KeyRing | None = None
        if auth.enabled and auth.keys_file is not None:
            self.keyring = KeyRing(auth.keys_file, auth.reload_every_s)
        self.limiter = RateLimiter.for_service(settings)
        self.rejections = _RejectionLog()
        if self.keyring is None:
            logger.warning(
                "API keys are OFF (RECSYS_AUTH__ENABLED=false): every route is open to anyone "
                "who reaches this port. The Helm chart turns them on."
            )
        else:
            logger.warning("API keys on: %s", self.status())  # at WARNING: BentoML shows it

    def status(self) -> dict[str, Any]:
        """What /info shows about auth (never a key or a hash)."""
        if self.keyring is None:
            return {"enabled": False, "warning": "every route is open (RECSYS_AUTH__ENABLED)"}
        return {"enabled": True, **self.keyring.summary(), "rate_limits": self.limiter.status()}


_GATE: AuthGate | None = None


def gate() -> AuthGate:
    """The process's `AuthGate`, built from `get_settings()` on first use (the service's start)."""
    global _GATE
    if _GATE is None:
        from services.settings import get_settings

        _GATE = AuthGate(get_settings())
    return _GATE


class ApiKeyAuth:
    """ASGI middleware: 401 / 403 / 429 before a protected route runs (see module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        current = gate()
        keyring = current.keyring
        if scope["type"] != "http" or keyring is None:
            await self.app(scope, receive, send)
            return
        route = (scope.get("method", ""), scope.get("path", ""))
        needed = ROUTE_SCOPES.get(route) or _prefix_scope(*route)
        if needed is None:
            await self.app(scope, receive, send)
            return
        key = presented_key(scope)
        if key is None:
            await self._refuse(scope, receive, send, 401, "missing API key", "send "
                               "`Authorization: Bearer <key>` or `X-API-Key: <key>`")  # fmt: skip
            return
        digest = hash_key(key)
        granted = keyring.scopes(digest)
        if granted is None:
            await self._refuse(scope, receive, send, 401, "unknown or revoked API key", None)
            return
        if needed not in granted:
            why = f"this key lacks the {needed!r} scope"
            await self._refuse(scope, receive, send, 403, why, f"it has {sorted(granted)}")
            return
        owner = key_id(digest)
        for bucket in (needed, ROUTE_BUCKETS.get(route)):
            if bucket is None:
                continue
            wait_s = await current.limiter.take(owner, bucket)
            if wait_s > 0:
                retry = str(max(1, math.ceil(wait_s)))
                await self._refuse(scope, receive, send, 429, f"rate limit of {bucket!r} "
                                   f"exceeded for key {owner}", f"retry after {retry} s",
                                   {"retry-after": retry})  # fmt: skip
                return
        scope.setdefault("state", {})["api_key_id"] = owner
        await self.app(scope, receive, send)

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        status: int,
        error: str,
        detail: str | None,
        headers: dict[str, str] | None = None,
    ) -> None:
        REJECTED.labels({401: "unauthenticated", 403: "forbidden"}.get(status, "rate")).inc()
        gate().rejections.note(error, scope.get("method", ""), scope.get("path", ""))
        if status == 401:
            headers = {"www-authenticate": 'Bearer realm="recsys"'}
        body = {"error": error, "detail": detail}
        await JSONResponse(body, status_code=status, headers=headers)(scope, receive, send)
