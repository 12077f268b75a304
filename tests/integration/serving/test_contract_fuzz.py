"""Property-based requests generated from the served OpenAPI document (schemathesis, hypothesis).

Against `bentoml serve` (embedded stages), every operation the document lists gets generated
requests, valid and invalid. Each answer must not be a 5xx, and must match what the document
declares for it: status, content type and body schema. FUZZ_EXAMPLES (default 40 per operation
in `make test`) sets how many examples each operation gets.

Hand-written hostile requests cover what a document-driven generator does not send: other body
encodings, compression, deep nesting, huge numbers, chunked and short bodies, odd headers. Each
gets the 4xx it should (raw bytes on a socket, so nothing on the client side tidies them).
"""

from __future__ import annotations

import gzip
import json
import os
import socket
from collections.abc import Iterator, Mapping

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.checks import negative_data_rejection

from models.train import TrainReport
from services.tooling.bench_service import ServedProcess, serve

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "40"))
# What the contract promises: no 5xx, and status, content type and body as documented. (Not
# schemathesis' "schema-valid data is accepted": a movie id must also be in the served
# catalog, which no schema can say.)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


@pytest.fixture(scope="module")
def served_api(
    trained_models: TrainReport,
    service_env: Mapping[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServedProcess]:
    logs = tmp_path_factory.mktemp("fuzz")
    env = {**service_env, "RECSYS_EVENTS__DIR": str(logs / "events")}
    with serve("services.recommendation:RecommendationService", extra_env=env, log_dir=logs) as s:
        yield s


def _fuzz(operation: schemathesis.APIOperation) -> int:
    """Run the generated examples of one operation; returns how many were sent."""
    sent = 0

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def call(case: schemathesis.Case) -> None:
        nonlocal sent
        sent += 1
        case.call_and_validate(checks=CHECKS)

    call()
    return sent


def test_no_5xx_and_every_answer_as_documented(served_api: ServedProcess) -> None:
    schema = schemathesis.openapi.from_url(f"{served_api.url}/docs.json")
    sent = {found.ok().label: _fuzz(found.ok()) for found in schema.get_all_operations()}
    assert len(sent) >= 10, sent  # every route of the document was exercised
    print(sent)


def _request(method: str, path: str, body: bytes, **headers: str) -> bytes:
    """Raw HTTP/1.1 request bytes (Content-Length from the body unless given)."""
    fields = {"Host": "test", "Content-Type": "application/json", "Connection": "close"}
    fields |= {"Content-Length": str(len(body))}
    fields |= {name.replace("_", "-"): value for name, value in headers.items()}
    head = f"{method} {path} HTTP/1.1\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in fields.items() if v)
    return (head + "\r\n").encode("latin-1") + body


def _chunked(size: int) -> bytes:
    chunks = b"".join(b"%x\r\n%s\r\n" % (8_192, b" " * 8_192) for _ in range(size // 8_192))
    head = "POST /recommend HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    return (head + "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode() + chunks


def _exchange(url: str, raw: bytes) -> tuple[int, bytes]:
    """Send `raw` on a fresh connection; returns the status and the body read until close."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=15) as conn:
        conn.sendall(raw)
        answer = b""
        while chunk := conn.recv(65_536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


NESTED = b"[" * 20_000 + b"]" * 20_000
HOSTILE = {
    # body encodings: JSON is UTF-8 (RFC 8259); anything else is the client's error
    "invalid UTF-8": (_request("POST", "/recommend", b'{"user_id": 1, "k": "\xff"}'), 400),
    "UTF-16": (_request("POST", "/recommend", '{"user_id": 1}'.encode("utf-16")), 400),
    "UTF-8 BOM": (_request("POST", "/recommend", b'\xef\xbb\xbf{"user_id": 1}'), 400),
    "gzip": (
        _request("POST", "/recommend", gzip.compress(b'{"user_id": 1}'), Content_Encoding="gzip"),
        415,
    ),
    "gzip header, plain body": (
        _request("POST", "/events", b'{"user_id": 1}', Content_Encoding="gzip"),
        415,
    ),
    # nesting depth and number width
    "nested 20k deep": (
        _request("POST", "/recommend", b'{"user_id": 1, "x": ' + NESTED + b"}"),
        400,
    ),
    "nested events": (_request("POST", "/events", b'{"user_id": ' + NESTED + b"}"), 400),
    "5,000-digit integer": (
        _request("POST", "/recommend", b'{"user_id": ' + b"9" * 5000 + b"}"),
        400,
    ),
    "1e400": (_request("POST", "/recommend", b'{"user_id": 1e400}'), 400),
    "NaN": (_request("POST", "/recommend", b'{"user_id": 1, "k": NaN}'), 400),
    # sizes and framing
    "chunked body over 64 KB": (_chunked(80_000), 413),  # was a 500
    "body shorter than its Content-Length": (
        _request("POST", "/recommend", b'{"user_id": 1}', Content_Length="100"),
        408,  # was BentoML's 504 after its timeout
    ),
    # headers
    "60 KB header": (_request("POST", "/recommend", b'{"user_id": 1}', X_Big="a" * 60_000), 200),
    "non-ASCII header": (_request("POST", "/recommend", b'{"user_id": 1}', X_Name="caf\xe9"), 200),
    "control byte in a header": (_request("POST", "/recommend", b"{}", X_Id="\x01"), 400),
    "Accept: application/xml": (
        _request("POST", "/recommend", b'{"user_id": 1}', Accept="application/xml"),
        200,
    ),
    "garbage Content-Type": (
        _request("POST", "/recommend", b'{"user_id": 1}', Content_Type=";;="),
        200,
    ),
    "unknown method": (_request("BREW", "/recommend", b""), 400),
    "percent garbage in path": (_request("GET", "/%zz%00", b""), 404),
    "percent garbage in query": (_request("GET", "/drift/report?format=%ff%fe", b""), 400),
}


@pytest.mark.parametrize(("raw", "status"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_bytes_get_a_4xx_in_the_error_model(
    served_api: ServedProcess, raw: bytes, status: int
) -> None:
    answer, body = _exchange(served_api.url, raw)
    assert answer == status, body[:300]
    if answer >= 400 and body.startswith(b"{"):  # uvicorn's own 400s for broken HTTP are text
        assert "error" in json.loads(body)
