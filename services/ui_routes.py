"""The page (GET /ui) and the few read routes only it needs, beside the API.

`GET /ui` and `/ui/static/*` serve the files of `services/ui/` (plain HTML/JS/CSS: no build step,
no CDN) with a strict Content-Security-Policy: scripts and styles from this origin only, nothing
inline, no framing. They hold no data, so they stay open; every data call of the page carries
its API key (`recommend` scope for `/ui/api/*`, see `services.auth`). The read routes:

- ``GET /ui/labels.json``: readable names of the ranker's features (`services.ui_labels`);
- ``GET /ui/api/status``: models in force, placement, feature store, this worker's p50/p99;
- ``GET /ui/api/users/random``: a known user;
- ``GET /ui/api/users/{user_id}/history?limit=50``: the user's ratings, most recent first
  (training ratings and events posted since), with titles, years, genres and dates.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import re
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route

from services import shared
from services.events import MAX_ID
from services.pipeline import STAGE_SECONDS
from services.stage_client import StageUnavailable
from services.ui_labels import FEATURE_LABELS

UI_DIR = Path(__file__).parent / "ui"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; frame-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'none'; object-src 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
}
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css", ".png": "image/png",
                ".svg": "image/svg+xml"}  # fmt: skip
_STATIC_NAME = re.compile(r"^[A-Za-z0-9_-]+\.[a-z]+$")
MAX_HISTORY = 500


def _error(status: int, error: str) -> JSONResponse:
    return JSONResponse({"error": error}, status_code=status, headers=SECURITY_HEADERS)


async def page(request: Request) -> Response:
    """The page itself."""
    index = UI_DIR / "index.html"
    if not index.exists():
        return _error(404, "the page is not in this build (services/ui/index.html)")
    return FileResponse(index, media_type="text/html", headers=SECURITY_HEADERS)


async def static(request: Request) -> Response:
    """One file of services/ui/ (plain names only: no paths, no dot-files)."""
    name = str(request.path_params["name"])
    path = UI_DIR / name
    kind = STATIC_TYPES.get(path.suffix)
    if not _STATIC_NAME.match(name) or kind is None or not path.is_file():
        return _error(404, f"no such file: /ui/static/{name}")
    return FileResponse(path, media_type=kind, headers=SECURITY_HEADERS)


async def labels(request: Request) -> JSONResponse:
    """Readable names of the ranker's features."""
    return JSONResponse(FEATURE_LABELS, headers=SECURITY_HEADERS)


def latency_ms(stage: str = "total") -> dict[str, Any]:
    """p50/p99 of this worker's `recsys_stage_seconds` histogram (interpolated in its buckets)."""
    buckets: list[tuple[float, float]] = []
    for metric in STAGE_SECONDS.collect():
        for sample in metric.samples:
            if sample.name.endswith("_bucket") and sample.labels.get("stage") == stage:
                buckets.append((float(sample.labels["le"]), sample.value))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0.0
    return {"p50": _quantile(buckets, 0.5), "p99": _quantile(buckets, 0.99), "requests": int(total)}


def _quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """Prometheus' histogram_quantile over cumulative (upper bound, count) buckets, in ms."""
    if not buckets or buckets[-1][1] == 0:
        return None
    rank, lower, below = q * buckets[-1][1], 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return round(lower * 1e3, 3)  # past the last finite bucket: its bound
            inside = (rank - below) / (count - below) if count > below else 1.0
            return round((lower + (upper - lower) * inside) * 1e3, 3)
        lower, below = upper, count
    return None


async def status(request: Request) -> JSONResponse:
    """Models in force, placement, feature store and breaker, this worker's p50/p99."""
    from services.auth import gate

    service = bentoml.get_current_service()
    models: dict[str, Any] = {"feature_snapshot": service.snapshot_tag}
    store: dict[str, Any] = {}
    for stage in ("retriever", "ranker"):
        try:
            info = await service.stages.ask(stage, "info")
            models[stage] = info.get("model") or info.get("models") or info.get("model_version")
            if stage == "ranker":
                store = (await service.stages.ask("ranker", "health")).get("feature_store", {})
        except StageUnavailable as exc:  # a stage down: the strip says so, the page lives
            models[stage] = f"unavailable: {exc}"
    body = {
        "models": models,
        "stages": service.stages.placement,
        "feature_store": store,
        "latency_ms": latency_ms(),
        "auth": {"enabled": gate().keyring is not None},
    }
    return JSONResponse(body, headers=SECURITY_HEADERS)


async def random_user(request: Request) -> JSONResponse:
    """A user the models know."""
    users = _snapshot().user_ids
    return JSONResponse({"user_id": int(random.choice(users))}, headers=SECURITY_HEADERS)


async def history(request: Request) -> JSONResponse:
    """The user's ratings, most recent first, with titles, years, genres and dates."""
    raw = str(request.path_params["user_id"])
    limit_raw = request.query_params.get("limit", "50")
    if not re.fullmatch(r"-?\d{1,20}", raw) or not -MAX_ID <= int(raw) <= MAX_ID:
        return _error(400, f"user_id must be an integer within 64 bits, got {raw[:40]!r}")
    if not limit_raw.isdigit() or not 1 <= int(limit_raw) <= MAX_HISTORY:
        return _error(400, f"limit must be an integer within 1..{MAX_HISTORY}")
    user_id, limit = int(raw), int(limit_raw)
    service = bentoml.get_current_service()
    snapshot = _snapshot()
    rated = _rows_of(snapshot, user_id)
    pairs = [(int(r.item_id), _rating(r.rating), int(r.timestamp)) for r in rated]
    store = shared.feature_store(service.settings, snapshot)
    pairs += [(e.item_id, e.rating, e.timestamp) for e in store.user_events(user_id)]
    pairs = sorted(set(pairs), key=lambda p: (p[2], p[0]), reverse=True)[:limit]
    catalog = _catalog(snapshot)
    ratings = []
    for item_id, rating, stamp in pairs:
        title, year, genres = catalog.get(item_id, (f"movie {item_id}", None, []))
        date = dt.datetime.fromtimestamp(stamp, tz=dt.UTC).date().isoformat()
        ratings.append({"item_id": item_id, "title": title, "year": year, "genres": genres,
                        "rating": rating, "timestamp": stamp, "date": date})  # fmt: skip
    known = bool(len(rated)) or bool(pairs)
    body = {"user_id": user_id, "known": known, "ratings": ratings}
    return JSONResponse(body, headers=SECURITY_HEADERS)


def _snapshot() -> Any:
    return shared.snapshot(bentoml.get_current_service().snapshot_tag)


def _rating(value: Any) -> float | None:
    rating = float(value)
    return None if math.isnan(rating) else rating


_INDEX: dict[str, Any] = {}  # per snapshot version: user -> row positions, item -> catalog entry


def _rows_of(snapshot: Any, user_id: int) -> list[Any]:
    key = f"rows:{snapshot.version}"
    if key not in _INDEX:
        users = snapshot.history["user_id"].to_numpy(np.int64)
        order = np.argsort(users, kind="stable")
        bounds = np.searchsorted(users[order], np.unique(users))
        starts = dict(zip(np.unique(users).tolist(), bounds.tolist(), strict=True))
        _INDEX[key] = (order, users[order], starts)
    order, sorted_users, starts = _INDEX[key]
    start = starts.get(user_id)
    if start is None:
        return []
    stop = int(np.searchsorted(sorted_users, user_id, side="right"))
    return list(snapshot.history.iloc[order[start:stop]].itertuples(index=False))


def _catalog(snapshot: Any) -> dict[int, tuple[str, int | None, list[str]]]:
    key = f"catalog:{snapshot.version}"
    if key not in _INDEX:
        frame = snapshot.catalog
        _INDEX[key] = {
            int(row.item_id): (
                str(row.title),
                None if row.year != row.year else int(row.year),  # NaN year: unknown
                [g for g in str(row.genres).split("|") if g and g != "nan"],
            )
            for row in frame.itertuples(index=False)
        }
    catalog: dict[int, tuple[str, int | None, list[str]]] = _INDEX[key]
    return catalog


ui_routes = [
    Route("/ui", page, methods=["GET"]),
    Route("/ui/static/{name}", static, methods=["GET"]),
    Route("/ui/labels.json", labels, methods=["GET"]),
    Route("/ui/api/status", status, methods=["GET"]),
    Route("/ui/api/users/random", random_user, methods=["GET"]),
    Route("/ui/api/users/{user_id}/history", history, methods=["GET"]),
]
