"""Scoring a deployed service's batch answers (`recsys evaluate --recommendations`).

The answers come from ``recsys recommend --batch`` (one ``{"user_id", "items"}`` line per
user); the held-out ratings from ``recsys data split``. The metrics are the protocol's
(`models.evaluation.ranking_metrics`), so a deployment is measured exactly as the backtest is.
Ask for ``-k 100``: Recall@100 counts the first 100 items of each answer.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from data.errors import DataError
from data.movielens import load_movielens
from data.split_files import read_test
from models.evaluation import EVAL_DEPTH, heldout_lists, ranking_metrics

logger = logging.getLogger(__name__)


def read_recommendations(path: str | Path) -> dict[int, list[int]]:
    """``{user_id: items}`` from a ``recommend --batch`` JSON-lines file.

    Raises:
        DataError: the file is missing or a line is not ``{"user_id": int, "items": [int]}``.
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(f"recommendations file {file} does not exist")
    answers: dict[int, list[int]] = {}
    for line_no, line in enumerate(file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            answers[int(row["user_id"])] = [int(i) for i in row["items"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(
                f"{file}, line {line_no}: not a recommend --batch line ({exc})"
            ) from exc
    return answers


def score_recommendations(
    recommendations: str | Path, test: str | Path, data_dir: str | Path
) -> tuple[dict[str, float], dict[str, Any]]:
    """Protocol metrics of batch answers against held-out ratings.

    Args:
        recommendations: ``recommend --batch`` output (``-k 100`` for Recall@100).
        test: held-out ratings (``recsys data split``'s ``test.csv``).
        data_dir: the MovieLens directory the service was trained on (catalog size, and the
            count of answered movies the user had already rated there).

    Returns:
        The metrics, and facts about the answers: users scored, users with no answer (scored
        as empty lists), the list depth, and how many answered movies were already rated.
    """
    answers = read_recommendations(recommendations)
    dataset = load_movielens(data_dir)
    users, relevant = heldout_lists(read_test(test))
    depth = max([EVAL_DEPTH, *(len(items) for items in answers.values())])
    ranked = np.full((len(users), depth), -1, dtype=np.int64)
    for row, user in enumerate(users.tolist()):
        items = answers.get(user, [])
        ranked[row, : len(items)] = items
    missing = int(sum(user not in answers for user in users.tolist()))
    if missing:
        logger.warning("%d of %d test users have no answer: scored as empty", missing, len(users))
    known = dataset.interactions
    rated = set(zip(known["user_id"].tolist(), known["item_id"].tolist(), strict=True))
    already = sum((user, item) in rated for user, items in answers.items() for item in items)
    info = {
        "users": len(users),
        "users_without_answer": missing,
        "answer_depth": min((len(v) for v in answers.values()), default=0),
        "already_rated_returned": already,
    }
    return ranking_metrics(ranked, relevant, len(dataset.items)), info
