"""Training of the two-tower retriever (`train_retriever`).

Examples: every rating in `windows.fit` is a target; its user's query pools the `history_len`
items rated before a cut point that lies up to `target_window` ratings before the target, so the
model learns to predict the next several items from a history, as the protocol asks of it.
Loss: sampled softmax over the batch's targets (in-batch negatives) plus `uniform_negatives`
uniformly drawn items, each logit corrected by the log of its expected count in the sample
(logQ, Yi et al. 2019; mixed negatives, Yang et al. 2020). When the catalog is no bigger than
`uniform_negatives` the whole catalog is the candidate set (exact softmax, no correction).
Early stopping on validation Recall@100 (`windows.valid`, history = `windows.fit`).
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from data.features import DEMOGRAPHIC_COLUMNS
from data.snapshot import FeatureSnapshot
from data.split import Windows
from models.config import RetrievalSettings
from models.distributed import Rank, current_rank, init_process_group, resolve_device
from models.evaluation import evaluate_lists, heldout_lists
from models.retrieval import IndexInfo, ItemIndex, build_index, flat_index
from models.retriever import Retriever, RetrieverParts
from models.two_tower import (
    ItemInputs,
    TwoTowerConfig,
    TwoTowerModel,
    item_inputs,
    user_tower_arrays,
)

logger = logging.getLogger(__name__)

# One thread: measured here, 2 threads stall on a busy 2-core machine (2-10x slower steps).
TORCH_THREADS = 1


@dataclass(frozen=True)
class _Examples:
    """Training ratings in (user, time) order, as flat arrays."""

    user: np.ndarray  # (E,) int64 user embedding index (row + 1)
    item: np.ndarray  # (E,) int64 catalog row
    start: np.ndarray  # (E,) int64 position of the user's first example
    demo: np.ndarray  # (E, 4) int64 demographic codes


def _examples(
    fit: pd.DataFrame, item_ids: np.ndarray, user_ids: np.ndarray, snapshot: FeatureSnapshot
) -> _Examples:
    ordered = fit.sort_values(["user_id", "timestamp", "item_id"], kind="mergesort")
    users = ordered["user_id"].to_numpy(np.int64)
    upos = np.searchsorted(user_ids, users)
    first = np.searchsorted(upos, upos)  # sorted by user: first index of each user's block
    demo_cols = [snapshot.user_columns.index(c) for c in DEMOGRAPHIC_COLUMNS]
    demo, _ = snapshot.user_rows(user_ids)
    codes = demo[:, demo_cols].astype(np.int64)
    return _Examples(
        user=upos + 1,
        item=np.searchsorted(item_ids, ordered["item_id"].to_numpy(np.int64)),
        start=first,
        demo=codes[upos],
    )


def _item_batch(
    inputs: ItemInputs, rows: np.ndarray, id_keep: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, ...]:
    arrays = (inputs.id_index[rows] * id_keep, inputs.genres[rows], inputs.year_bucket[rows],
              inputs.pop_bucket[rows])  # fmt: skip
    return tuple(torch.from_numpy(a).to(device) for a in arrays)


def _step_loss(
    model: torch.nn.Module,
    ex: _Examples,
    batch: np.ndarray,
    inputs: ItemInputs,
    log_q: np.ndarray,
    config: TwoTowerConfig,
    rng: np.random.Generator,
    device: torch.device,
) -> torch.Tensor:
    """Sampled-softmax loss of one step; `model` is the `TwoTowerModel` or its DDP wrapper."""
    n_items = len(inputs.id_index)
    b = len(batch)
    # User side: history ends at a random cut up to `target_window` ratings before the target.
    cut = np.maximum(batch - rng.integers(0, config.target_window, size=b), ex.start[batch])
    pos = cut[:, None] - config.history_len + np.arange(config.history_len)[None, :]  # (B, N)
    history = np.where(pos >= ex.start[batch][:, None], ex.item[np.maximum(pos, 0)] + 1, 0)
    user = ex.user[batch] * (rng.random(b) >= config.user_id_dropout)
    demo = ex.demo[batch] * (rng.random((b, 4)) >= config.demographics_dropout)
    user_inputs = tuple(torch.from_numpy(a).to(device) for a in (user, demo, history))
    targets = ex.item[batch]
    if config.uniform_negatives >= n_items:
        candidates = np.arange(n_items)
        labels = targets
        correction = np.zeros(n_items)
        same = np.zeros((b, n_items), dtype=bool)
    else:
        uniform = rng.integers(0, n_items, size=config.uniform_negatives)
        candidates = np.concatenate([targets, uniform])
        labels = np.arange(b)
        correction = log_q[candidates]
        # Other copies of a row's own target are not negatives.
        same = candidates[None, :] == targets[:, None]
        same[np.arange(b), labels] = False
    keep = (rng.random(len(candidates)) >= config.item_id_dropout).astype(np.int64)
    logits = model(user_inputs, _item_batch(inputs, candidates, keep, device))  # (B, C)
    if config.logq:
        logits = logits - torch.from_numpy(correction.astype(np.float32)).to(device)[None, :]
    logits = logits.masked_fill(torch.from_numpy(same).to(device), float("-inf"))
    return F.cross_entropy(logits, torch.from_numpy(labels).to(device))


def _parts(
    model: TwoTowerModel,
    config: TwoTowerConfig,
    item_ids: np.ndarray,
    inputs: ItemInputs,
    counts: np.ndarray,
    user_ids: np.ndarray,
    snapshot: FeatureSnapshot,
    index: ItemIndex | None = None,
) -> RetrieverParts:
    model.eval()
    embeddings = model.item_embeddings(inputs)
    if index is None:
        index = ItemIndex(flat_index(embeddings), IndexInfo("flat", *embeddings.shape, 1.0, 0.0))
    demo_cols = [snapshot.user_columns.index(c) for c in DEMOGRAPHIC_COLUMNS]
    return RetrieverParts(
        user_tower=user_tower_arrays(model.user_tower),
        model=model,
        config=config,
        item_ids=item_ids,
        inputs=inputs,
        item_embeddings=embeddings,
        index=index,
        popularity=counts.astype(np.float32),
        user_ids=user_ids,
        demo_user_ids=snapshot.user_ids,
        demo_codes=snapshot.user_matrix[:, demo_cols].astype(np.int64),
    )


class _Validation:
    """Validation Recall@100 of the current weights, with the history tables built once."""

    def __init__(
        self, fit: pd.DataFrame, valid: pd.DataFrame, n_items: int, max_users: int, seed: int
    ) -> None:
        self.fit, self.n_items = fit, n_items
        self.users, self.relevant = heldout_lists(valid)
        if len(self.users) > max_users:
            rng = np.random.default_rng([seed, 1])
            keep = np.sort(rng.choice(len(self.users), max_users, replace=False))
            self.users = self.users[keep]
            self.relevant = [self.relevant[i] for i in keep]
        self.retriever: Retriever | None = None

    def recall(self, parts: RetrieverParts) -> float:
        if self.retriever is None:
            self.retriever = Retriever(parts, self.fit)
        else:
            self.retriever = self.retriever.reweighted(parts)
        metrics = evaluate_lists(self.retriever, self.users, self.relevant, self.n_items)
        return metrics["recall@100"]


def _optimizer(model: TwoTowerModel, config: TwoTowerConfig) -> torch.optim.Optimizer:
    # The fused kernel updates every parameter in one pass: on CPU a third of the step time
    # went to the per-tensor loop of the default implementation (profiled on ML-1M size).
    return torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True
    )


def train_retriever(
    snapshot: FeatureSnapshot,
    windows: Windows,
    config: TwoTowerConfig,
    seed: int,
    settings: RetrievalSettings | None = None,
    progress: bool = True,
    device: str = "auto",
) -> tuple[Retriever | None, dict[str, float]]:
    """Train the towers on `windows.fit`, early-stopping on Recall@100 over `windows.valid`.

    Under torchrun (`models.distributed`) every process runs this: each takes its share of every
    batch, DistributedDataParallel averages the gradients, and rank 0 validates and decides when
    to stop. The other ranks return no retriever.

    Args:
        snapshot: the catalog, item content (genres, year) and user demographics.
        windows: the recipe's windows; only `fit` and `valid` are read.
        config: architecture and training hyper-parameters.
        seed: seeds torch and numpy; the same seed gives the same model.
        settings: index choice and target recall (defaults if None).
        progress: show a progress bar with loss and validation recall per epoch.
        device: ``auto``, ``cpu`` or ``cuda`` (`RECSYS_DEVICE`).

    Returns:
        The retriever (serving `windows.fit` histories; None on ranks other than 0) and
        training metrics.
    """
    settings = settings or RetrievalSettings()
    started = time.perf_counter()
    rank = current_rank()
    dev = resolve_device(device, rank)
    init_process_group(dev, rank)
    torch.manual_seed(seed)
    torch.set_num_threads(TORCH_THREADS)
    torch.use_deterministic_algorithms(True, warn_only=True)
    order_rng = np.random.default_rng(seed)  # the same epoch order on every rank
    rng = np.random.default_rng([seed, rank.rank])  # negatives and dropout: each rank its own

    item_ids = snapshot.item_ids
    fit = windows.fit[windows.fit["item_id"].isin(item_ids)]
    user_ids = np.unique(fit["user_id"].to_numpy(np.int64))
    ex = _examples(fit, item_ids, user_ids, snapshot)
    counts = np.bincount(ex.item, minlength=len(item_ids)).astype(np.float64)
    inputs = item_inputs(snapshot.item_matrix, snapshot.item_columns, counts, config)
    # Each rank's step sees its share of the batch's targets plus its own uniform draws.
    local_batch = max(config.batch_size // rank.world, 1)
    expected = local_batch * counts / counts.sum() + config.uniform_negatives / len(item_ids)
    log_q = np.log(np.maximum(expected, 1e-12))

    model = TwoTowerModel(len(user_ids), len(item_ids), config).to(dev)
    trained: torch.nn.Module = model
    if rank.distributed:
        from torch.nn.parallel import DistributedDataParallel

        trained = DistributedDataParallel(model, device_ids=[dev] if dev.type == "cuda" else None)
    optimizer = _optimizer(model, config)
    n_epoch = min(len(ex.item), config.max_examples_per_epoch)
    n_steps = max(n_epoch // config.batch_size, 1)
    total_steps = config.epochs * n_steps
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: max(1.0 - step / total_steps, 0.0) if config.lr_decay else 1.0
    )
    validation = None
    if rank.main:
        validation = _Validation(
            fit, windows.valid, len(item_ids), config.max_validation_users, seed
        )
    best = (-1.0, 0, copy.deepcopy(model.state_dict()))
    bar = tqdm(range(config.epochs), desc="two-tower", unit="epoch",
               disable=not (progress and rank.main))  # fmt: skip
    epoch = 0
    for epoch in bar:
        trained.train()
        order = order_rng.permutation(len(ex.item))[:n_epoch]
        total = torch.zeros((), device=dev)
        for step in range(n_steps):
            batch = order[step * config.batch_size : (step + 1) * config.batch_size]
            batch = batch[rank.rank :: rank.world]
            loss = _step_loss(trained, ex, batch, inputs, log_q, config, rng, dev)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.detach()
        mean_loss = float(total) / n_steps
        stop = False
        if validation is not None:
            recall = validation.recall(
                _parts(model, config, item_ids, inputs, counts, user_ids, snapshot)
            )
            bar.set_postfix(loss=f"{mean_loss:.4f}", val_recall100=f"{recall:.4f}")
            logger.info("epoch %d: loss %.4f, validation recall@100 %.4f", epoch + 1,
                        mean_loss, recall)  # fmt: skip
            if recall > best[0]:
                best = (recall, epoch + 1, copy.deepcopy(model.state_dict()))
            stop = epoch + 1 - best[1] >= config.patience
        if _agree(stop, rank):
            break
    bar.close()
    metrics = {
        "best_epoch": float(best[1]),
        "epochs_run": float(epoch + 1),
        "train_examples": float(len(ex.item)),
        "processes": float(rank.world),
    }
    if not rank.main:
        return None, metrics | {"train_seconds": time.perf_counter() - started}
    model.load_state_dict(best[2])
    model.cpu()  # what is stored and served is CPU tensors, wherever it trained
    train_seconds = time.perf_counter() - started
    parts = _parts(model, config, item_ids, inputs, counts, user_ids, snapshot)
    index = build_index(parts.item_embeddings, settings, seed=seed)
    parts = _parts(model, config, item_ids, inputs, counts, user_ids, snapshot, index)
    metrics |= {
        "valid_recall@100": best[0],
        "valid_users": float(len(validation.users)) if validation is not None else 0.0,
        "train_seconds": train_seconds,
        "temperature": float(model.temperature().detach()),
        "index_recall@100": index.info.recall_at_100,
    }
    return Retriever(parts, fit), metrics


def _agree(stop: bool, rank: Rank) -> bool:
    """Rank 0's early-stopping decision, on every rank."""
    if not rank.distributed:
        return stop
    import torch.distributed as dist

    flag = [stop]
    dist.broadcast_object_list(flag, src=0)
    return bool(flag[0])


def cold_item_recall(
    retriever: Retriever, known: pd.DataFrame, heldout: pd.DataFrame, k: int = 100
) -> tuple[float, int]:
    """Share of held-out (user, item) pairs whose item had no rating in `known` found in top-k.

    Args:
        retriever: serving the `known` histories.
        known: the interactions the model and the histories saw (e.g. `Split.train`).
        heldout: the evaluation window (e.g. `Split.test`).
        k: depth of the candidate list.

    Returns:
        The recall over those pairs and their number (0 pairs gives recall 0.0).
    """
    cold = heldout[~heldout["item_id"].isin(known["item_id"].unique())]
    if cold.empty:
        return 0.0, 0
    users = np.unique(cold["user_id"].to_numpy(np.int64))
    items, _ = retriever.recommend(users, k)
    found = {(int(u), int(i)) for u, row in zip(users, items, strict=True) for i in row if i >= 0}
    pairs = list(zip(cold["user_id"].tolist(), cold["item_id"].tolist(), strict=True))
    return sum(pair in found for pair in pairs) / len(pairs), len(pairs)
