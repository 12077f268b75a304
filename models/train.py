"""Training is one recipe (`apply_recipe`) applied at a time cut; deployment and backtest differ
only in the cut.

The recipe, given the interactions ``known`` at the cut (`data.split.Windows`; no stage ever
learns from a later window than it is judged on):

- ``fit``   (``known`` minus each user's last window): the retriever's training data, and the
  feature period of the ranker's training set (snapshot_fit).
- ``valid`` (each user's last window of ``known``): early stopping of the retriever; the LABELS of
  the ranker's training set (candidates come from the retriever with fit-period histories,
  features from snapshot_fit).
- ``known``: the serving state: user histories, seen items, the served feature snapshot, the
  popularity fallback and the drift baseline.

`train_all` (``recsys train``) deploys: the cut is the end of the data, so ``known`` is all of
it and the service has seen every rating the user gave. `evaluate_all` (``recsys evaluate``) is
the backtest: the same recipe one step earlier (``known`` = the protocol's ``train``), scored on
the held-out ``test`` window beside most-popular and EASE^R. Backtest models stay in memory:
only deployment writes to the model store, with the label ``purpose=deploy``.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from data.features import DEMOGRAPHIC_COLUMNS, build_snapshot, dataset_fingerprint
from data.movielens import load_movielens
from data.schema import Dataset
from data.snapshot import FeatureSnapshot
from data.split import Split, Windows, recipe_windows, temporal_split
from feature_store.event_sources import merge_events
from feature_store.memory_store import MemoryFeatureStore
from models import artifacts
from models.baselines import EASERecommender, PopularRecommender, tune_ease
from models.distributed import current_rank
from models.evaluation import (
    BatchRecommender,
    evaluate_recommender,
    few_ratings_recall,
    recall_at,
)

if TYPE_CHECKING:
    from feature_store.events import RatingEvent
    from models.candidates import CandidateGenerator
    from models.config import RetrievalSettings
    from models.ranker import Ranker
    from models.retriever import Retriever
    from models.train_sources import SourceParams
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
DEPLOY_LABELS = {"purpose": "deploy"}  # what `recsys train` stores; the backtest stores nothing


@dataclass
class TrainReport:
    """What `train_all` produced: stored tags, metrics per model, seconds and memory per step."""

    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    """The process's peak resident memory when each step ended (it only grows)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: what `recsys train --report FILE.json` writes."""
        return {
            "tags": self.tags,
            "validation": self.metrics,
            "seconds": self.seconds,
            "total_seconds": round(sum(self.seconds.values()), 2),
            "peak_rss_mb": self.peak_rss_mb,
            "max_peak_rss_mb": max(self.peak_rss_mb.values(), default=peak_rss_mb()),
            "info": self.info,
        }


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, in MiB (Linux reports KiB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class _Timer:
    def __init__(self, report: TrainReport, name: str) -> None:
        self.report, self.name = report, name

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.report.seconds[self.name] = round(time.perf_counter() - self.start, 2)
        self.report.peak_rss_mb[self.name] = peak_rss_mb()


def prepare(data_dir: str | Path) -> tuple[Dataset, Split]:
    """Load a MovieLens directory and split it by the protocol."""
    dataset = load_movielens(data_dir)
    return dataset, temporal_split(dataset.interactions)


@dataclass
class Recipe:
    """What the recipe trained at one time cut, serving everything known at the cut."""

    windows: Windows
    snapshot: FeatureSnapshot  # features of `windows.known`: the served snapshot
    snapshot_fit: FeatureSnapshot  # features of `windows.fit`: the ranker's training features
    retriever: Retriever | None = None  # serving `windows.known` histories
    generator: CandidateGenerator | None = None  # every source, serving `windows.known`
    ranker: Ranker | None = None
    validation: dict[str, dict[str, float]] = field(default_factory=dict)
    source_params: SourceParams | None = None

    def two_stage(self) -> TwoStageRecommender:
        """Fused candidates then ranking with the served histories and snapshot (as served)."""
        from models.two_stage import TwoStageRecommender

        if self.generator is None or self.ranker is None:
            raise ValueError("the recipe trained no candidate generator + ranker pair")
        return TwoStageRecommender(self.generator, self.ranker, MemoryFeatureStore(self.snapshot))


def apply_recipe(
    dataset: Dataset,
    windows: Windows,
    report: TrainReport,
    seed: int = 42,
    stages: tuple[str, ...] = ("retrieval", "ranking"),
    quick: bool = False,
    progress: bool = True,
    retrieval: RetrievalSettings | None = None,
    device: str = "auto",
) -> Recipe:
    """Train the requested stages at the cut that `windows` describe.

    Args:
        dataset: the catalog and demographics (its interactions are not read: `windows` are).
        windows: what is known at the cut and its fit / valid windows.
        report: receives timings.
        seed: seed for every random choice.
        stages: "retrieval" and/or "ranking"; ranking alone uses the stored `two-tower:latest`.
        quick: small models and few epochs (tests and smoke runs), not for real use.
        progress: show progress bars.
        retrieval: the candidate sources in force and the fused cap (default settings).
        device: where the two-tower model trains (`RECSYS_DEVICE`: auto, cpu or cuda).

    Returns:
        The trained stages serving `windows.known`, with their validation metrics. Under
        torchrun, ranks other than 0 return after the two-tower training (no retriever).
    """
    from models.candidates import CandidateGenerator
    from models.config import RetrievalSettings
    from models.train_ranker import RankerTrainConfig, train_ranker
    from models.train_retrieval import train_retriever
    from models.train_sources import build_sources, tune_sources
    from models.two_tower import TwoTowerConfig

    fusion = retrieval or RetrievalSettings()
    quotas = fusion.source_quotas()

    with _Timer(report, "features"):
        recipe = Recipe(
            windows,
            snapshot=build_snapshot(dataset, windows.known),
            snapshot_fit=build_snapshot(dataset, windows.fit),
        )
    retriever: Retriever | None = None
    if "retrieval" in stages:
        with _Timer(report, "retrieval"):
            config = TwoTowerConfig(**(QUICK_TOWER_OVERRIDES if quick else {}))
            retriever, recipe.validation["retrieval"] = train_retriever(
                recipe.snapshot_fit, windows, config, seed, progress=progress, device=device
            )
        if retriever is None:  # another rank of a distributed job: rank 0 goes on
            return recipe
    if "ranking" in stages and retriever is None:
        retriever = artifacts.load_two_tower("two-tower:latest", windows.fit)
    if retriever is None:
        return recipe
    with _Timer(report, "sources"):
        params = tune_sources(dataset, windows, quick)
        recipe.source_params = params
        recipe.validation["sources"] = {
            f"{name} {metric}": value
            for name, metrics in params.validation.items()
            for metric, value in metrics.items()
        }
        served = build_sources(dataset, windows.known, params)
    if "ranking" in stages:
        with _Timer(report, "ranking"):
            generator_fit = CandidateGenerator(
                retriever.with_history(windows.fit),
                build_sources(dataset, windows.fit, params),
                quotas,
                fusion.fused_max,
            )
            recipe.ranker, recipe.validation["ranking"] = train_ranker(
                generator_fit,
                MemoryFeatureStore(recipe.snapshot_fit),
                windows.valid,
                RankerTrainConfig(**(QUICK_RANKER_OVERRIDES if quick else {})),
                seed=seed,
            )
    recipe.retriever = retriever.with_history(windows.known)
    recipe.generator = CandidateGenerator(recipe.retriever, served, quotas, fusion.fused_max)
    return recipe


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
    quick: bool = False,
    progress: bool = True,
    events: list[RatingEvent] | None = None,
    device: str = "auto",
) -> TrainReport:
    """Train for deployment on all of `data_dir` and store every artifact (`recsys train`).

    The recipe's cut is the end of the data: the models learn from every window but each user's
    last one (early stopping and the ranker's labels come from it), and the serving state is
    everything, so the service knows every rating it was given.

    Args:
        data_dir: a MovieLens directory of any supported format.
        seed: seed for every random choice.
        stages: "retrieval" alone, or "retrieval" and "ranking" (ranking needs a retriever).
        quick: small models and few epochs (tests and smoke runs), not for real use.
        progress: show progress bars.
        events: ratings the service received since (`recsys train --events`), merged into the
            data: deduplicated by user, item and timestamp (see `merge_events`).
        device: where the two-tower model trains (`RECSYS_DEVICE`: auto, cpu or cuda).

    Under torchrun (`recsys train --nproc N`, `models.distributed`) every process runs this;
    the two-tower model trains data-parallel and rank 0 alone trains the rest and stores.

    Returns:
        The stored tags, validation metrics of every model, and timings (rank 0's; the other
        ranks' reports hold their retrieval step only).
    """
    report = TrainReport()
    with _Timer(report, "load"):
        dataset = load_movielens(data_dir)
        if events is not None:
            dataset, added = merge_events(dataset, events)
            report.info["events"] = {"given": len(events), "merged": added}
        windows = recipe_windows(dataset.interactions)
    fingerprint = dataset_fingerprint(dataset)
    report.info.update(
        dataset=dataset.format.value, fingerprint=fingerprint, **_window_info(windows)
    )
    recipe = apply_recipe(dataset, windows, report, seed, stages, quick, progress, device=device)
    if not current_rank().main:
        report.metrics["retrieval (validation)"] = recipe.validation.get("retrieval", {})
        return report
    labels = {**DEPLOY_LABELS, "dataset": dataset.format.value}
    report.tags["feature-snapshot"] = artifacts.save_snapshot(recipe.snapshot, labels=labels)

    def metadata(validation: dict[str, float]) -> dict[str, Any]:
        return artifacts.base_metadata(
            recipe.snapshot.version,
            dataset_fingerprint=fingerprint,
            train_feature_version=recipe.snapshot_fit.version,
            validation=validation,
            **_window_info(windows),
        )

    if recipe.retriever is not None and "retrieval" in stages:
        validation = recipe.validation["retrieval"]
        report.metrics["retrieval (validation)"] = validation
        report.tags["two-tower"] = artifacts.save_two_tower(
            recipe.retriever, metadata(validation), labels=labels
        )
    if recipe.generator is not None:
        from models.candidates import source_models

        validation = recipe.validation.get("sources", {})
        for kind, (arrays, params) in source_models(recipe.generator.sources).items():
            report.tags[artifacts.SOURCE_MODELS[kind]] = artifacts.save_source(
                kind, arrays, params, metadata(validation), labels=labels
            )
    if recipe.ranker is not None:
        with _Timer(report, "drift baseline"):
            report.tags["drift-reference"] = save_drift_baseline(
                recipe.two_stage(), windows.known, recipe.snapshot.version, seed, labels
            )
        validation = recipe.validation["ranking"]
        report.metrics["ranking (validation)"] = validation
        report.tags["ranker"] = artifacts.save_ranker(
            recipe.ranker, metadata(validation), labels=labels
        )
    return report


def _window_info(windows: Windows) -> dict[str, Any]:
    """Sizes and time range of the recipe's windows (recorded with every deployed model)."""
    known = windows.known["timestamp"]
    return {
        "known_ratings": len(windows.known),
        "fit_ratings": len(windows.fit),
        "valid_ratings": len(windows.valid),
        "known_until": int(known.max()) if len(known) else None,
    }


def serving_features(model: TwoStageRecommender, user_ids: np.ndarray) -> np.ndarray:
    """The ranker's (rows, F + 1) matrices for `user_ids`, exactly as serving builds them: every
    feature, then the ranker's score of the row (`models.ranker.PREDICTION_COLUMNS`)."""
    results = (model.rank_user(int(user_id), model.candidates) for user_id in user_ids)
    return np.concatenate(
        [
            np.column_stack([r.features, r.all_scores])
            for r in results
            if r is not None and r.features is not None and r.all_scores is not None
        ]
    )


def save_drift_baseline(
    model: TwoStageRecommender,
    known: pd.DataFrame,
    feature_version: str,
    seed: int,
    labels: dict[str, str] | None = None,
) -> str:
    """Store the drift monitor's baseline: features served to (a sample of) the known users."""
    from models.ranker import FEATURE_NAMES, PREDICTION_COLUMNS, USER_FEATURES
    from monitoring.baseline import Baseline, reference_sample

    users = np.unique(known["user_id"].to_numpy(np.int64))
    rng = np.random.default_rng(seed)
    if len(users) > DRIFT_BASELINE_USERS:
        users = np.sort(rng.choice(users, DRIFT_BASELINE_USERS, replace=False))
    features = serving_features(model, users)
    categorical = [c for c in DEMOGRAPHIC_COLUMNS if c in FEATURE_NAMES]
    names = [*FEATURE_NAMES, *PREDICTION_COLUMNS]
    baseline = Baseline.from_matrix(
        features, names, categorical=categorical, per_request=USER_FEATURES
    )
    sample = reference_sample(features, names, seed=seed)
    return artifacts.save_drift_reference(
        baseline, sample, feature_version, labels=labels, users=len(users)
    )


def models_exist(*tags: str) -> bool:
    """Whether every tag resolves in the model store."""
    return all(artifacts.model_exists(tag) for tag in tags)


def evaluate_all(
    data_dir: str | Path,
    seed: int = 42,
    quick: bool = False,
    progress: bool = True,
) -> TrainReport:
    """The backtest (`recsys evaluate`): the deployment recipe one step earlier, on `test`.

    The recipe is applied at the protocol's train/test cut (`Split.windows`), so the models and
    the serving state are what `recsys train` would have deployed on `split.train`; they are
    scored on `split.test` beside most-popular and EASE^R. Nothing is stored.
    """
    report = TrainReport()
    with _Timer(report, "load+split"):
        dataset, split = prepare(data_dir)
    fingerprint = dataset_fingerprint(dataset)
    report.info.update(dataset=dataset.format.value, fingerprint=fingerprint)
    evaluate_baselines(dataset, split, report)
    recipe = apply_recipe(dataset, split.windows, report, seed, quick=quick, progress=progress)
    assert recipe.retriever is not None  # both stages were asked for
    n_items = len(dataset.items)
    from models.candidates import SourceRecommender

    generator = recipe.generator
    assert generator is not None
    with _Timer(report, "scoring"):
        models: dict[str, BatchRecommender] = {
            f"source: {name}": SourceRecommender(generator, name) for name in generator.names
        }
        models["fused candidates"] = generator
        models["two-stage"] = recipe.two_stage()
        few: dict[str, float] = {}
        for name, model in models.items():
            report.metrics[name] = evaluate_recommender(model, split.test, n_items)
            few[name], pairs = few_ratings_recall(model, split.test, split.train)
        report.metrics["fused candidates"]["recall@200"] = recall_at(
            generator, split.test, generator.fused_max
        )
        report.info["recall@100 of test movies with < 5 training ratings"] = {
            "pairs": pairs,
            **{name: round(value, 4) for name, value in few.items()},
        }
    report.info["validation"] = recipe.validation
    return report
