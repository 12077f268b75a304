"""Operational routes of the RecommendationService and the request-size guard.

Mounted beside the BentoML API (which serves POST /recommend, /livez, /readyz and /metrics):
GET /health, GET /ready, GET /info, GET /drift/status, POST /drift/check, GET /drift/report.
The feature store and the drift monitor live in the ranker (where features are read and
assembled), so /health and the drift routes ask it.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import bentoml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.stage_client import StageUnavailable
from services.ui_routes import ui_routes

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024


class BodySizeLimit:
    """Reads a request body whole before the app sees it: 413 past `max_bytes`, 408 when slow.

    The limit holds for a Content-Length and for a chunked body alike (a chunked body over the
    limit used to end in a 500: BentoML answers an exception raised from `receive` itself). A
    client that stops sending before its body is complete gets 408 after `read_timeout_s`
    instead of holding a request slot until the service's own timeout answers 504.
    """

    def __init__(
        self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES, read_timeout_s: float = 5.0
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.read_timeout_s = read_timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        too_large = f"request body larger than {self.max_bytes} bytes"
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await reject(scope, receive, send, 413, too_large)
            return
        chunks: list[bytes] = []
        seen = 0
        try:
            async with asyncio.timeout(self.read_timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return  # the client left: nobody to answer
                    chunk = message.get("body", b"")
                    seen += len(chunk)
                    if seen > self.max_bytes:
                        await reject(scope, receive, send, 413, too_large)
                        return
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            error = f"request body not received within {self.read_timeout_s:g} s"
            await reject(scope, receive, send, 408, error)
            return
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: wait for a disconnect
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def reject(scope: Scope, receive: Receive, send: Send, status: int, error: str) -> None:
    """Answer `status` with the error model, and log it as one line (no traceback)."""
    logger.warning("rejected %s %s: %d %s", scope.get("method"), scope.get("path"), status, error)
    await JSONResponse({"error": error}, status_code=status)(scope, receive, send)


class PlainErrorsAsJson:
    """Rewrites the routers' plain-text 404 and 405 into the error model, `{"error": ...}`.

    Starlette (BentoML's app and the ops app) answers an unknown path or method with a
    plain-text body; every other error of the API is JSON with an ``error`` field. The
    ``Allow`` header of a 405 is kept.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        replaced = False

        async def rewriting_send(message: Message) -> None:
            nonlocal held, replaced
            if replaced:  # the rest of the plain-text body: already answered
                return
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                plain = headers.get(b"content-type", b"").startswith(b"text/plain")
                if message["status"] in (404, 405) and plain:
                    held = message  # wait for the body, answer JSON instead
                    return
            elif held is not None and message["type"] == "http.response.body":
                status = held["status"]
                what = "no such route" if status == 404 else "method not allowed"
                body = {"error": f"{what}: {scope.get('method')} {scope.get('path')}"}
                allow = dict(held.get("headers") or []).get(b"allow")
                headers = {"allow": allow.decode("latin-1")} if allow else None
                await JSONResponse(body, status_code=status, headers=headers)(scope, receive, send)
                replaced = True
                return
            await send(message)

        await self.app(scope, receive, rewriting_send)


JSON_TYPES = ("application/json", "text/plain")  # and application/<anything>+json


class JsonBodiesOnly:
    """Answers 415 to a POST whose Content-Type is neither JSON nor plain text, or is encoded.

    Every POST route takes a JSON body (or none). Without this, BentoML parses a multipart or
    form body itself: a multipart type without a boundary was a 500, a form a confusing 400.
    No Content-Type at all is read as JSON, as before. A Content-Encoding other than
    ``identity`` (gzip, br, ...) is 415 too (RFC 7694): the body was read as if plain, so a
    gzip header on plain JSON was answered and real gzip was a confusing 400.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("method") == "POST":
            raw = dict(scope.get("headers") or []).get(b"content-type")
            media = raw.decode("latin-1").split(";", 1)[0].strip().lower() if raw else ""
            if media and media not in JSON_TYPES and not media.endswith("+json"):
                error = f"unsupported media type {media!r}: send application/json"
                await reject(scope, receive, send, 415, error)
                return
            coding = dict(scope.get("headers") or []).get(b"content-encoding", b"")
            coding_name = coding.decode("latin-1").strip().lower()
            if coding_name not in ("", "identity"):
                error = f"unsupported content encoding {coding_name!r}: send the JSON uncompressed"
                await reject(scope, receive, send, 415, error)
                return
        await self.app(scope, receive, send)


_PYDANTIC_LINK = re.compile(r"\s*For further information visit \S+")


class RejectedRequestLog(logging.Filter):
    """One line, no traceback, for a request BentoML rejects as the client's error.

    BentoML logs every 400 (an invalid body) as ``Exception on /recommend [POST]`` at ERROR with
    the full traceback: under bad traffic the log is noise, and real errors drown in it. This
    filter, on BentoML's HTTP-app logger, turns those records into one WARNING line saying what
    was wrong; errors of the service itself (5xx) keep their traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None or not _client_error(exc):
            return True
        path, method = record.args if isinstance(record.args, tuple) else ("?", "?")
        reason = _PYDANTIC_LINK.sub("", " ".join(str(exc).split()))[:300]
        record.msg, record.args = "rejected %s %s: %s", (method, path, reason)
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        record.exc_info = record.exc_text = None
        return True


def _client_error(exc: BaseException) -> bool:
    from bentoml.exceptions import BentoMLException
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return True
    return isinstance(exc, BentoMLException) and int(exc.error_code) < 500


def quiet_rejections() -> None:
    """Install `RejectedRequestLog` on BentoML's HTTP-app logger (once per process)."""
    logger = logging.getLogger("bentoml._internal.server.http_app")
    if not any(isinstance(f, RejectedRequestLog) for f in logger.filters):
        logger.addFilter(RejectedRequestLog())


def _service() -> Any:
    return bentoml.get_current_service()


async def _ask_ranker(method: str, **kwargs: Any) -> dict[str, Any]:
    """Call an operational API of the ranker stage."""
    result: dict[str, Any] = await _service().stages.ask("ranker", method, **kwargs)
    return result


async def health(request: Request) -> JSONResponse:
    """Liveness plus stage and feature-store state; `degraded` while Redis or a remote stage is
    bypassed (the answers then do without it)."""
    service = _service()
    circuits = service.stages.circuits()
    try:
        if circuits.get("ranker", "closed") != "closed":  # do not wait on a stage known down
            raise StageUnavailable("the ranker's circuit is open")
        store = await _ask_ranker("health")
    except StageUnavailable as exc:
        store = {"feature_store": {"error": str(exc)}}
    feature_store = store.get("feature_store", {})
    degraded = "error" in feature_store or (
        feature_store.get("mode") == "redis" and feature_store.get("circuit") != "closed"
    )
    events = service.ingest.status()
    degraded = degraded or bool(events.get("pending_redis"))
    degraded = degraded or any(state != "closed" for state in circuits.values())
    body = {
        "status": "degraded" if degraded else "ok",
        "stages": service.stages.placement,
        "feature_store": feature_store,
        "events": events,
    }
    if circuits:
        body["stage_circuits"] = circuits
    return JSONResponse(body)


async def ready(request: Request) -> JSONResponse:
    """200 once models and features are loaded, else 503."""
    is_ready = bool(getattr(_service(), "ready", False))
    return JSONResponse({"ready": is_ready}, status_code=200 if is_ready else 503)


async def info(request: Request) -> JSONResponse:
    """Model tags and versions, feature version, dataset fingerprint, config in force."""
    service = _service()
    body = service.info()
    body["retriever"] = await service.stages.ask("retriever", "info")
    body["ranker"] = await service.stages.ask("ranker", "info")
    return JSONResponse(body)


async def drift_status(request: Request) -> JSONResponse:
    """Per-feature PSI/KL and overall status of the in-process monitor."""
    return JSONResponse(await _ask_ranker("drift_status"))


async def drift_check(request: Request) -> JSONResponse:
    """Run the Evidently comparison on the logged window now.

    200 with the summary when it ends within about half the request timeout, else 202
    (`{"status": "running"}`) and GET /drift/report has the summary once it is done.
    """
    summary = await _ask_ranker("drift_check")
    if "error" in summary:
        return JSONResponse(summary, status_code=409)
    return JSONResponse(summary, status_code=202 if summary.get("status") == "running" else 200)


async def drift_report(request: Request) -> Response:
    """The latest drift report: JSON summary, or the Evidently HTML with ?format=html."""
    fmt = request.query_params.get("format", "json")
    if fmt not in ("json", "html"):
        return JSONResponse({"error": "format must be json or html"}, status_code=400)
    report = await _ask_ranker("drift_report", format=fmt)
    if "error" in report:
        return JSONResponse(report, status_code=404)
    if fmt == "html":
        return HTMLResponse(report["html"])
    return JSONResponse(report)


async def drift_reports(request: Request) -> JSONResponse:
    """The kept drift reports, newest first (time, status, drifted features, evidence)."""
    return JSONResponse(await _ask_ranker("drift_reports"))


async def _stage_down(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": f"a stage is unavailable: {exc}"}, status_code=503)


ops_app = Starlette(
    exception_handlers={StageUnavailable: _stage_down},
    routes=[
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/info", info, methods=["GET"]),
        Route("/drift/status", drift_status, methods=["GET"]),
        Route("/drift/check", drift_check, methods=["POST"]),
        Route("/drift/report", drift_report, methods=["GET"]),
        Route("/drift/reports", drift_reports, methods=["GET"]),
        *ui_routes,
    ],
)
