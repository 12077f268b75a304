"""End-to-end training: data -> split -> features -> retriever -> ranker -> evaluation -> store.

Time windows (DESIGN.md protocol; no stage ever learns from a later window than it is judged on):

- ``fit``   (train minus validation): the retriever's training data, and the feature period of
  the ranker's training set (snapshot_fit).
- ``valid``: early stopping of the retriever; the LABELS of the ranker's training set (candidates
  come from the retriever with fit-period histories, features from snapshot_fit).
- ``train`` (fit + valid): the serving state: user histories and the served feature snapshot.
- ``test``: only the final figures, computed with serving state (histories and features from
  ``train``), exactly as the service would answer.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from data.features import DEMOGRAPHIC_COLUMNS, build_snapshot, dataset_fingerprint
from data.movielens import load_movielens
from data.schema import Dataset
from data.split import Split, temporal_split
from feature_store.memory_store import MemoryFeatureStore
from models import artifacts
from models.baselines import EASERecommender, PopularRecommender, tune_ease
from models.evaluation import evaluate_recommender

if TYPE_CHECKING:
    from models.two_stage import TwoStageRecommender

logger = logging.getLogger(__name__)

# Small, fast settings for tests and smoke runs (`train_all(..., quick=True)`).
QUICK_TOWER_OVERRIDES: dict[str, Any] = {
    "dim": 32, "hidden": 64, "history_len": 20, "epochs": 4, "patience": 2, "batch_size": 256,
}  # fmt: skip
QUICK_RANKER_OVERRIDES: dict[str, Any] = {
    "max_trees": 30, "early_stopping_rounds": 10, "folds": 3,
}  # fmt: skip
DRIFT_BASELINE_USERS = 2000  # users whose served features make the drift baseline


@dataclass
class TrainReport:
    """What `train_all` produced: stored tags, metrics per model and seconds per step."""

    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


class _Timer:
    def __init__(self, report: TrainReport, name: str) -> None:
        self.report, self.name = report, name

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.report.seconds[self.name] = round(time.perf_counter() - self.start, 2)


def prepare(data_dir: str | Path) -> tuple[Dataset, Split]:
    """Load a MovieLens directory and split it by the protocol."""
    dataset = load_movielens(data_dir)
    return dataset, temporal_split(dataset.interactions)


def evaluate_baselines(dataset: Dataset, split: Split, report: TrainReport) -> None:
    """Most-popular and EASE^R (λ tuned on validation, refitted on train) on the test window."""
    item_ids = dataset.items["item_id"].to_numpy(np.int64)
    n_items = len(item_ids)
    with _Timer(report, "popular"):
        popular = PopularRecommender().fit(split.train, item_ids)
        report.metrics["popular"] = evaluate_recommender(popular, split.test, n_items)
    with _Timer(report, "ease"):
        lam, _ = tune_ease(split.fit, split.valid, item_ids)
        ease = EASERecommender(lam).fit(split.train, item_ids)
        report.metrics["ease"] = evaluate_recommender(ease, split.test, n_items)
        report.info["ease_lambda"] = lam


def train_all(
    data_dir: str | Path,
    seed: int = 42,
    stages: tuple[str, ...] = ("retrieval", "ranking"),
    baselines: bool = True,
    quick: bool = False,
    progress: bool = True,
) -> TrainReport:
    """Train the requested stages on `data_dir` and store every artifact.

    Args:
        data_dir: a MovieLens directory of any supported format.
        seed: seed for every random choice.
        stages: "retrieval" alone, or "retrieval" and "ranking" (ranking needs a retriever).
        baselines: also evaluate most-popular and EASE^R on the same split.
        quick: small models and few epochs (tests and smoke runs), not for real use.
        progress: show progress bars.

    Returns:
        The stored tags, test metrics of every model, and timings.
    """
    from models.retriever import Retriever
    from models.train_ranker import RankerTrainConfig, train_ranker
    from models.train_retrieval import train_retriever
    from models.two_stage import TwoStageRecommender
    from models.two_tower import TwoTowerConfig

    tower_config = TwoTowerConfig(**(QUICK_TOWER_OVERRIDES if quick else {}))
    ranker_config = RankerTrainConfig(**(QUICK_RANKER_OVERRIDES if quick else {}))

    report = TrainReport()
    with _Timer(report, "load+split"):
        dataset, split = prepare(data_dir)
    fingerprint = dataset_fingerprint(dataset)
    n_items = len(dataset.items)
    report.info.update(dataset=dataset.format.value, fingerprint=fingerprint)
    with _Timer(report, "features"):
        snapshot_fit = build_snapshot(dataset, split.fit)
        snapshot_serve = build_snapshot(dataset, split.train)
        report.tags["feature-snapshot"] = artifacts.save_snapshot(
            snapshot_serve, labels={"dataset": dataset.format.value}
        )
    if baselines:
        evaluate_baselines(dataset, split, report)

    def metadata(validation: dict[str, float], test: dict[str, float]) -> dict[str, Any]:
        return artifacts.base_metadata(
            snapshot_serve.version,
            dataset_fingerprint=fingerprint,
            train_feature_version=snapshot_fit.version,
            validation=validation,
            test=test,
        )

    retriever: Retriever | None = None
    if "retrieval" in stages:
        with _Timer(report, "retrieval"):
            retriever, fit_metrics = train_retriever(
                dataset, split, snapshot_fit, tower_config, seed, progress=progress
            )
            serving = retriever.with_history(split.train)
            report.metrics["retrieval only"] = evaluate_recommender(serving, split.test, n_items)
            report.info["retrieval_validation"] = fit_metrics
            report.tags["two-tower"] = artifacts.save_two_tower(
                serving, metadata(fit_metrics, report.metrics["retrieval only"])
            )
    if "ranking" in stages:
        if retriever is None:
            retriever = artifacts.load_two_tower("two-tower:latest", split.fit)
        with _Timer(report, "ranking"):
            ranker, rank_metrics = train_ranker(
                retriever.with_history(split.fit),
                MemoryFeatureStore(snapshot_fit),
                split,
                ranker_config,
                seed=seed,
            )
            two_stage = TwoStageRecommender(
                retriever.with_history(split.train), ranker, MemoryFeatureStore(snapshot_serve)
            )
            report.metrics["two-stage"] = evaluate_recommender(two_stage, split.test, n_items)
            report.info["ranking_validation"] = rank_metrics
            report.tags["drift-reference"] = save_drift_baseline(
                two_stage, split, snapshot_serve.version, seed
            )
            report.tags["ranker"] = artifacts.save_ranker(
                ranker, metadata(rank_metrics, report.metrics["two-stage"])
            )
    return report


def serving_features(model: TwoStageRecommender, user_ids: np.ndarray) -> np.ndarray:
    """The ranker's (rows, F) feature matrices for `user_ids`, exactly as serving builds them."""
    results = (model.rank_user(int(user_id), model.candidates) for user_id in user_ids)
    return np.concatenate([r.features for r in results if r is not None and r.features is not None])


def save_drift_baseline(
    model: TwoStageRecommender, split: Split, feature_version: str, seed: int
) -> str:
    """Store the drift monitor's baseline: features served to (a sample of) the known users."""
    from models.ranker import FEATURE_NAMES
    from monitoring.baseline import Baseline, reference_sample

    users = np.unique(split.train["user_id"].to_numpy(np.int64))
    rng = np.random.default_rng(seed)
    if len(users) > DRIFT_BASELINE_USERS:
        users = np.sort(rng.choice(users, DRIFT_BASELINE_USERS, replace=False))
    features = serving_features(model, users)
    categorical = [c for c in DEMOGRAPHIC_COLUMNS if c in FEATURE_NAMES]
    baseline = Baseline.from_matrix(features, FEATURE_NAMES, categorical=categorical)
    sample = reference_sample(features, FEATURE_NAMES, seed=seed)
    return artifacts.save_drift_reference(baseline, sample, feature_version, users=len(users))


def models_exist(*tags: str) -> bool:
    """Whether every tag resolves in the model store."""
    return all(artifacts.model_exists(tag) for tag in tags)


def evaluate_all(
    data_dir: str | Path,
    two_tower_tag: str = "two-tower:latest",
    ranker_tag: str = "ranker:latest",
) -> TrainReport:
    """Baselines plus the stored models, all on the protocol's test window of `data_dir`.

    Stored models are evaluated only when they were trained on this very dataset (same
    fingerprint); otherwise their rows are left out and `info["skipped"]` says why.
    """
    from models.two_stage import TwoStageRecommender

    report = TrainReport()
    with _Timer(report, "load+split"):
        dataset, split = prepare(data_dir)
    fingerprint = dataset_fingerprint(dataset)
    report.info.update(dataset=dataset.format.value, fingerprint=fingerprint)
    evaluate_baselines(dataset, split, report)
    if not models_exist(two_tower_tag):
        report.info["skipped"] = f"no {two_tower_tag} in the model store: run `recsys train`"
        return report
    stored = artifacts.get_model(two_tower_tag).info.metadata.get("dataset_fingerprint")
    if stored != fingerprint:
        report.info["skipped"] = f"{two_tower_tag} was trained on other data ({stored})"
        return report
    n_items = len(dataset.items)
    with _Timer(report, "retrieval"):
        retriever = artifacts.load_two_tower(two_tower_tag, split.train)
        report.metrics["retrieval only"] = evaluate_recommender(retriever, split.test, n_items)
    if models_exist(ranker_tag):
        with _Timer(report, "two-stage"):
            store = MemoryFeatureStore(build_snapshot(dataset, split.train))
            ranker = artifacts.load_ranker(ranker_tag)
            two_stage = TwoStageRecommender(retriever, ranker, store)
            report.metrics["two-stage"] = evaluate_recommender(two_stage, split.test, n_items)
    return report
