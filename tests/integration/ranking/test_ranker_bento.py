"""RankerService over HTTP (in process) and the ranker bento build."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import bentoml
import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
CANDIDATES = list(range(1, 41))


@pytest.mark.integration
def test_rank_returns_k_items_best_first_with_explanations(ranker_client: httpx.Client) -> None:
    scores = [1.0 - i / 40 for i in range(40)]
    body = {"user_id": 7, "item_ids": CANDIDATES, "retrieval_scores": scores, "k": 5}
    answer = ranker_client.post("/rank", json={**body, "explain": True})
    assert answer.status_code == 200, answer.text
    items = answer.json()["items"]
    assert len(items) == 5
    assert {item["item_id"] for item in items} <= set(CANDIDATES)
    assert [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)
    assert all(len(item["contributions"]) == 3 for item in items)
    assert answer.json()["model_version"]["ranker"].startswith("ranker:")
    plain = ranker_client.post("/rank", json=body).json()["items"]
    assert [i["item_id"] for i in plain] == [i["item_id"] for i in items]
    assert plain[0]["contributions"] is None  # explanations only on request


@pytest.mark.integration
def test_unknown_user_and_items_get_default_features(ranker_client: httpx.Client) -> None:
    answer = ranker_client.post("/rank", json={"user_id": 10**9, "item_ids": [1, 10**9]})
    assert answer.status_code == 200, answer.text
    assert len(answer.json()["items"]) == 2


@pytest.mark.integration
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"item_ids": [1, 2]}, "user_id"),  # user id missing
        ({"user_id": 1, "item_ids": []}, "item_ids"),  # no candidates
        ({"user_id": 1, "item_ids": [1, 2], "k": 0}, "k"),  # k below 1
        ({"user_id": 1, "item_ids": [1, 2], "k": 101}, "k"),  # k above 100
        ({"user_id": 1, "item_ids": ["x"]}, "item_ids"),  # not an integer id
        # scores not aligned with the candidates
        ({"user_id": 1, "item_ids": [1, 2], "retrieval_scores": [0.5]}, "retrieval_scores"),
    ],
)
def test_bad_requests_get_a_4xx_naming_the_field(
    ranker_client: httpx.Client, body: dict[str, object], field: str
) -> None:
    answer = ranker_client.post("/rank", json=body)
    assert 400 <= answer.status_code < 500
    assert field in answer.text


@pytest.mark.slow
def test_ranker_bento_builds_with_its_models(
    stored_ranker: dict[str, str],
    pinned_artifacts_env: Callable[[Mapping[str, str]], dict[str, str]],
) -> None:
    bentoml_cli = Path(sys.executable).parent / "bentoml"
    built = subprocess.run(
        [str(bentoml_cli), "build", "-f", "bentos/ranker/bentofile.yaml", ".", "--output", "tag"],
        cwd=REPO_ROOT,
        env={**os.environ, **pinned_artifacts_env(stored_ranker)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    bento = bentoml.bentos.get(tag)
    packed = {str(model.tag) for service in bento.info.services for model in service.models}
    assert packed == {
        stored_ranker["ranker"],
        stored_ranker["feature-snapshot"],
        stored_ranker["drift-reference"],
    }
    src = Path(bento.path) / "src"
    sources = {p.relative_to(src).as_posix() for p in src.rglob("*.py")}
    assert "services/ranker.py" in sources
    assert not any(s.startswith("tests/") for s in sources)
