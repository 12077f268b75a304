"""Second stage: features per (user, candidate) and XGBoost learning-to-rank scoring.

The same `FeatureAssembler.assemble` builds the training set (see `models.train_ranker`) and the
features of every request, from rows read through the `FeatureStore` interface, so training sees
exactly what serving sees. Everything on the request path is numpy (no pandas):

- user features (snapshot columns): activity, rating mean/std, recency, demographics codes;
- item features (snapshot columns): counts, smoothed mean, popularity rank, trend, year, genres;
- cross features: genre affinity · item genres (dot, max, mean), retrieval score, rank, gap to
  the best candidate and z-score within the request, user mean - item mean, item age at the
  user's last activity, demographics × genre lift (a small table learned from the training
  users' feature rows and stored with the model), popularity relative to user activity and to
  the other candidates.

Unknown retrieval scores (a caller that sends none) are NaN, which XGBoost treats as missing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import xgboost as xgb

from data.errors import ArtifactError
from data.features import DEMOGRAPHIC_COLUMNS, GENRE_SLUGS, ITEM_COLUMNS, USER_COLUMNS
from data.schema import AGE_BUCKETS
from feature_store.base import FeatureRows, FeatureStore
from models.config import RankingSettings
from models.sources import SOURCE_FEATURES

logger = logging.getLogger(__name__)

USER_FEATURES: tuple[str, ...] = (
    "user_count",
    "user_mean_rating",
    "user_std_rating",
    "user_days_since_last",
    "user_days_active",
    *DEMOGRAPHIC_COLUMNS,
)
ITEM_FEATURES: tuple[str, ...] = ITEM_COLUMNS
CROSS_FEATURES: tuple[str, ...] = (
    "retrieval_score",
    "retrieval_rank",
    "retrieval_gap",
    "retrieval_z",
    "genre_dot",
    "genre_max",
    "genre_mean",
    "item_n_genres",
    "mean_diff",
    "item_age_at_last",
    "demo_genre_lift",
    "pop_vs_activity",
    "pop_in_candidates",
    "item_trend",
)
FEATURE_NAMES: tuple[str, ...] = (
    *USER_FEATURES,
    *ITEM_FEATURES,
    *CROSS_FEATURES,
    *SOURCE_FEATURES,
)
N_GENDERS = 3  # codes 0 = unknown, 1 = M, 2 = F (data.features.encode_demographics)
N_AGES = len(AGE_BUCKETS) + 1  # code 0 = unknown
DEMO_SMOOTHING = 200.0  # pseudo-ratings at the global genre mix added to each demographic group
EXPLAIN_TOP = 3
# Model outputs monitored for drift beside the features (columns appended to the matrix).
PREDICTION_COLUMNS: tuple[str, ...] = ("ranker_score",)


@dataclass(frozen=True)
class RankResult:
    """The best `k` candidates, best first.

    Attributes:
        item_ids: (k,) int64 item ids.
        scores: (k,) float32 ranker margins (higher is better).
        contributions: with `explain=True`, per item the top three (feature, contribution)
            pairs by absolute value (XGBoost SHAP values); else None.
        features: (N, F) float32 matrix of every scored candidate (what drift monitoring sees).
        timings_ms: milliseconds spent reading features, assembling them and scoring.
        positions: (k,) where each returned item was in the candidate list.
        all_scores: (N,) the margin of every scored candidate, aligned with `features` rows
            (what prediction-drift monitoring sees).
    """

    item_ids: np.ndarray
    scores: np.ndarray
    contributions: list[list[tuple[str, float]]] | None = None
    features: np.ndarray | None = None
    timings_ms: dict[str, float] | None = None
    positions: np.ndarray | None = None
    all_scores: np.ndarray | None = None


def demographic_genre_lift(users: np.ndarray, user_columns: tuple[str, ...]) -> np.ndarray:
    """Genre preference lift per (gender, age bucket) group from user feature rows.

    Each group's genre mix is its members' genre affinities weighted by their rating counts,
    smoothed towards the global mix; the lift is that mix divided by the global one.

    Args:
        users: (U, Fu) user rows in `user_columns` order (the training users).
        user_columns: the store's user column order.

    Returns:
        (N_GENDERS * N_AGES, G) float32 table; row = gender code * N_AGES + age code.
    """
    col = {name: j for j, name in enumerate(user_columns)}
    aff = users[:, [col[f"user_aff_{g}"] for g in GENRE_SLUGS]].astype(np.float64)
    count = users[:, col["user_count"]].astype(np.float64)
    group = _group_index(users[:, col["user_gender"]], users[:, col["user_age_bucket"]])
    weighted = np.zeros((N_GENDERS * N_AGES, aff.shape[1]))
    np.add.at(weighted, group, aff * count[:, None])
    totals = np.bincount(group, weights=count, minlength=N_GENDERS * N_AGES)
    global_mix = weighted.sum(axis=0) / max(totals.sum(), 1.0)
    mix = (weighted + DEMO_SMOOTHING * global_mix) / (totals[:, None] + DEMO_SMOOTHING)
    return (mix / np.maximum(global_mix, 1e-9)).astype(np.float32)


def _group_index(gender: np.ndarray, age: np.ndarray) -> np.ndarray:
    g = np.clip(np.nan_to_num(gender), 0, N_GENDERS - 1).astype(np.int64)
    a = np.clip(np.nan_to_num(age), 0, N_AGES - 1).astype(np.int64)
    return g * N_AGES + a


class FeatureAssembler:
    """Turns one user's row and N candidates' rows into the (N, F) ranker matrix."""

    def __init__(
        self, user_columns: tuple[str, ...], item_columns: tuple[str, ...], demo_lift: np.ndarray
    ) -> None:
        missing = [c for c in USER_COLUMNS if c not in user_columns]
        missing += [c for c in ITEM_COLUMNS if c not in item_columns]
        if missing:
            raise ArtifactError("feature store", "snapshot columns incl. ranker inputs", missing)
        self.user_columns = tuple(user_columns)
        self.item_columns = tuple(item_columns)
        self.demo_lift = np.asarray(demo_lift, dtype=np.float32)
        ucol = {name: j for j, name in enumerate(user_columns)}
        icol = {name: j for j, name in enumerate(item_columns)}
        self._user_idx = np.array([ucol[c] for c in USER_FEATURES])
        self._item_idx = np.array([icol[c] for c in ITEM_FEATURES])
        self._aff = np.array([ucol[f"user_aff_{g}"] for g in GENRE_SLUGS])
        self._genres = np.array([icol[f"item_genre_{g}"] for g in GENRE_SLUGS])
        self._u = ucol
        self._i = icol
        self._n_user = len(USER_FEATURES)
        self._n_item = len(ITEM_FEATURES)

    def _user_group(self, user: np.ndarray) -> int:
        """Row of `demo_lift` for the user (scalar math: numpy on scalars costs microseconds)."""
        gender, age = float(user[self._u["user_gender"]]), float(user[self._u["user_age_bucket"]])
        g = min(max(int(gender), 0), N_GENDERS - 1) if gender == gender else 0  # NaN -> unknown
        a = min(max(int(age), 0), N_AGES - 1) if age == age else 0
        return g * N_AGES + a

    def assemble(
        self,
        user: np.ndarray,
        items: np.ndarray,
        retrieval_scores: np.ndarray | None,
        sources: np.ndarray | None = None,
    ) -> np.ndarray:
        """Features of N candidates for one user.

        Args:
            user: (Fu,) the user's row in the store's column order.
            items: (N, Fi) the candidates' rows in the store's column order.
            retrieval_scores: (N,) two-tower scores in candidate order, or None (missing).
            sources: (N, len(SOURCE_FEATURES)) each candidate's rank and score in each source
                (`models.sources.source_features`), or None (missing).

        Returns:
            (N, len(FEATURE_NAMES)) float32, columns in `FEATURE_NAMES` order.
        """
        n = items.shape[0]
        out = np.empty((n, len(FEATURE_NAMES)), dtype=np.float32)
        nu, ni = self._n_user, self._n_item
        out[:, :nu] = user[self._user_idx]
        out[:, nu : nu + ni] = items[:, self._item_idx]
        nc = len(CROSS_FEATURES)
        cross = out[:, nu + ni : nu + ni + nc]  # (N, C) view
        out[:, nu + ni + nc :] = np.nan if sources is None else sources
        u, i = self._u, self._i

        if retrieval_scores is None:
            cross[:, 0] = np.nan
            cross[:, 2:4] = np.nan
        else:
            s = np.asarray(retrieval_scores, dtype=np.float32)
            cross[:, 0] = s
            if n:
                centred = s - float(s.sum()) / n  # plain sums: np.mean/np.std cost ~10 µs each
                cross[:, 2] = s.max() - s
                cross[:, 3] = centred / (np.sqrt(float(centred @ centred) / n) + 1e-6)
        cross[:, 1] = np.arange(n, dtype=np.float32)

        genres = items[:, self._genres]  # (N, G)
        weighted = genres * user[self._aff]  # (N, G)
        n_genres = genres.sum(axis=1)
        cross[:, 4] = weighted.sum(axis=1)
        cross[:, 5] = weighted.max(axis=1) if n else 0.0
        cross[:, 6] = cross[:, 4] / np.maximum(n_genres, 1.0)
        cross[:, 7] = n_genres
        cross[:, 8] = user[u["user_mean_rating"]] - items[:, i["item_mean_rating"]]
        cross[:, 9] = user[u["user_last_year"]] - items[:, i["item_year"]]
        cross[:, 10] = genres @ self.demo_lift[self._user_group(user)] / np.maximum(n_genres, 1.0)
        log_pop = np.log1p(items[:, i["item_count"]])
        cross[:, 11] = log_pop - np.log1p(user[u["user_count"]])
        cross[:, 12] = log_pop - log_pop.mean() if n else 0.0
        cross[:, 13] = items[:, i["item_recent_count"]] / (items[:, i["item_count"]] + 1.0)
        return out


class Ranker:
    """An XGBoost ranking booster plus the feature assembly it was trained with."""

    def __init__(
        self,
        booster: xgb.Booster,
        assembler: FeatureAssembler,
        settings: RankingSettings | None = None,
    ) -> None:
        self.booster = booster
        self.assembler = assembler
        self.settings = settings or RankingSettings()
        # Pinned threads: 2 threads on a busy 2-core box are ~30x slower (DESIGN.md).
        self.booster.set_param({"nthread": self.settings.nthread})

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Ordered feature names of the model's input matrix."""
        return FEATURE_NAMES

    @property
    def n_trees(self) -> int:
        """Boosting rounds in the booster."""
        return self.booster.num_boosted_rounds()

    def spec(self) -> dict[str, Any]:
        """Everything besides the booster needed to rebuild this ranker (JSON-safe)."""
        return {
            "feature_names": list(FEATURE_NAMES),
            "user_columns": list(self.assembler.user_columns),
            "item_columns": list(self.assembler.item_columns),
            "demo_lift": self.assembler.demo_lift.tolist(),
        }

    def features(
        self,
        rows: FeatureRows,
        retrieval_scores: np.ndarray | None,
        sources: np.ndarray | None = None,
    ) -> np.ndarray:
        """(N, F) matrix for one request's feature rows."""
        return self.assembler.assemble(rows.user, rows.items, retrieval_scores, sources)

    def score(self, features: np.ndarray) -> np.ndarray:
        """(N,) margins for an (N, F) matrix (inplace_predict, no DMatrix)."""
        if features.shape[0] == 0:
            return np.empty(0, dtype=np.float32)
        return np.asarray(self.booster.inplace_predict(features), dtype=np.float32)

    def contributions(self, features: np.ndarray) -> np.ndarray:
        """(N, F + 1) SHAP contributions per feature, bias last; each row sums to the margin."""
        matrix = xgb.DMatrix(features, feature_names=list(FEATURE_NAMES), nthread=1)
        return np.asarray(self.booster.predict(matrix, pred_contribs=True), dtype=np.float32)

    def check_store(self, store: FeatureStore) -> None:
        """Raise `ArtifactError` when `store` serves other columns than the model was trained on."""
        if tuple(store.user_columns) != self.assembler.user_columns:
            raise ArtifactError("ranker", self.assembler.user_columns, store.user_columns)
        if tuple(store.item_columns) != self.assembler.item_columns:
            raise ArtifactError("ranker", self.assembler.item_columns, store.item_columns)

    def rank(
        self,
        user_id: int,
        item_ids: np.ndarray,
        retrieval_scores: np.ndarray | None,
        store: FeatureStore,
        k: int = 10,
        explain: bool = False,
        sources: np.ndarray | None = None,
    ) -> RankResult:
        """Score `item_ids` for `user_id` and return the best `k`.

        Args:
            user_id: MovieLens user id (unknown users get the store's default row).
            item_ids: (N,) candidates, in retrieval order.
            retrieval_scores: (N,) first-stage scores aligned with `item_ids`, or None.
            store: where feature rows come from (column order must match training).
            k: how many to return (at most N).
            explain: also return the top three feature contributions per returned item.
            sources: (N, len(SOURCE_FEATURES)) candidate-source features, or None.
        """
        start = time.perf_counter()
        item_ids = np.asarray(item_ids, dtype=np.int64)
        rows = store.read(int(user_id), item_ids)
        read = time.perf_counter()
        features = self.features(rows, retrieval_scores, sources)
        assembled = time.perf_counter()
        scores = self.score(features)
        top = np.argsort(-scores, kind="stable")[: max(k, 0)]
        explained = self._top_contributions(features[top]) if explain else None
        timings = {
            "features": (assembled - start) * 1e3,
            "read": (read - start) * 1e3,
            "ranking": (time.perf_counter() - assembled) * 1e3,
        }
        return RankResult(item_ids[top], scores[top], explained, features, timings, top, scores)

    def _top_contributions(self, features: np.ndarray) -> list[list[tuple[str, float]]]:
        contrib = self.contributions(features)[:, :-1]  # drop the bias column
        order = np.argsort(-np.abs(contrib), axis=1)[:, :EXPLAIN_TOP]
        return [
            [(FEATURE_NAMES[j], float(contrib[row, j])) for j in order[row]]
            for row in range(len(contrib))
        ]

    @classmethod
    def from_spec(
        cls, booster: xgb.Booster, spec: dict[str, Any], settings: RankingSettings | None = None
    ) -> Ranker:
        """Rebuild a ranker from a booster and `spec()` output.

        Raises:
            ArtifactError: the stored feature list differs from this code's `FEATURE_NAMES`.
        """
        if tuple(spec["feature_names"]) != FEATURE_NAMES:
            raise ArtifactError("ranker", list(FEATURE_NAMES), spec["feature_names"])
        lift = np.asarray(spec["demo_lift"], dtype=np.float32)
        assembler = FeatureAssembler(tuple(spec["user_columns"]), tuple(spec["item_columns"]), lift)
        return cls(booster, assembler, settings)
