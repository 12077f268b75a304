"""Build the three bentos (`make build`), each labelled with the git revision and its models."""

from __future__ import annotations

import logging
from pathlib import Path

import bentoml

from models import artifacts
from services.settings import Settings

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
BENTOFILES = {
    "retriever": REPO_ROOT / "bentos" / "retriever" / "bentofile.yaml",
    "ranker": REPO_ROOT / "bentos" / "ranker" / "bentofile.yaml",
    "recommendation": REPO_ROOT / "bentofile.yaml",
}


def model_labels(settings: Settings) -> dict[str, str]:
    """The exact model tags the bentos will pack (`:latest` resolved), as bento labels."""
    tags = {
        "two-tower": settings.artifacts.two_tower_tag,
        "ranker": settings.artifacts.ranker_tag,
        "feature-snapshot": settings.artifacts.snapshot_tag,
        "drift-reference": settings.artifacts.drift_reference_tag,
    }
    return {name: str(artifacts.get_model(tag).tag) for name, tag in tags.items()}


def build_bentos(settings: Settings, only: tuple[str, ...] = tuple(BENTOFILES)) -> list[str]:
    """Build the requested bentos from the repository root; returns their tags.

    Raises:
        ArtifactError: a model the bentos pack is not in the store (run `recsys train`).
    """
    labels = {"git": artifacts.git_revision(), **model_labels(settings)}
    built = []
    for name in only:
        bento = bentoml.bentos.build_bentofile(
            str(BENTOFILES[name]), build_ctx=str(REPO_ROOT), labels=labels
        )
        logger.info("built %s", bento.tag)
        built.append(str(bento.tag))
    return built
