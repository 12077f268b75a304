"""RetrieverService over HTTP (in process) and the retriever bento build."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

import bentoml
import httpx
import pytest

from data.schema import Dataset

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.integration
def test_retrieve_excludes_seen_and_flags_cold_start(
    retriever_client: httpx.Client, stored_retriever: dict[str, str], retriever_data: Dataset
) -> None:
    user_id = int(stored_retriever["user_id"])
    ratings = retriever_data.interactions  # what the model was given, not what it built
    rated = set(ratings.loc[ratings["user_id"] == user_id, "item_id"].tolist())
    n_items = len(retriever_data.items)
    answer = retriever_client.post("/retrieve", json={"user_id": user_id, "k": n_items})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert len(body["item_ids"]) == len(body["scores"]) == n_items - len(rated)
    assert not set(body["item_ids"]) & rated
    assert body["cold_start"] is False
    assert body["model_version"]["two_tower"].startswith("two-tower:")
    everything = retriever_client.post(
        "/retrieve", json={"user_id": user_id, "k": n_items, "exclude_seen": False}
    ).json()
    assert set(everything["item_ids"]) >= rated  # the filter above is not vacuous
    banned = body["item_ids"][:3]
    again = retriever_client.post(
        "/retrieve", json={"user_id": user_id, "k": 20, "exclude_item_ids": banned}
    ).json()
    assert not set(again["item_ids"]) & (set(banned) | rated)
    cold = retriever_client.post("/retrieve", json={"user_id": 10**9, "k": 5}).json()
    assert cold["cold_start"] is True
    assert len(cold["item_ids"]) == 5


@pytest.mark.integration
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"k": 10}, "user_id"),  # user id missing
        ({"user_id": 1, "k": 0}, "k"),  # k below 1
        ({"user_id": "x"}, "user_id"),  # not an integer id
        ({"user_id": 1, "exclude_item_ids": ["a"]}, "exclude_item_ids"),  # not integer ids
    ],
)
def test_bad_requests_get_a_4xx_naming_the_field(
    retriever_client: httpx.Client, body: dict[str, object], field: str
) -> None:
    answer = retriever_client.post("/retrieve", json=body)
    assert 400 <= answer.status_code < 500
    assert field in answer.text


@pytest.mark.slow
def test_retriever_bento_builds_with_its_models(
    stored_retriever: dict[str, str],
    pinned_artifacts_env: Callable[[Mapping[str, str]], dict[str, str]],
    two_tower_only: dict[str, str],
) -> None:
    bentoml_cli = Path(sys.executable).parent / "bentoml"
    env = {**os.environ, **pinned_artifacts_env(stored_retriever), **two_tower_only}
    built = subprocess.run(
        [
            str(bentoml_cli),
            "build",
            "-f",
            "bentos/retriever/bentofile.yaml",
            ".",
            "--output",
            "tag",
        ],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    tag = built.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    bento = bentoml.bentos.get(tag)
    packed = {str(model.tag) for service in bento.info.services for model in service.models}
    assert packed == {stored_retriever["two-tower"], stored_retriever["feature-snapshot"]}
    src = Path(bento.path) / "src"
    sources = {p.relative_to(src).as_posix() for p in src.rglob("*.py")}
    assert {"services/retriever.py", "models/retriever.py", "models/two_tower.py"} <= sources
    assert not any(s.startswith("tests/") for s in sources)
