"""The whole API in one OpenAPI document: BentoML's, completed (GET /docs.json).

BentoML documents the service's own APIs (POST /recommend, /events) and its probes, but not the
operational routes of the mounted Starlette app (/health, /ready, /info, /drift/*), and it
declares every error body with a string `detail` while a 400's `detail` is pydantic's list of
errors. `complete_spec` adds the operational routes with their bodies, declares the one error
model every error answer uses (`ErrorBody`: `{"error": str, "detail": any}`) for each status the
API can give (400, 404, 405, 408, 413, 415, 500, 503), and `OpenAPIDocument` serves the result.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, Field
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

REF = "#/components/schemas/{model}"


class ErrorBody(BaseModel):
    """Every error answer of the API."""

    error: str = Field(description="What went wrong, for a person.")
    detail: Any = Field(None, description="Machine-readable detail (validation errors: a list).")


class HealthBody(BaseModel):
    """GET /health."""

    status: str = Field(description="ok, or degraded while Redis or a remote stage is bypassed.")
    stages: str = Field(description="embedded or remote.")
    feature_store: dict[str, Any]
    events: dict[str, Any]
    stage_circuits: dict[str, str] | None = Field(None, description="Remote stages only.")


class ReadyBody(BaseModel):
    """GET /ready."""

    ready: bool


_ERRORS = {
    400: "Invalid input (validation errors in `detail`)",
    404: "No such route, or no drift report yet",
    405: "Method not allowed on this route",
    408: "Request body not received in time",
    401: "No API key, or an unknown or revoked one",
    403: "The API key lacks this route's scope",
    409: "Nothing to check yet",
    413: "Request body over 64 KB",
    415: "Body is neither JSON nor plain text, or is compressed",
    429: "The key's rate limit is spent: retry after `Retry-After` seconds",
    500: "Unexpected server error",
    503: "A stage or the service is unavailable",
}
_OBJECT = {"type": "object"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(status: int) -> dict[str, Any]:
    return _json({"$ref": REF.format(model="ErrorBody")}, _ERRORS[status])


def _ops_paths() -> dict[str, Any]:
    def op(summary: str, ok: dict[str, Any], *errors: int, **more: Any) -> dict[str, Any]:
        responses = {"200": ok, **{str(s): _error(s) for s in (*errors, 405, 500)}}
        return {"tags": ["Infrastructure"], "summary": summary, "responses": responses, **more}

    def body(model: str, text: str) -> dict[str, Any]:
        return _json({"$ref": REF.format(model=model)}, text)

    report_format = {
        "name": "format",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": ["json", "html"], "default": "json"},
    }
    check = op(
        "Run the Evidently drift job now", _json(_OBJECT, "Its summary"), 408, 409, 413, 415, 503
    )
    check["responses"]["202"] = _json(_OBJECT, "Still running: GET /drift/report later")
    report_ok = _json(_OBJECT, "The latest report's summary")
    report_ok["content"]["text/html"] = {"schema": {"type": "string"}}
    return {
        "/health": {"get": op("Liveness and degradation", body("HealthBody", "State"), 503)},
        "/ready": {
            "get": op("Models and features loaded", body("ReadyBody", "Ready"), 503),
        },
        "/info": {"get": op("Models, versions, configuration", _json(_OBJECT, "Info"), 503)},
        "/drift/status": {
            "get": op("In-process drift monitor", _json(_OBJECT, "Per-feature PSI/KL"), 503)
        },
        "/drift/check": {"post": check},
        "/drift/report": {
            "get": op(
                "The latest drift report", report_ok, 400, 404, 503, parameters=[report_format]
            )
        },
        "/ui": {
            "get": op(
                "The page: a user's history, recommendations with reasons, drift",
                {"description": "HTML", "content": {"text/html": {"schema": {"type": "string"}}}},
                404,
            )
        },
        "/ui/static/{name}": {
            "get": op(
                "A file of the page (app.js, style.css)",
                {
                    "description": "The file",
                    "content": {
                        kind: {"schema": {"type": "string"}}
                        for kind in ("text/javascript", "text/css", "image/png", "image/svg+xml")
                    },
                },
                404,
                parameters=[
                    {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
                ],
            )
        },
        "/ui/labels.json": {
            "get": op("Readable names of the ranker's features", _json(_OBJECT, "name -> label"))
        },
        "/ui/api/status": {
            "get": op("Models, placement, feature store, p50/p99", _json(_OBJECT, "Status"), 503)
        },
        "/ui/api/users/random": {"get": op("A known user", _json(_OBJECT, "{user_id}"), 503)},
        "/ui/api/users/{user_id}/history": {
            "get": op(
                "A user's ratings, most recent first",
                _json(_OBJECT, "{user_id, known, ratings}"),
                400,
                503,
                parameters=[
                    {
                        "name": "user_id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer", "format": "int64"},
                    },
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50},
                    },
                ],
            )
        },
        "/drift/reports": {
            "get": op("Kept drift reports, newest first", _json(_OBJECT, "Headlines"), 503)
        },
    }


SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "Authorization: Bearer <key>"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
}


def _secure(paths: dict[str, Any]) -> None:
    """Declare the API-key schemes, the scope and 401/403/429 on every protected operation."""
    from services.auth import PREFIX_SCOPES, ROUTE_SCOPES

    routes = dict(ROUTE_SCOPES)
    for method, prefix, scope in PREFIX_SCOPES:
        routes.update({(method, path): scope for path in paths if path.startswith(prefix)})
    for (method, path), scope in routes.items():
        operation = paths.get(path, {}).get(method.lower())
        if operation is None:
            continue
        operation["security"] = [{"bearer": []}, {"apiKey": []}]
        operation["x-required-scope"] = scope
        note = f"Needs an API key with the `{scope}` scope."
        operation["description"] = f"{operation.get('description', '')}\n\n{note}".strip()
        operation["responses"].update({str(s): _error(s) for s in (401, 403, 429)})


def complete_spec(spec: dict[str, Any], auth: bool = False) -> dict[str, Any]:
    """`spec` (BentoML's document as a dict) with the operational routes and the error model.

    With `auth` (API keys on), the protected operations also declare the key schemes, their
    scope and the 401/403/429 answers.
    """
    out = copy.deepcopy(spec)
    schemas = out.setdefault("components", {}).setdefault("schemas", {})
    for model in (ErrorBody, HealthBody, ReadyBody):
        schemas[model.__name__] = model.model_json_schema(ref_template=REF)
    for name in ("InvalidArgument", "NotFound", "InternalServerError"):
        schemas.pop(name, None)  # BentoML's error bodies, with a string `detail`
    for path in ("/recommend", "/events"):
        operation = out["paths"][path]["post"]
        ok = {str(k): v for k, v in operation["responses"].items()}["200"]
        errors = (400, 404, 405, 408, 413, 415, 500, 503)
        responses = {"200": ok, **{str(s): _error(s) for s in errors}}
        operation["responses"] = responses
    out["paths"].update(_ops_paths())
    if auth:
        out["components"]["securitySchemes"] = SECURITY_SCHEMES
        _secure(out["paths"])
    return out


class OpenAPIDocument:
    """Answers GET /docs.json with `complete_spec` of the service's document (made once)."""

    def __init__(self, app: ASGIApp, service: Any) -> None:
        self.app = app
        self.service = service
        self._spec: dict[str, Any] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        asked = scope["type"] == "http" and scope.get("method") in ("GET", "HEAD")
        if asked and scope.get("path") == "/docs.json":
            if self._spec is None:
                from services.settings import get_settings

                auth = get_settings().auth.enabled
                self._spec = complete_spec(self.service.openapi_spec.asdict(), auth=auth)
            await JSONResponse(self._spec)(scope, receive, send)
            return
        await self.app(scope, receive, send)
