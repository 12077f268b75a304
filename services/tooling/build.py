"""Build the three bentos (`make build`), each labelled with the git revision and its models.

Each bento is built by `bentoml build` in a process of its own. The recommendation bento is
built with ``RECSYS_STAGES=remote``, so its bento.yaml composes all three services and lists
every model: the same bento then serves either placement (``RECSYS_STAGES`` is read again when
the served process imports the service).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

from data.errors import RecsysError
from models import artifacts
from services.settings import Settings

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
BENTOFILES = {
    "retriever": REPO_ROOT / "bentos" / "retriever" / "bentofile.yaml",
    "ranker": REPO_ROOT / "bentos" / "ranker" / "bentofile.yaml",
    "recommendation": REPO_ROOT / "bentofile.yaml",
}


class BuildError(RecsysError):
    """`bentoml build` failed."""


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
        BuildError: `bentoml build` failed (its output is quoted).
    """
    labels = {"git": artifacts.git_revision(), **model_labels(settings)}
    bentoml_bin = Path(sys.executable).with_name("bentoml")
    env = {**os.environ, "RECSYS_STAGES": "remote", "BENTOML_DO_NOT_TRACK": "true"}
    built = []
    for name in only:
        command = [str(bentoml_bin), "build", "-f", str(BENTOFILES[name]), "--output", "tag"]
        command += [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]
        done = subprocess.run(
            [*command, str(REPO_ROOT)], capture_output=True, text=True, env=env, check=False
        )
        if done.returncode != 0:
            raise BuildError(f"bentoml build of {name} failed: {done.stderr.strip()[-1500:]}")
        tag = done.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
        logger.info("built %s", tag)
        built.append(tag)
    return built
