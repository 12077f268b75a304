"""Cold-movie recall@100 of the content-neighbour source alone (`python -m models.content_bench`).

Protocol (DESIGN.md split, `models.train.prepare`): the source is tuned on ``fit`` -> ``valid``
and measured on ``train`` -> ``test``. The table's cold set and the user contexts (latest rated
rows, seen rows) come from the known window only. A held-out (user, movie) pair is a hit when the
movie is in the user's top 100 from the source. Two pair sets are reported:

- ``unrated``: movies with no rating in the known window (the two-tower's 0.023 on ML-100K,
  `models.train_retrieval.cold_item_recall`, 88 pairs);
- ``few``: movies with fewer than `FEW_RATINGS` ratings in the known window (the issue's target).

The tuning grid is staged to stay small (`tune`): block weights (genres fixed at 1) x the year
kernel's width first, then the cold threshold, then the history length x neighbour count (the
neighbour count by truncating one wide table).
"""

from __future__ import annotations

import itertools
import logging
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.content_neighbours import (
    BlockWeights,
    ContentSource,
    ContentTable,
    build_content_neighbours,
)
from models.sources import UserContext
from models.train import prepare

logger = logging.getLogger(__name__)

DATASETS = ("/work/shared/data/ml-100k", "/work/shared/data/ml-latest-small-2016")
FEW_RATINGS = 5
DEPTH = 100
HISTORIES = (5, 10, 20, 50)
BASE_HISTORY = 20  # history and neighbour count while the weights are tuned
BASE_NEIGHBOURS = 100
NEIGHBOURS = (20, 50, 100, 200)
YEAR_WEIGHTS = (0.0, 0.5, 1.0, 2.0)
TITLE_WEIGHTS = (0.0, 0.5, 1.0, 2.0)
YEAR_SCALES = (2.0, 4.0, 8.0)
COLD_THRESHOLDS = (5, 10, 20)
LATENCY_ITEMS = 62_000


@dataclass(frozen=True)
class ColdRecall:
    """Cold-movie recall@100 over one pair set."""

    recall: float
    pairs: int
    chance: float = float("nan")  # the same pairs' recall of random unseen cold movies


@dataclass(frozen=True)
class ContentBench:
    """The figures of one dataset."""

    dataset: str
    params: dict[str, Any]  # tuned: block weights, year_scale, cold_threshold, history, N
    valid_few: ColdRecall
    test_unrated: ColdRecall
    test_few: ColdRecall
    tune_seconds: float
    test_seconds: float


def user_contexts(known: pd.DataFrame, item_ids: np.ndarray) -> dict[int, UserContext]:
    """Each user's rated rows of `known`, oldest first, and their sorted seen rows."""
    if known.empty:
        return {}
    ordered = known.sort_values(["user_id", "timestamp", "item_id"], kind="mergesort")
    rows = np.searchsorted(item_ids, ordered["item_id"].to_numpy(np.int64))
    users = ordered["user_id"].to_numpy(np.int64)
    starts = np.flatnonzero(np.r_[True, users[1:] != users[:-1]])
    ends = np.r_[starts[1:], len(users)]
    return {
        int(users[s]): UserContext(rows[s:e], np.unique(rows[s:e]))
        for s, e in zip(starts, ends, strict=True)
    }


def item_counts(known: pd.DataFrame, item_ids: np.ndarray) -> np.ndarray:
    """(I,) ratings per catalog row in `known`."""
    rows = np.searchsorted(item_ids, known["item_id"].to_numpy(np.int64))
    return np.bincount(rows, minlength=len(item_ids))


def cold_pairs(
    heldout: pd.DataFrame, counts: np.ndarray, item_ids: np.ndarray, below: int
) -> pd.DataFrame:
    """Held-out (user_id, row) pairs whose movie had fewer than `below` known ratings."""
    rows = np.searchsorted(item_ids, heldout["item_id"].to_numpy(np.int64))
    keep = counts[rows] < below
    return pd.DataFrame({"user_id": heldout["user_id"].to_numpy()[keep], "row": rows[keep]})


def pair_recall(
    source: ContentSource, contexts: dict[int, UserContext], pairs: pd.DataFrame, k: int = DEPTH
) -> ColdRecall:
    """Share of `pairs` whose row is in the user's top `k` (users unknown to `contexts` miss)."""
    if pairs.empty:
        return ColdRecall(0.0, 0)
    hits = 0
    for user, group in pairs.groupby("user_id", sort=False)["row"]:
        context = contexts.get(int(user))
        if context is None:
            continue
        found = source.candidates(context, k).rows
        hits += int(np.isin(group.to_numpy(), found).sum())
    return ColdRecall(hits / len(pairs), len(pairs))


def chance_recall(
    contexts: dict[int, UserContext], pairs: pd.DataFrame, cold: np.ndarray, k: int = DEPTH
) -> float:
    """Expected recall of `k` cold movies drawn at random among each user's unseen cold ones."""
    if pairs.empty:
        return 0.0
    seen_cold = {u: np.count_nonzero(cold[c.seen_rows]) for u, c in contexts.items()}
    taken = np.array([seen_cold.get(int(u), 0) for u in pairs["user_id"]])
    unseen = np.maximum(np.count_nonzero(cold) - taken, 1)
    return float(np.mean(np.minimum(1.0, k / unseen)))


def tune(
    items: pd.DataFrame, fit: pd.DataFrame, valid: pd.DataFrame, item_ids: np.ndarray
) -> tuple[dict[str, Any], ColdRecall]:
    """Staged grid on fit -> valid, scored on the `FEW_RATINGS` pairs.

    Stages: block weights x the year kernel's width, then the cold threshold (both at
    `BASE_HISTORY` and `BASE_NEIGHBOURS`), then history x neighbour count on the best table.

    Returns:
        The best parameters and their validation recall; ``{}`` and 0 pairs when validation
        holds no rating of a movie with few ratings (nothing to tune on: keep the defaults).
    """
    counts = item_counts(fit, item_ids)
    pairs = cold_pairs(valid, counts, item_ids, FEW_RATINGS)
    if pairs.empty:
        return {}, ColdRecall(float("nan"), 0)
    contexts = user_contexts(fit[fit["user_id"].isin(pairs["user_id"])], item_ids)

    def score(weights: BlockWeights, threshold: int, n: int, history: int) -> float:
        table = build_content_neighbours(items, counts, n, threshold, weights)
        return pair_recall(ContentSource(table, history), contexts, pairs).recall

    def best_of(options: list[tuple[BlockWeights, int]]) -> tuple[float, BlockWeights, int]:
        scored = [(score(w, t, BASE_NEIGHBOURS, BASE_HISTORY), w, t) for w, t in options]
        return max(scored, key=lambda s: s[0])  # the first of equals: grids start simple

    grid = itertools.product(YEAR_WEIGHTS, TITLE_WEIGHTS, YEAR_SCALES)
    _, weights, _ = best_of([(BlockWeights(1.0, y, t, s), FEW_RATINGS) for y, t, s in grid])
    _, weights, threshold = best_of([(weights, t) for t in COLD_THRESHOLDS])
    wide = build_content_neighbours(items, counts, max(NEIGHBOURS), threshold, weights)
    recall, n, history = max(
        (pair_recall(ContentSource(wide.truncated(n), h), contexts, pairs).recall, n, h)
        for n in NEIGHBOURS
        for h in HISTORIES
    )
    params = {
        **asdict(weights),
        "cold_threshold": threshold,
        "history": history,
        "n_neighbours": n,
    }
    return params, ColdRecall(recall, len(pairs))


def measure(data_dir: str | Path) -> ContentBench:
    """Tune on validation, then the test figures of both pair sets."""
    dataset, split = prepare(data_dir)
    items = dataset.items.sort_values("item_id").reset_index(drop=True)
    item_ids = items["item_id"].to_numpy(np.int64)
    start = time.perf_counter()
    params, valid_few = tune(items, split.fit, split.valid, item_ids)
    tuned = time.perf_counter()
    counts = item_counts(split.train, item_ids)
    weights = BlockWeights(params["genres"], params["year"], params["title"], params["year_scale"])
    table = build_content_neighbours(
        items, counts, params["n_neighbours"], params["cold_threshold"], weights
    )
    source = ContentSource(table, params["history"])
    contexts = user_contexts(split.train, item_ids)
    cold = counts < params["cold_threshold"]
    test: dict[int, ColdRecall] = {}
    for below in (1, FEW_RATINGS):
        pairs = cold_pairs(split.test, counts, item_ids, below)
        found = pair_recall(source, contexts, pairs)
        test[below] = replace(found, chance=chance_recall(contexts, pairs, cold))
    done = time.perf_counter()
    return ContentBench(
        Path(data_dir).name,
        params,
        valid_few,
        test[1],
        test[FEW_RATINGS],
        tuned - start,
        done - tuned,
    )


def candidates_latency(
    n_items: int = LATENCY_ITEMS,
    n_neighbours: int = 100,
    history: int = 20,
    seen: int = 200,
    calls: int = 2_000,
    seed: int = 0,
) -> tuple[float, float]:
    """p50 and p99 microseconds of one `candidates(k=100)` call on a random table of this size."""
    rng = np.random.default_rng(seed)
    neighbours = rng.integers(0, n_items, (n_items, n_neighbours)).astype(np.int32)
    weights = np.sort(rng.random((n_items, n_neighbours), np.float32), axis=1)[:, ::-1]
    source = ContentSource(ContentTable(neighbours, np.ascontiguousarray(weights), {}), history)
    times = []
    for _ in range(calls):
        rows = rng.choice(n_items, seen, replace=False).astype(np.int64)
        user = UserContext(rows[:history], np.sort(rows))
        start = time.perf_counter()
        source.candidates(user, DEPTH)
        times.append(time.perf_counter() - start)
    us = np.asarray(times) * 1e6
    return float(np.percentile(us, 50)), float(np.percentile(us, 99))


def main(argv: list[str] | None = None) -> None:
    """Measure every dataset given (default: `DATASETS`) and log the figures."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    for data_dir in (argv if argv is not None else sys.argv[1:]) or DATASETS:
        bench = measure(data_dir)
        logger.info(
            "%s: params %s\n  valid few(<%d) recall@100 %.3f (%d pairs)\n"
            "  test unrated recall@100 %.3f (%d pairs, random cold %.3f); "
            "few(<%d) %.3f (%d pairs, random cold %.3f)\n  tune %.1f s, test %.1f s",
            bench.dataset, bench.params, FEW_RATINGS, bench.valid_few.recall,
            bench.valid_few.pairs, bench.test_unrated.recall, bench.test_unrated.pairs,
            bench.test_unrated.chance, FEW_RATINGS, bench.test_few.recall, bench.test_few.pairs,
            bench.test_few.chance, bench.tune_seconds, bench.test_seconds,
        )  # fmt: skip
    p50, p99 = candidates_latency()
    logger.info("candidates(k=100), %d items, N=100, H=20: p50 %.0f us, p99 %.0f us",
                LATENCY_ITEMS, p50, p99)  # fmt: skip


if __name__ == "__main__":
    main()
