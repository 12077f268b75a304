"""Online quality from events: did users rate the movies the service recommended to them?

`OnlineQuality` remembers, per user, the top of the last answer POST /recommend gave: its first
`MAX_RANK` movie ids (an int64 `array`, ~160 bytes where a tuple of ints takes ~400), the time on
this process's monotonic clock, the segment ``cold`` or ``warm`` from the answer's ``cold_start``
and a short model label (about 400 bytes a user in all). When POST /events accepts an event of
that user within `OnlineQualitySettings.horizon_s` of the answer, the event is *matched*: one
opportunity, and a hit at the movie's rank (1-based) when the movie is in the remembered list.
This is `recsys replay`'s next-item protocol (one relevant movie per event), so
an applied replay and the service's own figures agree.

Figures, per matched event:

- Prometheus (BentoML serves /metrics in multiprocess mode: counters only, summed over workers):
  ``recsys_online_events_total{segment, model}``, ``recsys_online_hits_total{segment, model, k}``
  (rank <= k, k in 1, 5, 10) and ``recsys_online_reciprocal_rank_total{segment, model}`` (sum of
  1/rank over hits with rank <= 10). HitRate@10 = rate(hits{k="10"}) / rate(events), MRR@10 =
  rate(reciprocal_rank) / rate(events).
- In process, for GET /info: the same figures over the last `window_events` matched events and
  since the process started (overall, per segment, per model).

The memory is bounded: at most `max_users` users, the least recently answered evicted first, and
answers older than the horizon are dropped. It is per process: with several API workers an event
answered by another worker than the recommendation is not matched.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field

Segment = Literal["cold", "warm"]
CUTOFFS = (1, 5, 10)
MAX_RANK = CUTOFFS[-1]  # ranks past this count in no figure, so they are not remembered
_CUTOFF_LABELS = tuple(str(k) for k in CUTOFFS)

ONLINE_EVENTS = Counter(
    "recsys_online_events",
    "Events matched to a recommendation the service gave that user within the horizon",
    ["segment", "model"],
)
ONLINE_HITS = Counter(
    "recsys_online_hits",
    "Matched events whose movie was recommended at rank <= k",
    ["segment", "model", "k"],
)
ONLINE_RECIPROCAL_RANK = Counter(
    "recsys_online_reciprocal_rank",
    "Sum of 1/rank over matched events whose movie was recommended at rank <= 10",
    ["segment", "model"],
)


class OnlineQualitySettings(BaseModel):
    """What the service remembers of its answers to score events against (RECSYS_ONLINE__*)."""

    model_config = ConfigDict(frozen=True)

    horizon_s: float = Field(default=3600.0, gt=0)
    """How long after an answer an event of that user still counts against it."""
    max_users: int = Field(default=100_000, ge=1)
    """Users remembered at most; the least recently answered go first."""
    window_events: int = Field(default=10_000, ge=1)
    """Matched events in the sliding window of the figures in GET /info."""


class Remembered(NamedTuple):
    """The last answer given to one user."""

    at: float  # monotonic seconds
    items: array[int]  # the first MAX_RANK movie ids, best first (int64)
    segment: Segment
    model: str


class Match(NamedTuple):
    """One matched event: its segment, model label and the movie's rank (0: not in the list)."""

    segment: Segment
    model: str
    rank: int


@dataclass
class Tally:
    """Matched events, hits at each cut-off and the reciprocal-rank sum of a group."""

    events: int = 0
    hits_1: int = 0
    hits_5: int = 0
    hits_10: int = 0
    rr: float = 0.0

    def add(self, rank: int) -> None:
        """Count one matched event whose movie was at `rank` (0: not recommended)."""
        self.events += 1
        if 0 < rank <= MAX_RANK:
            self.hits_10 += 1
            self.hits_5 += rank <= 5
            self.hits_1 += rank == 1
            self.rr += 1.0 / rank

    def merge(self, other: Tally) -> None:
        """Add `other`'s counts to this tally."""
        self.events += other.events
        self.hits_1 += other.hits_1
        self.hits_5 += other.hits_5
        self.hits_10 += other.hits_10
        self.rr += other.rr

    def figures(self) -> dict[str, Any]:
        """HitRate@1/5/10 and MRR@10 (None without events), with the counts behind them."""
        n = self.events
        hits = {"1": self.hits_1, "5": self.hits_5, "10": self.hits_10}
        return {
            "events": n,
            "hits": hits,
            "reciprocal_rank_sum": self.rr,
            "hit_rate": {k: (h / n if n else None) for k, h in hits.items()},
            "mrr": self.rr / n if n else None,
        }


def model_label(model_version: Mapping[str, str]) -> str:
    """A short label of the model that ordered an answer.

    The ranker's tag; without a ranker (a degraded answer) the retriever's, else ``popular`` (the
    popularity fallback of a remote placement without its retriever).
    """
    return model_version.get("ranker") or model_version.get("two_tower") or "popular"


class OnlineQuality:
    """Remembers recent answers per user and scores accepted events against them.

    Args:
        settings: horizon, memory bound and window size.
        clock: seconds on a monotonic clock (injected by tests).
    """

    def __init__(
        self,
        settings: OnlineQualitySettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings or OnlineQualitySettings()
        self._clock = clock
        self._horizon_s = self.settings.horizon_s  # plain attributes: read on every answer
        self._max_users = self.settings.max_users
        self._users: OrderedDict[int, Remembered] = OrderedDict()  # oldest answer first
        self._window: deque[Match] = deque(maxlen=self.settings.window_events)
        self._totals: dict[tuple[Segment, str], Tally] = {}
        # Labelled counter children, resolved once per (segment, model): .labels() takes a lock.
        self._counters: dict[tuple[Segment, str], tuple[Any, Any, tuple[Any, ...]]] = {}
        self._lock = threading.Lock()  # the service calls from its event loop; /info may not

    def __len__(self) -> int:
        return len(self._users)

    def remember(self, user_id: int, items: Sequence[int], cold_start: bool, model: str) -> None:
        """Record the answer just given to `user_id` (its best `MAX_RANK` movie ids).

        Args:
            user_id: who was answered.
            items: movie ids best first; only the first `MAX_RANK` are kept.
            cold_start: the answer's flag (segment ``cold``, else ``warm``).
            model: `model_label` of the answer.
        """
        now = self._clock()
        top = array("q", items[:MAX_RANK])
        entry = Remembered(now, top, "cold" if cold_start else "warm", model)
        users = self._users
        with self._lock:
            users.pop(user_id, None)  # re-inserted last: the most recently answered
            users[user_id] = entry
            if len(users) > self._max_users:
                users.popitem(last=False)
            # The head is the oldest answer: drop the expired ones (amortised O(1) per answer).
            horizon = now - self._horizon_s
            while next(iter(users.values())).at < horizon:
                users.popitem(last=False)

    def observe(self, events: Iterable[tuple[int, int]]) -> int:
        """Score accepted events, ``(user_id, item_id)`` each; returns how many were matched."""
        now = self._clock()
        horizon = now - self._horizon_s
        matched = 0
        with self._lock:
            for user_id, item_id in events:
                entry = self._users.get(user_id)
                if entry is None:
                    continue
                if entry.at < horizon:
                    del self._users[user_id]
                    continue
                items = entry.items
                rank = items.index(item_id) + 1 if item_id in items else 0
                self._count(entry.segment, entry.model, rank)
                matched += 1
        return matched

    def _count(self, segment: Segment, model: str, rank: int) -> None:
        key = (segment, model)
        counters = self._counters.get(key)
        if counters is None:
            counters = (
                ONLINE_EVENTS.labels(segment, model),
                ONLINE_RECIPROCAL_RANK.labels(segment, model),
                tuple(ONLINE_HITS.labels(segment, model, k) for k in _CUTOFF_LABELS),
            )
            self._counters[key] = counters
            self._totals[key] = Tally()
        events, rr, hits = counters
        events.inc()
        if 0 < rank <= MAX_RANK:
            rr.inc(1.0 / rank)
            for cutoff, counter in zip(CUTOFFS, hits, strict=True):
                if rank <= cutoff:
                    counter.inc()
        self._totals[key].add(rank)
        self._window.append(Match(segment, model, rank))

    def figures(self) -> dict[str, Any]:
        """GET /info's ``online_quality``: window and since-start figures, settings, memory size.

        ``window`` covers the last `window_events` matched events and ``since_start`` every one
        this process matched; each holds ``overall``, ``by_segment`` and ``by_model``, with
        ``events``, ``hits`` per cut-off, ``reciprocal_rank_sum``, ``hit_rate`` per cut-off and
        ``mrr`` (MRR@10).
        """
        with self._lock:
            window = list(self._window)
            totals = {key: Tally(**vars(tally)) for key, tally in self._totals.items()}
            remembered = len(self._users)
        grouped: dict[tuple[Segment, str], Tally] = {}
        for match in window:
            grouped.setdefault((match.segment, match.model), Tally()).add(match.rank)
        return {
            "horizon_s": self.settings.horizon_s,
            "max_users": self.settings.max_users,
            "window_events": self.settings.window_events,
            "remembered_users": remembered,
            "window": _breakdown(grouped),
            "since_start": _breakdown(totals),
        }


def _breakdown(tallies: Mapping[tuple[Segment, str], Tally]) -> dict[str, Any]:
    """Overall, per-segment and per-model figures of per-(segment, model) tallies."""
    overall = Tally()
    by_segment: dict[str, Tally] = {}
    by_model: dict[str, Tally] = {}
    for (segment, model), tally in tallies.items():
        overall.merge(tally)
        by_segment.setdefault(segment, Tally()).merge(tally)
        by_model.setdefault(model, Tally()).merge(tally)
    return {
        "overall": overall.figures(),
        "by_segment": {name: t.figures() for name, t in sorted(by_segment.items())},
        "by_model": {name: t.figures() for name, t in sorted(by_model.items())},
    }
