"""Property-based requests generated from the served OpenAPI document (schemathesis, hypothesis).

Against `bentoml serve` (embedded stages), every operation the document lists gets generated
requests, valid and invalid. Each answer must not be a 5xx, and must match what the document
declares for it: status, content type and body schema. FUZZ_EXAMPLES (default 40 per operation
in `make test`) sets how many examples each operation gets.
"""

from __future__ import annotations

import os
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
