"""The first stage: candidates from several sources, fused into one de-duplicated list.

Sources (`models.sources.CandidateSource`; each switchable, each with a quota):

- ``two_tower``: the two-tower model and its FAISS index (`models.retriever.Retriever`);
- ``item_knn``: item-to-item neighbours of the user's latest ratings (`models.item_neighbours`);
- ``content``: content neighbours among movies with few ratings (`models.content_neighbours`);
- ``popular`` / ``trending``: the most rated movies, all time and in the last 30 days.

Fusion interleaves the lists by relative rank (rank / quota: a source asked for 20 spreads its
20 over the same span as one asked for 100; ties in `SOURCE_ORDER`), keeps the first occurrence
of a movie and stops at `fused_max`, so a cap below the quotas' sum cuts every list's tail.
Every candidate keeps its rank and score in each source that proposed it
(`FusedCandidates.source_ranks` / `source_scores`, NaN where a source did not), and its two-tower
score whoever proposed it: the ranker learns from all of these (`source_features`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from models.retriever import Retriever, _sorted_lookup
from models.sources import SOURCE_ORDER, CandidateSource, source_features

if TYPE_CHECKING:
    from feature_store.events import RatingEvent


@dataclass(frozen=True)
class FusedCandidates:
    """One user's fused candidates, in fusion order."""

    item_ids: np.ndarray  # (n,) int64
    two_tower_scores: np.ndarray  # (n,) float32, for every candidate
    source_ranks: np.ndarray  # (n, S) float32, 0-based rank in each source of SOURCE_ORDER; NaN
    source_scores: np.ndarray  # (n, S) float32, score in each source; NaN where not proposed
    cold_start: bool

    def source_features(self) -> np.ndarray:
        """(n, len(SOURCE_FEATURES)) ranker inputs."""
        return source_features(self.source_ranks, self.source_scores)

    def proposed_by(self) -> list[list[str]]:
        """The names of the sources that proposed each candidate."""
        hit = ~np.isnan(self.source_ranks)
        return [[SOURCE_ORDER[j] for j in np.flatnonzero(row)] for row in hit]


class CandidateGenerator:
    """Runs the switched-on sources for a user and fuses their lists.

    Args:
        retriever: the two-tower retriever; it also holds the user histories every source reads.
        sources: the other sources by name (names of SOURCE_ORDER).
        quotas: candidates asked of each switched-on source (a source absent here is off).
        fused_max: the fused list's cap.
    """

    def __init__(
        self,
        retriever: Retriever,
        sources: Mapping[str, CandidateSource],
        quotas: Mapping[str, int],
        fused_max: int,
    ) -> None:
        unknown = set(quotas) - set(SOURCE_ORDER)
        if unknown:
            raise ValueError(f"unknown candidate sources {sorted(unknown)}; known: {SOURCE_ORDER}")
        missing = [n for n in quotas if n != "two_tower" and n not in sources]
        if missing:
            raise ValueError(f"sources {missing} are switched on but were not built")
        self.retriever = retriever
        self.sources = dict(sources)
        self.quotas = {n: int(quotas[n]) for n in SOURCE_ORDER if n in quotas}
        self.fused_max = fused_max
        # Each source's relative ranks (rank / quota), made once: fusion slices them.
        self._relative = {SOURCE_ORDER.index(n): np.arange(q) / q for n, q in self.quotas.items()}

    @property
    def names(self) -> tuple[str, ...]:
        """The sources in force, in SOURCE_ORDER."""
        return tuple(self.quotas)

    def generate(
        self,
        user_id: int,
        exclude_item_ids: Iterable[int] = (),
        exclude_seen: bool = True,
        live: Sequence[RatingEvent] = (),
        limit: int | None = None,
    ) -> FusedCandidates:
        """Fused candidates for one user (at most `limit`, default `fused_max`)."""
        retriever = self.retriever
        state = retriever.user_state(user_id, exclude_item_ids, exclude_seen, live=live)
        lists: list[tuple[int, np.ndarray, np.ndarray]] = []  # (source index, rows, scores)
        for j, name in enumerate(SOURCE_ORDER):
            quota = self.quotas.get(name)
            if not quota:
                continue
            if name == "two_tower":
                found = retriever.search(state, quota)
                rows = _sorted_lookup(retriever.item_ids, found.item_ids)[0]
                lists.append((j, rows, found.scores))
            else:
                got = self.sources[name].candidates(state.context, quota)
                lists.append((j, got.rows, got.scores))
        fused = _interleave(lists, self._relative, limit or self.fused_max)
        n, width = len(fused), len(SOURCE_ORDER)
        ranks = np.full((n, width), np.nan, dtype=np.float32)
        scores = np.full((n, width), np.nan, dtype=np.float32)
        if n:
            order = np.argsort(fused, kind="stable")
            ordered = fused[order]
            for j, rows, got in lists:
                at = np.minimum(np.searchsorted(ordered, rows), n - 1)
                hit = ordered[at] == rows
                # Rank among the source's proposals that made the list: when the cap cut a
                # source's tail but a later proposal came in through another source, the ranks
                # stay contiguous, as the wire form (`encode_sources`) carries them.
                ranks[order[at[hit]], j] = np.arange(int(hit.sum()))
                scores[order[at[hit]], j] = got[hit]
        return FusedCandidates(
            item_ids=retriever.item_ids[fused],
            two_tower_scores=retriever.scores_of(state, fused),
            source_ranks=ranks,
            source_scores=scores,
            cold_start=state.cold,
        )

    def recommend(self, user_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """`BatchRecommender`: the first `k` fused candidates per user (-1 padded), by fusion
        order (scores are minus the position)."""
        items = np.full((len(user_ids), k), -1, dtype=np.int64)
        for i, user in enumerate(np.asarray(user_ids, dtype=np.int64).tolist()):
            got = self.generate(user, limit=k).item_ids[:k]
            items[i, : len(got)] = got
        return items, -np.tile(np.arange(k, dtype=np.float32), (len(user_ids), 1))


class SourceRecommender:
    """`BatchRecommender` of one source alone (for `recsys evaluate`'s per-source figures)."""

    def __init__(self, generator: CandidateGenerator, name: str) -> None:
        self.generator = generator
        self.name = name

    def recommend(self, user_ids: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The source's top `k` per user (-1 padded)."""
        retriever = self.generator.retriever
        items = np.full((len(user_ids), k), -1, dtype=np.int64)
        scores = np.full((len(user_ids), k), -np.inf, dtype=np.float32)
        for i, user in enumerate(np.asarray(user_ids, dtype=np.int64).tolist()):
            state = retriever.user_state(user)
            if self.name == "two_tower":
                found = retriever.search(state, k)
                ids, got = found.item_ids, found.scores
            else:
                proposed = self.generator.sources[self.name].candidates(state.context, k)
                ids, got = retriever.item_ids[proposed.rows], proposed.scores
            items[i, : len(ids)] = ids
            scores[i, : len(ids)] = got
        return items, scores


def _interleave(
    lists: list[tuple[int, np.ndarray, np.ndarray]], relative: Mapping[int, np.ndarray], cap: int
) -> np.ndarray:
    """Rows by (rank / quota of their source, source order), first occurrence kept, at most
    `cap`. `relative[j]` is source j's rank / quota for ranks 0..quota-1."""
    if not lists:
        return np.empty(0, dtype=np.int64)
    rows = np.concatenate([r for _, r, _ in lists]).astype(np.int64)
    rank = np.concatenate([relative[j][: len(r)] for j, r, _ in lists])
    # Within one relative rank, sources in SOURCE_ORDER: lists come in that order, and the
    # stable sort keeps it.
    order = np.argsort(rank, kind="stable")
    rows = rows[order]
    _, first = np.unique(rows, return_index=True)
    return rows[np.sort(first)][:cap]


# --- storing and loading the sources (one model each in the model store) --------------------


def source_models(sources: Mapping[str, CandidateSource]) -> dict[str, tuple[dict, dict]]:
    """Each source's stored form: kind (`models.artifacts.SOURCE_MODELS`) -> (arrays, params)."""
    from models.sources import RankedListSource

    out: dict[str, tuple[dict, dict]] = {}
    lists = {n: s for n, s in sources.items() if isinstance(s, RankedListSource)}
    if lists:
        arrays = {}
        for name, source in lists.items():
            arrays[f"{name}_rows"], arrays[f"{name}_scores"] = source.rows, source.scores
        out["popularity"] = (arrays, {"lists": sorted(lists)})
    for name in ("item_knn", "content"):
        source = sources.get(name)
        if source is not None:
            table = source.table  # type: ignore[attr-defined]
            arrays = {"neighbours": table.neighbours, "weights": table.weights}
            params = {
                "params": table.params,
                "method": getattr(table, "method", name),
                "history": source.history,  # type: ignore[attr-defined]
                "decay": getattr(source, "decay", 1.0),
            }
            out[name] = (arrays, params)
    return out


def sources_from_models(stored: Mapping[str, tuple[dict, dict]]) -> dict[str, CandidateSource]:
    """The sources back from `source_models`' form."""
    from models.content_neighbours import ContentSource, ContentTable
    from models.item_neighbours import ItemNeighbourSource, NeighbourTable
    from models.sources import RankedListSource

    sources: dict[str, CandidateSource] = {}
    if "popularity" in stored:
        arrays, params = stored["popularity"]
        for name in params["lists"]:
            sources[name] = RankedListSource(name, arrays[f"{name}_rows"], arrays[f"{name}_scores"])
    if "item_knn" in stored:
        arrays, params = stored["item_knn"]
        knn = NeighbourTable(
            arrays["neighbours"], arrays["weights"], params["method"], params["params"]
        )
        sources["item_knn"] = ItemNeighbourSource(knn, params["history"], params["decay"])
    if "content" in stored:
        arrays, params = stored["content"]
        table = ContentTable(arrays["neighbours"], arrays["weights"], params["params"])
        sources["content"] = ContentSource(table, int(params["history"]))
    return sources


def kinds_for(quotas: Mapping[str, int]) -> tuple[str, ...]:
    """The stored models the sources in `quotas` need."""
    kinds = []
    if quotas.get("popular") or quotas.get("trending"):
        kinds.append("popularity")
    kinds += [k for k in ("item_knn", "content") if quotas.get(k)]
    return tuple(kinds)
