"""The two-tower model's torch-free side: configuration, item inputs, the numpy user tower.

What serving needs of the model (models/two_tower.py holds the torch modules and training
needs both): `TwoTowerConfig`, the item tower's inputs, and `UserTowerArrays`, the user tower in
numpy for the single-query serving path (torch eager costs ~46 µs per call here, numpy ~8 µs;
see DESIGN.md). Importing this module does not import torch, so a served retriever starts
without it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from data.features import DEMOGRAPHIC_COLUMNS, GENRE_SLUGS

# Vocabulary sizes of the demographic codes from `data.features.encode_demographics`
# (0 = unknown): age bucket 1..7, gender 1..2, occupation 1..21, zip region 1..10.
DEMOGRAPHIC_SIZES = (8, 3, 22, 11)
YEAR_MIN, YEAR_STEP, YEAR_BUCKETS = 1920, 5, 22  # bucket 0 = unknown, 1 = before 1920, ...
GENRE_COLUMNS = tuple(f"item_genre_{g}" for g in GENRE_SLUGS)


@dataclass(frozen=True)
class TwoTowerConfig:
    """Architecture and training hyper-parameters (defaults are CPU-friendly)."""

    dim: int = 64
    """Output embedding size of both towers."""
    hidden: int = 128
    """Hidden layer width of both towers' MLPs."""
    history_len: int = 3
    """Most recent history items mean-pooled into the user query.

    Recency wins. Tried in the backtest (`recsys evaluate`'s recipe): 200, 50, 20, 10, 5 and 3
    items at dim/hidden 128/256, 64/128 and 32/64. 3 items at 64/128 had the best validation
    Recall@100 on ML-100K and ml-latest-small (0.657 and 0.423; 200 items at 128/256: 0.654 and
    0.423), so validation hardly separates them; the held-out test window does: Recall@100
    0.532 -> 0.567 on ML-100K and 0.313 -> 0.351 on ml-latest-small.
    """
    pop_buckets: int = 10
    """Popularity-rank quantile buckets of the item tower (never-rated items: the last one)."""
    rare_item_min_count: int = 3
    """Items with fewer training ratings get no id embedding (content only)."""
    item_id_dropout: float = 0.1
    """Probability of zeroing an item's id embedding in training, so content carries signal."""
    user_id_dropout: float = 0.5
    """Probability of zeroing the user id embedding in training, so the history carries signal."""
    demographics_dropout: float = 0.1
    """Probability of zeroing each demographic code in training (unknown is then learned)."""
    target_window: int = 10
    """Targets are drawn up to this many positions after the end of the pooled history."""
    epochs: int = 10
    """Epochs of `max_examples_per_epoch` examples; the learning rate decays to zero over them.

    Measured on the ML-1M-sized synthetic set (seed 42, validation Recall@100): the earlier
    recipe (256 per batch, 1,024 uniform negatives, constant lr 2e-3, epochs of 300k examples,
    early stopping) peaked at 0.4746 after 3M examples and stopped after 3.9M; this one reaches
    0.4735 after 1.5M examples, each step a third cheaper. ML-100K: 0.5926 vs 0.5867.
    """
    patience: int = 3
    """Epochs without a better validation Recall@100 before stopping."""
    batch_size: int = 512
    """Training examples per step (and in-batch negatives), over all processes together."""
    uniform_negatives: int = 512
    """Uniformly sampled extra negatives per step; >= catalog size means the full catalog.

    The logits (batch x (batch + these)) are most of a step's cost."""
    logq: bool = True
    """Subtract the log of each candidate's sampling probability from its logit."""
    lr: float = 4e-3
    """AdamW learning rate at the start."""
    lr_decay: bool = True
    """Decay the learning rate linearly to zero over `epochs` epochs."""
    weight_decay: float = 1e-5
    """AdamW weight decay."""
    temperature: float = 0.05
    """Initial softmax temperature (learned)."""
    max_examples_per_epoch: int = 150_000
    """Cap on training examples drawn per epoch: with `epochs` it bounds the training time
    whatever the data's size (1.5M examples), and validation runs every this many."""
    max_validation_users: int = 20_000
    """Validation users scored after each epoch (a fixed random sample beyond this many): on
    ML-25M's 162k users, scoring all of them against 62k movies took longer than the epoch."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TwoTowerConfig:
        """Inverse of `to_dict`; unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})


@dataclass(frozen=True)
class ItemInputs:
    """Item tower inputs for every catalog item, in catalog row order."""

    id_index: np.ndarray  # (I,) int64, row + 1, or 0 for rare items
    genres: np.ndarray  # (I, G) float32 multi-hot
    year_bucket: np.ndarray  # (I,) int64
    pop_bucket: np.ndarray  # (I,) int64


def item_inputs(
    item_matrix: np.ndarray,
    item_columns: tuple[str, ...],
    counts: np.ndarray,
    config: TwoTowerConfig,
) -> ItemInputs:
    """Item tower inputs from snapshot item features and training rating counts.

    Args:
        item_matrix: (I, F) snapshot item features.
        item_columns: names of its columns (must include the genre and `item_year` columns).
        counts: (I,) training ratings per item.
        config: gives the popularity buckets and the rare-item threshold.
    """
    genres = item_matrix[:, [item_columns.index(c) for c in GENRE_COLUMNS]].astype(np.float32)
    year = item_matrix[:, item_columns.index("item_year")].astype(np.float64)
    year_bucket = np.where(
        np.isfinite(year) & (year > 0),
        np.clip((np.nan_to_num(year) - YEAR_MIN) // YEAR_STEP + 1, 1, YEAR_BUCKETS - 1),
        0,
    ).astype(np.int64)
    # Quantile of the popularity rank among rated items, so the buckets mean the same thing on
    # any catalog size. Never-rated items share the least popular bucket: a bucket of their own
    # would only ever be seen as a negative in training and bury every new movie.
    n = len(counts)
    order = np.lexsort((np.arange(n), -counts))
    rank = np.empty(n, dtype=np.float64)
    rank[order] = np.arange(n)
    n_rated = max(int((counts > 0).sum()), 1)
    pop_bucket = np.where(
        counts > 0,
        1 + np.minimum(rank * config.pop_buckets // n_rated, config.pop_buckets - 1),
        config.pop_buckets,
    ).astype(np.int64)
    id_index = np.where(counts >= config.rare_item_min_count, np.arange(1, n + 1), 0)
    return ItemInputs(id_index.astype(np.int64), genres, year_bucket, pop_bucket)


class UserTowerArrays:
    """The user tower's weights as numpy arrays, with the same forward pass."""

    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        """Args:
        arrays: ``user_emb``, ``history_emb``, ``demo_emb_0`` .. ``demo_emb_3``, ``w1``, ``b1``,
            ``w2``, ``b2`` (see `models.two_tower.user_tower_arrays`).
        """

        def arr(name: str) -> np.ndarray:
            return np.ascontiguousarray(arrays[name], dtype=np.float32)

        self.user_emb = arr("user_emb")  # (U + 1, D)
        self.demo_embs = [arr(f"demo_emb_{j}") for j in range(len(DEMOGRAPHIC_SIZES))]
        self.history_emb = arr("history_emb")  # (I + 1, D)
        self.w1, self.b1 = arr("w1"), arr("b1")  # (3D, H), (H,)
        self.w2, self.b2 = arr("w2"), arr("b2")  # (H, D), (D,)
        self.dim = self.user_emb.shape[1]

    def arrays(self) -> dict[str, np.ndarray]:
        """The weights by name (what `__init__` takes), e.g. to store them."""
        named = {"user_emb": self.user_emb, "history_emb": self.history_emb}
        named |= {f"demo_emb_{j}": e for j, e in enumerate(self.demo_embs)}
        return named | {"w1": self.w1, "b1": self.b1, "w2": self.w2, "b2": self.b2}

    def pooled_history(self, rows: np.ndarray, indptr: np.ndarray) -> np.ndarray:
        """(U, D) mean history embedding per user from CSR-style item rows (row + 1 indices)."""
        n_users = len(indptr) - 1
        counts = np.diff(indptr)
        owner = np.repeat(np.arange(n_users), counts)
        sums = np.zeros((n_users, self.dim), dtype=np.float64)
        np.add.at(sums, owner, self.history_emb[rows])
        return (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)

    def query(self, user: np.ndarray, demo: np.ndarray, pooled: np.ndarray) -> np.ndarray:
        """user (B,) int, demo (B, 4) int, pooled (B, D) -> unit-norm queries (B, D) float32."""
        demo_sum = sum(self.demo_embs[j][demo[:, j]] for j in range(len(DEMOGRAPHIC_COLUMNS)))
        x = np.concatenate([self.user_emb[user], demo_sum, pooled], axis=1)  # (B, 3D)
        h = np.maximum(x @ self.w1 + self.b1, 0.0)  # (B, H)
        out = h @ self.w2 + self.b2  # (B, D)
        norm = np.linalg.norm(out, axis=1, keepdims=True)
        return np.ascontiguousarray(out / np.maximum(norm, 1e-12), dtype=np.float32)
