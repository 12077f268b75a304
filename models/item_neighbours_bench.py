"""`python -m models.item_neighbours_bench`: quality and cost of the item-to-item neighbour source.

Two cases:

- **backtest** (per MovieLens directory): the protocol of `recsys evaluate`. Parameters are
  tuned on the validation window (`tune_item_neighbours` on ``split.fit`` / ``split.valid``),
  the model is refitted on ``split.train`` and scored on ``split.test``, beside most-popular and
  EASE^R scored by `models.train.evaluate_baselines` itself.
- **large** (run first, so that the process's peak RSS is the generation's or the build's): a
  generated catalog with MovieLens-25M's users and movies (162,541 x 62,423) and 5,000,000
  ratings (`data.synth.generate`, ~20 s). Reported: the cosine table's build time (N=100), the
  build's peak traced memory (tracemalloc: numpy and scipy arrays), the process's peak RSS, the
  table's size, and the latency of single `candidates(user, k=100)` calls (H=20) of random
  users, their context (recent and seen rows) prepared beforehand as a service has it.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from data.synth import generate
from models.baselines import KnownItems
from models.evaluation import evaluate_recommender
from models.item_neighbours import (
    EASE_TUNE_MAX_ITEMS,
    ItemNeighbourRecommender,
    ItemNeighbourSource,
    build_item_neighbours,
    tune_item_neighbours,
)
from models.sources import UserContext

logger = logging.getLogger(__name__)

DATA_DIRS = ("/work/shared/data/ml-100k", "/work/shared/data/ml-latest-small-2016")
LARGE_USERS, LARGE_ITEMS, LARGE_RATINGS = 162_541, 62_423, 5_000_000
TARGET_TABLE_MB = 500
TARGET_BUILD_SECONDS = 300


@dataclass(frozen=True)
class BacktestRow:
    """Tuned parameters and test-window metrics of one dataset, beside the baselines."""

    dataset: str
    params: dict[str, Any]
    validation: dict[str, float]
    test: dict[str, float]
    baselines: dict[str, dict[str, float]]  # "popular" and "ease" test metrics
    ease_lambda: float
    seconds: dict[str, float]  # tune, fit + test, baselines


@dataclass(frozen=True)
class LargeBench:
    """Build and request cost on a generated catalog."""

    users: int
    items: int
    ratings: int
    build_seconds: float
    peak_traced_mb: float
    max_rss_mb: float
    table_mb: float
    calls: int
    p50_us: float
    p99_us: float
    mean_candidates: float


def backtest(data_dir: str, ease_max_items: int = EASE_TUNE_MAX_ITEMS) -> BacktestRow:
    """Tune on validation, refit on train, score the test window; baselines as `recsys evaluate`."""
    from models.train import TrainReport, evaluate_baselines, prepare

    dataset, split = prepare(data_dir)
    item_ids = dataset.items["item_id"].to_numpy(np.int64)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    params, validation = tune_item_neighbours(
        split.fit, split.valid, item_ids, ease_max_items=ease_max_items
    )
    seconds["tune"] = time.perf_counter() - start
    start = time.perf_counter()
    model = ItemNeighbourRecommender(**params).fit(split.train, item_ids)
    test = evaluate_recommender(model, split.test, len(item_ids))
    seconds["fit + test"] = time.perf_counter() - start
    start = time.perf_counter()
    report = TrainReport()
    evaluate_baselines(dataset, split, report)
    seconds["baselines"] = time.perf_counter() - start
    return BacktestRow(data_dir, params, validation, test, report.metrics,
                       float(report.info["ease_lambda"]), seconds)  # fmt: skip


def bench_large(
    n_users: int = LARGE_USERS,
    n_items: int = LARGE_ITEMS,
    n_ratings: int = LARGE_RATINGS,
    n_neighbours: int = 100,
    history: int = 20,
    calls: int = 2_000,
    seed: int = 0,
) -> LargeBench:
    """Build the cosine table of a generated catalog and time single candidate requests."""
    data = generate(n_users, n_items, n_ratings, seed=seed)
    item_ids = data.items["item_id"].to_numpy(np.int64)
    inter = data.interactions  # sorted by user and time
    matrix = KnownItems(inter, item_ids).matrix
    rows = np.searchsorted(item_ids, inter["item_id"].to_numpy())
    ptr = np.searchsorted(inter["user_id"].to_numpy(), np.arange(1, n_users + 2))
    del data, inter

    tracemalloc.start()
    start = time.perf_counter()
    table = build_item_neighbours(matrix, n_neighbours, "cosine")
    build_seconds = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    max_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    rng = np.random.default_rng(seed)
    users = rng.integers(0, n_users, calls)
    contexts = [
        UserContext(
            rows[max(ptr[u], ptr[u + 1] - history) : ptr[u + 1]],
            np.unique(rows[ptr[u] : ptr[u + 1]]),
        )
        for u in users
    ]
    source = ItemNeighbourSource(table, history)
    for context in contexts[:100]:  # warm-up
        source.candidates(context, 100)
    times, found = [], 0
    for context in contexts:
        begin = time.perf_counter()
        result = source.candidates(context, 100)
        times.append(time.perf_counter() - begin)
        found += len(result.rows)
    p50, p99 = np.percentile(np.asarray(times) * 1e6, [50, 99])
    return LargeBench(n_users, n_items, n_ratings, build_seconds, peak / 2**20, max_rss / 2**10,
                      table.nbytes / 2**20, calls, float(p50), float(p99),
                      found / calls)  # fmt: skip


def _log_backtest(row: BacktestRow) -> None:
    logger.info("== %s", row.dataset)
    logger.info("tuned params: %s (%.0f s)", row.params, row.seconds["tune"])
    logger.info("validation: recall@100=%.4f ndcg@10=%.4f",
                row.validation["recall@100"], row.validation["ndcg@10"])  # fmt: skip
    models = {"item_knn": row.test, **row.baselines}
    for name, metrics in models.items():
        logger.info("test %-9s recall@100=%.4f ndcg@10=%.4f recall@10=%.4f coverage@10=%.4f",
                    name, metrics["recall@100"], metrics["ndcg@10"], metrics["recall@10"],
                    metrics["coverage@10"])  # fmt: skip
    logger.info("ease lambda %g; seconds %s", row.ease_lambda,
                {k: round(v, 1) for k, v in row.seconds.items()})  # fmt: skip


def _log_large(bench: LargeBench) -> None:
    logger.info("== synthetic %s users x %s items x %s ratings",
                f"{bench.users:,}", f"{bench.items:,}", f"{bench.ratings:,}")  # fmt: skip
    logger.info("cosine N=100 build %.1f s (target <= %d s), peak traced %.0f MB, "
                "process max RSS %.0f MB", bench.build_seconds, TARGET_BUILD_SECONDS,
                bench.peak_traced_mb, bench.max_rss_mb)  # fmt: skip
    logger.info("table %.1f MB (target <= %d MB)", bench.table_mb, TARGET_TABLE_MB)
    logger.info("candidates(k=100, H=20): p50 %.0f us, p99 %.0f us over %d calls, "
                "%.1f candidates per call", bench.p50_us, bench.p99_us, bench.calls,
                bench.mean_candidates)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> None:
    """Run the backtests and the large-catalog case, logging the figures to stdout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--data", nargs="*", default=list(DATA_DIRS), help="MovieLens dirs")
    parser.add_argument("--ease-max-items", type=int, default=EASE_TUNE_MAX_ITEMS,
                        help="largest catalog on which tuning tries EASE^R tables")  # fmt: skip
    parser.add_argument("--users", type=int, default=LARGE_USERS)
    parser.add_argument("--items", type=int, default=LARGE_ITEMS)
    parser.add_argument("--ratings", type=int, default=LARGE_RATINGS)
    parser.add_argument("--skip-large", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    logging.getLogger("models.item_neighbours").setLevel(logging.WARNING)  # per-config lines
    if not args.skip_large:  # first, so that the peak RSS is not the backtests' EASE^R
        _log_large(bench_large(args.users, args.items, args.ratings))
    for data_dir in args.data:
        _log_backtest(backtest(data_dir, args.ease_max_items))


if __name__ == "__main__":
    main()
