"""Batch and one-off recommendations through the same pipeline the HTTP service runs.

The RecommendationService is instantiated in process, its stages in the placement the settings
say (embedded by default), so `recsys recommend` answers exactly what POST /recommend would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from data.errors import DataError

STAGES = ("retrieval", "two-stage")


def read_user_ids(path: str | Path) -> list[int]:
    """One user id per line (blank lines and `#` comments ignored).

    Raises:
        DataError: the file is missing or a line is not an integer (file and line named).
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(f"users file {file} does not exist")
    ids = []
    for line_no, line in enumerate(file.read_text().splitlines(), start=1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        if not text.lstrip("-").isdigit():
            raise DataError(f"{file}, line {line_no}: {text!r} is not a user id")
        ids.append(int(text))
    return ids


def recommend_many(
    user_ids: Iterable[int], k: int, stage: str = "two-stage", exclude_seen: bool = True
) -> Iterator[dict[str, Any]]:
    """Yield one answer per user: the full /recommend body, or the retrieval stage's."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    from services.recommendation import RecommendationService

    service: Any = RecommendationService()
    loop = asyncio.new_event_loop()
    try:
        for user_id in user_ids:
            if stage == "retrieval":
                found = service.stages.retrieve(user_id, k, exclude_seen)
                yield {"user_id": user_id, "item_ids": loop.run_until_complete(found).item_ids}
            else:
                answer = service.pipeline.recommend(user_id, k, exclude_seen)
                yield loop.run_until_complete(answer).model_dump()
    finally:
        loop.close()


def write_batch(users_file: str | Path, out: str | Path, k: int, stage: str = "two-stage") -> int:
    """Write `{"user_id": .., "items": [..]}` per line for every user in `users_file`.

    Returns:
        The number of users written.
    """
    user_ids = read_user_ids(users_file)
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w") as handle:
        for answer in recommend_many(user_ids, k, stage):
            handle.write(json.dumps({"user_id": answer["user_id"], "items": _items(answer)}))
            handle.write("\n")
    return len(user_ids)


def _items(answer: dict[str, Any]) -> list[int]:
    if "recommendations" in answer:
        return [int(r["item_id"]) for r in answer["recommendations"]]
    return [int(i) for i in answer["item_ids"]]
