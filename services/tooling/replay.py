"""Online replay of held-out ratings against a served RecommendationService (`recsys replay`).

The service is trained on each user's temporal prefix (`recsys data split` writes ``train/`` and
``test.csv``). The held-out ratings are then replayed in time order, sorted by (timestamp,
user_id, item_id). For each rating the replay first asks POST /recommend for that user (k movies,
``exclude_seen``) and scores the answer as a next-item prediction: a hit when the rated movie is
in the top k, and NDCG@k of that single relevant movie, ``1 / log2(rank + 1)`` (0 when absent).

Two passes run over the same sequence:

- ``frozen``: only /recommend; no event is posted, so the state stays what training left. It runs
  first because it changes nothing.
- ``applied``: after each /recommend the rating is posted to POST /events (user, movie, rating,
  timestamp), so every later answer knows it. This pass changes the service's state: run it once
  per fresh service (a second run would find its events already applied).

The gap between the two is what freshness is worth; `recsys replay` guards it.

Subsets stay deterministic: ``users=N`` keeps every held-out rating of the N smallest user ids
(each kept user's whole sequence), ``limit=N`` then keeps the first N rows in time order.

Besides the two figures each pass counts the answers flagged ``cold_start`` and the answers that
contain a movie the user rated earlier in the replayed sequence (``repeats``): with events applied
and ``exclude_seen`` that must be 0; a frozen state cannot know those ratings.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import numpy as np
import pandas as pd

from data.errors import RecsysError
from data.split_files import read_test

logger = logging.getLogger(__name__)

Mode = Literal["frozen", "applied"]
MODES: tuple[Mode, ...] = ("frozen", "applied")  # frozen first: it does not change the state
_PASSES: dict[str, tuple[Mode, ...]] = {
    "both": MODES,
    "frozen": ("frozen",),
    "applied": ("applied",),
}
TIMEOUT_S = 30.0


class ReplayError(RecsysError):
    """A request of the replay failed, or its input cannot be replayed."""


@dataclass(frozen=True)
class ReplayRow:
    """One held-out rating, replayed as a /recommend then (applied pass) an event."""

    user_id: int
    item_id: int
    rating: float | None
    timestamp: int


@dataclass(frozen=True)
class ReplaySequence:
    """The rows to replay, in order, and where they came from."""

    test_file: str
    selection: str
    rows: list[ReplayRow]


@dataclass(frozen=True)
class PassFigures:
    """What one pass measured over the replayed sequence."""

    mode: Mode
    k: int
    rows: int
    users: int
    hits: int
    hit_rate: float
    ndcg: float
    cold_start_answers: int
    repeats: int
    events_posted: int
    requests: int
    seconds: float
    requests_per_s: float


@dataclass(frozen=True)
class ReplayReport:
    """Both passes (those that ran) and what was replayed."""

    test_file: str
    url: str
    rows: int
    users: int
    selection: str
    passes: dict[str, PassFigures]

    def table(self) -> tuple[list[str], list[list[str]]]:
        """(header, rows) of a table: one column per pass, plus applied - frozen when both ran."""
        passes = list(self.passes.values())
        both = {"frozen", "applied"} <= self.passes.keys()
        header = ["figure", *(p.mode for p in passes), *(["applied - frozen"] if both else [])]
        k = passes[0].k
        rows = []
        for field, label, fmt in (
            ("hit_rate", f"HitRate@{k}", "{:.4f}"),
            ("ndcg", f"NDCG@{k}", "{:.4f}"),
            ("hits", "hits", "{:d}"),
            ("cold_start_answers", "cold-start answers", "{:d}"),
            ("repeats", "answers repeating a replayed movie", "{:d}"),
            ("events_posted", "events accepted", "{:d}"),
            ("requests", "requests", "{:d}"),
            ("seconds", "seconds", "{:.1f}"),
            ("requests_per_s", "requests/s", "{:.0f}"),
        ):
            values = [getattr(p, field) for p in passes]
            row = [label, *(fmt.format(v) for v in values)]
            if both and field in ("hit_rate", "ndcg"):
                delta = getattr(self.passes["applied"], field) - getattr(
                    self.passes["frozen"], field
                )
                row.append(f"{delta:+.4f}")
            elif both:
                row.append("")
            rows.append(row)
        return header, rows

    def to_json(self) -> dict[str, Any]:
        """The figures as a JSON-ready dict (`--json`)."""
        out = asdict(self)
        if {"frozen", "applied"} <= self.passes.keys():
            frozen, applied = self.passes["frozen"], self.passes["applied"]
            out["applied_minus_frozen"] = {
                "hit_rate": applied.hit_rate - frozen.hit_rate,
                "ndcg": applied.ndcg - frozen.ndcg,
            }
        return out


def load_rows(
    test_file: str | Path, *, limit: int | None = None, users: int | None = None
) -> ReplaySequence:
    """Held-out ratings of `test_file` in replay order, optionally a deterministic subset.

    Args:
        test_file: ``test.csv`` written by `recsys data split` (``user_id,item_id,rating,
            timestamp``).
        limit: keep only the first `limit` rows in time order (after `users`).
        users: keep only the rows of the `users` smallest user ids.

    Returns:
        The rows sorted by (timestamp, user_id, item_id), and how they were chosen.

    Raises:
        ReplayError: the file lacks a timestamp column, or nothing is left to replay.
        DataError: the file is missing or lacks user_id / item_id.
    """
    frame = read_test(test_file)
    if "timestamp" not in frame.columns:
        raise ReplayError(f"{test_file} has no timestamp column; write it with `recsys data split`")
    selection = [f"{test_file}: {len(frame)} held-out ratings"]
    if users is not None:
        kept = np.sort(frame["user_id"].unique())[:users]
        frame = frame[frame["user_id"].isin(kept)]
        selection.append(f"those of the {len(kept)} lowest user ids")
    frame = frame.sort_values(["timestamp", "user_id", "item_id"], kind="stable")
    if limit is not None:
        frame = frame.head(limit)
        selection.append(f"the first {len(frame)} in time order")
    if frame.empty:
        raise ReplayError(
            f"no held-out rating to replay in {test_file} (limit={limit}, users={users})"
        )
    ratings = frame["rating"] if "rating" in frame.columns else pd.Series(np.nan, index=frame.index)
    rows = [
        ReplayRow(int(u), int(i), None if math.isnan(r) else float(r), int(t))
        for u, i, r, t in zip(
            frame["user_id"],
            frame["item_id"],
            ratings.astype(float),
            frame["timestamp"],
            strict=True,
        )
    ]
    return ReplaySequence(str(test_file), ", ".join(selection), rows)


def parse_modes(mode: str) -> tuple[Mode, ...]:
    """The passes of `--mode`: ``both`` (frozen, then applied), ``applied`` or ``frozen``.

    Raises:
        ReplayError: another value.
    """
    try:
        return _PASSES[mode]
    except KeyError:
        raise ReplayError(f"unknown replay mode {mode!r}; choose both, applied or frozen") from None


def replay(
    service: httpx.Client | str,
    sequence: ReplaySequence,
    *,
    k: int = 10,
    modes: tuple[Mode, ...] = MODES,
) -> ReplayReport:
    """Replay `sequence` against a served RecommendationService, one pass per mode, in order.

    Args:
        service: an `httpx.Client` whose ``base_url`` is the service, or the service's URL
            (a keep-alive client is opened and closed here).
        sequence: the held-out ratings in replay order (`load_rows`).
        k: how many movies each /recommend asks for (the cut-off of HitRate and NDCG).
        modes: passes to run, in this order; ``frozen`` should come before ``applied``.

    Returns:
        The figures of every pass.

    Raises:
        ReplayError: a request failed or answered other than 200 (the message names it).
    """
    rows = sequence.rows
    if not rows:
        raise ReplayError("nothing to replay: the sequence is empty")
    unknown = set(modes) - set(MODES)
    if unknown:
        raise ReplayError(f"unknown replay mode(s) {sorted(unknown)}; choose frozen or applied")
    with _client(service) as client:
        passes = {mode: _run_pass(client, rows, k, mode) for mode in modes}
        url = str(client.base_url)
    return ReplayReport(
        test_file=sequence.test_file,
        url=url,
        rows=len(rows),
        users=len({row.user_id for row in rows}),
        selection=sequence.selection,
        passes=passes,
    )


@contextmanager
def _client(service: httpx.Client | str) -> Iterator[httpx.Client]:
    if isinstance(service, httpx.Client):
        yield service
        return
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise
    with httpx.Client(base_url=service, timeout=TIMEOUT_S) as client:
        yield client


def _run_pass(client: httpx.Client, rows: list[ReplayRow], k: int, mode: Mode) -> PassFigures:
    hits = cold = repeats = posted = requests = 0
    gains = 0.0
    rated: dict[int, set[int]] = {}  # movies each user rated earlier in this sequence
    started = time.perf_counter()
    for n, row in enumerate(rows):
        body = {"user_id": row.user_id, "k": k, "exclude_seen": True}
        answer = _post(client, "/recommend", body, n, len(rows), mode)
        requests += 1
        items = [int(r["item_id"]) for r in answer["recommendations"]]
        earlier = rated.setdefault(row.user_id, set())
        cold += bool(answer["cold_start"])
        repeats += bool(earlier.intersection(items))
        if row.item_id in items:
            hits += 1
            gains += 1.0 / math.log2(items.index(row.item_id) + 2)  # rank = index + 1
        if mode == "applied":
            event: dict[str, Any] = {"user_id": row.user_id, "item_id": row.item_id}
            event["timestamp"] = row.timestamp
            if row.rating is not None:
                event["rating"] = row.rating
            accepted = _post(client, "/events", {"events": [event]}, n, len(rows), mode)
            requests += 1
            posted += int(accepted["accepted"])
        earlier.add(row.item_id)
    seconds = time.perf_counter() - started
    figures = PassFigures(
        mode=mode,
        k=k,
        rows=len(rows),
        users=len(rated),
        hits=hits,
        hit_rate=hits / len(rows),
        ndcg=gains / len(rows),
        cold_start_answers=cold,
        repeats=repeats,
        events_posted=posted,
        requests=requests,
        seconds=seconds,
        requests_per_s=requests / seconds if seconds > 0 else float("nan"),
    )
    logger.info(
        "replay %s pass: %d rows, HitRate@%d %.4f, NDCG@%d %.4f, %.1f s",
        mode,
        figures.rows,
        k,
        figures.hit_rate,
        k,
        figures.ndcg,
        seconds,
    )
    return figures


def _post(
    client: httpx.Client, path: str, body: dict[str, Any], n: int, total: int, mode: Mode
) -> dict[str, Any]:
    where = f"{mode} pass, row {n + 1} of {total}: POST {client.base_url}{path} {body}"
    try:
        response = client.post(path, json=body)
    except httpx.HTTPError as exc:
        raise ReplayError(
            f"{where} failed: {type(exc).__name__}: {exc}; is the service running "
            "(`recsys serve`) at that URL?"
        ) from exc
    if response.status_code != 200:
        raise ReplayError(
            f"{where} answered HTTP {response.status_code}: {response.text[:300]}; "
            "serve models trained on the split's train/ directory and replay its test.csv"
        )
    answer: dict[str, Any] = response.json()
    return answer
