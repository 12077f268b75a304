"""Training the XGBoost ranker on first-stage candidates, without leakage.

Time windows (per user, DESIGN.md protocol: fit < valid < test):

- candidates: the first stage (any `BatchRecommender`; the two-tower retriever in production)
  whose user histories are ``split.fit``, so it excludes fit items and knows nothing later;
- features: rows read through a `FeatureStore` over ``snapshot_fit = build_snapshot(dataset,
  split.fit)``, with the very `FeatureAssembler` serving uses, so training sees what serving sees;
- labels: 1 when a candidate is among the user's ``split.valid`` items (a later window), else 0.

One query group per user; groups without a positive carry no ranking signal and are dropped.
A seeded 20% of the users is held out for early stopping on NDCG@10. At test and serving time
the same model scores candidates from ``split.train`` histories with ``snapshot_serve``
features, and ``split.test`` is the label window.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import xgboost as xgb

from data.split import Split
from feature_store.base import FeatureStore
from models.evaluation import BatchRecommender, ranking_metrics
from models.ranker import FEATURE_NAMES, FeatureAssembler, Ranker, demographic_genre_lift

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RankerTrainConfig:
    """Hyperparameters of ranker training (sized for the 0.5 ms / 100 candidates budget)."""

    candidates: int = 100
    """Candidates per user from the first stage."""
    max_depth: int = 5
    """Tree depth."""
    max_trees: int = 150
    """Upper bound on boosting rounds (early stopping usually ends sooner)."""
    learning_rate: float = 0.1
    """Shrinkage per round."""
    min_child_weight: float = 1.0
    """Minimum hessian per leaf."""
    subsample: float = 0.8
    """Row sampling per tree."""
    colsample_bytree: float = 0.8
    """Feature sampling per tree."""
    objective: str = "rank:ndcg"
    """XGBoost ranking objective."""
    early_stopping_rounds: int = 20
    """Stop after this many rounds without holdout NDCG@10 improvement."""
    holdout_fraction: float = 0.2
    """Share of users held out for early stopping."""
    nthread: int = 2
    """Training threads (serving threads come from RankingSettings)."""


@dataclass(frozen=True)
class TrainingSet:
    """Ranker training rows: one group of candidates per user, in retrieval order."""

    features: np.ndarray  # (R, F) float32
    labels: np.ndarray  # (R,) float32, 1 = candidate is in the user's valid window
    user_ids: np.ndarray  # (R,) int64, the group (rows of a user are contiguous)
    item_ids: np.ndarray  # (R,) int64
    assembler: FeatureAssembler


def build_training_set(
    retriever: BatchRecommender,
    store: FeatureStore,
    labels_window: pd.DataFrame,
    candidates: int = 100,
    batch_size: int = 1024,
) -> TrainingSet:
    """Candidates, features and labels for every user of `labels_window`.

    Args:
        retriever: first stage whose histories end before `labels_window`.
        store: feature rows from the period before `labels_window`.
        labels_window: interactions that make the positive labels (e.g. `Split.valid`).
        candidates: candidates per user.
        batch_size: users per `recommend` call.

    Returns:
        All rows, groups with no positive included (the caller filters).
    """
    users = np.unique(labels_window["user_id"].to_numpy(np.int64))
    ranked, scored = [], []
    for start in range(0, len(users), batch_size):
        items, scores = retriever.recommend(users[start : start + batch_size], candidates)
        ranked.append(items)
        scored.append(scores)
    cand = np.concatenate(ranked)  # (U, K)
    cand_scores = np.concatenate(scored).astype(np.float32)
    reads = [store.read(int(u), cand[row][cand[row] >= 0]) for row, u in enumerate(users)]
    user_rows = np.stack([r.user for r in reads])
    assembler = FeatureAssembler(
        tuple(store.user_columns),
        tuple(store.item_columns),
        demographic_genre_lift(user_rows, tuple(store.user_columns)),
    )
    features, user_col, item_col = [], [], []
    for row, (user_id, read) in enumerate(zip(users, reads, strict=True)):
        valid = cand[row] >= 0
        features.append(assembler.assemble(read.user, read.items, cand_scores[row][valid]))
        item_col.append(cand[row][valid])
        user_col.append(np.full(int(valid.sum()), user_id, dtype=np.int64))
    user_ids = np.concatenate(user_col)
    item_ids = np.concatenate(item_col)
    positives = _pair_keys(labels_window["user_id"].to_numpy(), labels_window["item_id"].to_numpy())
    labels = np.isin(_pair_keys(user_ids, item_ids), positives).astype(np.float32)
    return TrainingSet(np.concatenate(features), labels, user_ids, item_ids, assembler)


def _pair_keys(users: np.ndarray, items: np.ndarray) -> np.ndarray:
    return users.astype(np.int64) * (1 << 32) + items.astype(np.int64)


def train_ranker(
    retriever: BatchRecommender,
    store: FeatureStore,
    split: Split,
    config: RankerTrainConfig | None = None,
    seed: int = 42,
) -> tuple[Ranker, dict[str, float]]:
    """Train the ranker on `retriever`'s candidates with `split.valid` labels.

    Args:
        retriever: first stage with `split.fit` histories (it must exclude fit items).
        store: feature store over `build_snapshot(dataset, split.fit)`.
        split: the protocol split; only `valid` is read (the labels).
        config: hyperparameters (defaults: `RankerTrainConfig()`).
        seed: seeds the holdout users and XGBoost.

    Returns:
        The ranker and holdout metrics: NDCG@10 / recall@10 of retrieval order and of the
        ranker over the same candidates, with the number of groups and trees.
    """
    config = config or RankerTrainConfig()
    data = build_training_set(retriever, store, split.valid, config.candidates)
    users = np.unique(data.user_ids)
    rng = np.random.default_rng(seed)
    n_holdout = max(1, int(len(users) * config.holdout_fraction))
    holdout_users = rng.choice(users, size=n_holdout, replace=False)
    in_holdout = np.isin(data.user_ids, holdout_users)
    has_positive = np.isin(data.user_ids, np.unique(data.user_ids[data.labels > 0]))
    train_rows = ~in_holdout & has_positive
    eval_rows = in_holdout & has_positive
    if not train_rows.any() or not eval_rows.any():
        raise ValueError("no user has a validation item among the candidates: cannot train")
    dtrain = _dmatrix(data, train_rows)
    deval = _dmatrix(data, eval_rows)
    params = {
        "objective": config.objective,
        "eval_metric": "ndcg@10",
        "max_depth": config.max_depth,
        "eta": config.learning_rate,
        "min_child_weight": config.min_child_weight,
        "subsample": config.subsample,
        "colsample_bytree": config.colsample_bytree,
        "tree_method": "hist",
        "nthread": config.nthread,
        "seed": seed,
    }
    booster = xgb.train(
        params,
        dtrain,
        num_boost_round=config.max_trees,
        evals=[(deval, "holdout")],
        early_stopping_rounds=config.early_stopping_rounds,
        verbose_eval=False,
    )
    best = int(booster.best_iteration)
    booster = booster[: best + 1]  # keep only the trees that helped: cheaper to serve
    ranker = Ranker(booster, data.assembler)
    metrics = _holdout_metrics(ranker, data, in_holdout, split.valid)
    metrics.update(
        train_groups=float(len(np.unique(data.user_ids[train_rows]))),
        holdout_groups=float(len(np.unique(data.user_ids[eval_rows]))),
        trees=float(ranker.n_trees),
        positive_rate=float(data.labels.mean()),
    )
    logger.info("ranker trained: %s (config %s)", metrics, asdict(config))
    return ranker, metrics


def _dmatrix(data: TrainingSet, rows: np.ndarray) -> xgb.DMatrix:
    # Rows of a user are contiguous, so the user ids are valid sorted-by-group qids.
    return xgb.DMatrix(
        data.features[rows],
        label=data.labels[rows],
        qid=data.user_ids[rows],
        feature_names=list(FEATURE_NAMES),
    )


def _holdout_metrics(
    ranker: Ranker, data: TrainingSet, in_holdout: np.ndarray, labels_window: pd.DataFrame
) -> dict[str, float]:
    """Protocol metrics on the holdout users: retrieval order vs the ranker's order."""
    owners = data.user_ids[in_holdout]
    items = data.item_ids[in_holdout]
    scores = ranker.score(data.features[in_holdout])
    # Rows of a user are contiguous: split at the boundaries.
    users, starts = np.unique(owners, return_index=True)
    bounds = np.sort(starts)[1:]
    relevant_by_user = labels_window.groupby("user_id")["item_id"].apply(np.asarray)
    width = max(100, int(np.bincount(np.searchsorted(users, owners)).max()))
    retrieval = np.full((len(users), width), -1, dtype=np.int64)
    reranked = retrieval.copy()
    order_users = owners[np.sort(starts)]
    for row, (mine, score) in enumerate(
        zip(np.split(items, bounds), np.split(scores, bounds), strict=True)
    ):
        retrieval[row, : len(mine)] = mine
        reranked[row, : len(mine)] = mine[np.argsort(-score, kind="stable")]
    relevant = [relevant_by_user[u] for u in order_users]
    n_catalog = int(np.unique(data.item_ids).size)
    base = ranking_metrics(retrieval, relevant, n_catalog)
    ranked = ranking_metrics(reranked, relevant, n_catalog)
    return {
        "holdout_ndcg@10_retrieval": base["ndcg@10"],
        "holdout_ndcg@10_ranker": ranked["ndcg@10"],
        "holdout_recall@10_retrieval": base["recall@10"],
        "holdout_recall@10_ranker": ranked["recall@10"],
    }
