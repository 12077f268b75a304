"""Online replay of held-out ratings against a served RecommendationService (`recsys replay`).

The service is trained on each user's temporal prefix (`recsys data split` writes ``train/`` and
``test.csv``). The held-out ratings are then replayed in time order, sorted by (timestamp,
user_id, item_id). For each rating the replay first asks POST /recommend for that user (k movies,
``exclude_seen``) and scores the answer as a next-item prediction: a hit when the rated movie is
in the top k, NDCG@k of that single relevant movie, ``1 / log2(rank + 1)``, and its reciprocal
rank ``1 / rank`` (MRR@k); both 0 when absent.

Two passes run over the same sequence:

- ``frozen``: only /recommend; no event is posted, so the state stays what training left. It runs
  first because it changes nothing.
- ``applied``: after each /recommend the rating is posted to POST /events (user, movie, rating,
  timestamp), so every later answer knows it. This pass changes the service's state: run it once
  per fresh service (a second run would find its events already applied).

The gap between the two is what freshness is worth; `recsys replay` guards it.

The service scores the applied pass itself (`services.online_quality`): each event it accepts for a
movie it recommended to that user within its horizon is a hit at that rank. The replay reads the
service's counts from GET /info (``online_quality.since_start``) before and after the applied pass
and reports their difference beside its own HitRate@k and MRR@k: with one API worker and no other
traffic the two agree exactly. ``api_key`` is sent as ``Authorization: Bearer`` on every call; the
key needs the ``recommend`` and ``events`` scopes, and ``admin`` for /info (without it the online
figures are left out, with the reason). A 429 is waited out (its ``Retry-After``) and retried.

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
from services.tooling.replay_online import (
    ONLINE_CUTOFFS,
    OnlineFigures,
    online_delta,
    online_table,
    online_totals,
)

logger = logging.getLogger(__name__)

Mode = Literal["frozen", "applied"]
MODES: tuple[Mode, ...] = ("frozen", "applied")  # frozen first: it does not change the state
_PASSES: dict[str, tuple[Mode, ...]] = {
    "both": MODES,
    "frozen": ("frozen",),
    "applied": ("applied",),
}
TIMEOUT_S = 30.0
RETRIES_429 = 5
MAX_RETRY_AFTER_S = 5.0


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
    mrr: float
    hits_at: dict[str, int]  # hits at the online cut-offs (1, 5, 10) up to k
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
    online: OnlineFigures | None = None  # after an applied pass

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
            ("mrr", f"MRR@{k}", "{:.4f}"),
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
            if both and field in ("hit_rate", "ndcg", "mrr"):
                delta = getattr(self.passes["applied"], field) - getattr(
                    self.passes["frozen"], field
                )
                row.append(f"{delta:+.4f}")
            elif both:
                row.append("")
            rows.append(row)
        return header, rows

    def online_table(self) -> tuple[list[str], list[list[str]]] | None:
        """(header, rows) of the applied pass beside the service's online figures, if read."""
        applied, online = self.passes.get("applied"), self.online
        if applied is None or online is None:
            return None
        return online_table(online, applied.k, applied.rows, applied.hits_at, applied.mrr)

    def to_json(self) -> dict[str, Any]:
        """The figures as a JSON-ready dict (`--json`)."""
        out = asdict(self)
        if {"frozen", "applied"} <= self.passes.keys():
            frozen, applied = self.passes["frozen"], self.passes["applied"]
            out["applied_minus_frozen"] = {
                "hit_rate": applied.hit_rate - frozen.hit_rate,
                "ndcg": applied.ndcg - frozen.ndcg,
                "mrr": applied.mrr - frozen.mrr,
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
    api_key: str | None = None,
) -> ReplayReport:
    """Replay `sequence` against a served RecommendationService, one pass per mode, in order.

    Args:
        service: an `httpx.Client` whose ``base_url`` is the service, or the service's URL
            (a keep-alive client is opened and closed here).
        sequence: the held-out ratings in replay order (`load_rows`).
        k: how many movies each /recommend asks for (the cut-off of HitRate and NDCG).
        modes: passes to run, in this order; ``frozen`` should come before ``applied``.
        api_key: sent as ``Authorization: Bearer <key>`` on every call (services with
            RECSYS_AUTH__ENABLED=true).

    Returns:
        The figures of every pass, and the service's online figures over the applied pass.

    Raises:
        ReplayError: a request failed or answered other than 200 (the message names it).
    """
    rows = sequence.rows
    if not rows:
        raise ReplayError("nothing to replay: the sequence is empty")
    unknown = set(modes) - set(MODES)
    if unknown:
        raise ReplayError(f"unknown replay mode(s) {sorted(unknown)}; choose frozen or applied")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    passes: dict[str, PassFigures] = {}
    online: OnlineFigures | None = None
    with _client(service) as client:
        for mode in modes:
            before = online_totals(client, headers) if mode == "applied" else None
            passes[mode] = _run_pass(client, rows, k, mode, headers)
            if before is not None:
                online = online_delta(before, online_totals(client, headers))
        url = str(client.base_url)
    return ReplayReport(
        test_file=sequence.test_file,
        url=url,
        rows=len(rows),
        users=len({row.user_id for row in rows}),
        selection=sequence.selection,
        passes=passes,
        online=online,
    )


@contextmanager
def _client(service: httpx.Client | str) -> Iterator[httpx.Client]:
    if isinstance(service, httpx.Client):
        yield service
        return
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per request otherwise
    with httpx.Client(base_url=service, timeout=TIMEOUT_S) as client:
        yield client


def _run_pass(
    client: httpx.Client, rows: list[ReplayRow], k: int, mode: Mode, headers: dict[str, str]
) -> PassFigures:
    cold = repeats = posted = requests = 0
    gains = reciprocal = 0.0
    cutoffs = [int(cut) for cut in ONLINE_CUTOFFS if int(cut) <= k]
    ranks: list[int] = []  # of every row's movie in its answer; 0 when absent
    rated: dict[int, set[int]] = {}  # movies each user rated earlier in this sequence
    started = time.perf_counter()
    for n, row in enumerate(rows):
        where = (n, len(rows), mode)
        body = {"user_id": row.user_id, "k": k, "exclude_seen": True}
        answer = _post(client, "/recommend", body, headers, where)
        requests += 1
        items = [int(r["item_id"]) for r in answer["recommendations"]]
        earlier = rated.setdefault(row.user_id, set())
        cold += bool(answer["cold_start"])
        repeats += bool(earlier.intersection(items))
        rank = items.index(row.item_id) + 1 if row.item_id in items else 0
        ranks.append(rank)
        if rank:
            gains += 1.0 / math.log2(rank + 1)
            reciprocal += 1.0 / rank
        if mode == "applied":
            event: dict[str, Any] = {"user_id": row.user_id, "item_id": row.item_id}
            event["timestamp"] = row.timestamp
            if row.rating is not None:
                event["rating"] = row.rating
            accepted = _post(client, "/events", {"events": [event]}, headers, where)
            requests += 1
            posted += int(accepted["accepted"])
        earlier.add(row.item_id)
    seconds = time.perf_counter() - started
    hits = sum(rank > 0 for rank in ranks)
    figures = PassFigures(
        mode=mode,
        k=k,
        rows=len(rows),
        users=len(rated),
        hits=hits,
        hit_rate=hits / len(rows),
        ndcg=gains / len(rows),
        mrr=reciprocal / len(rows),
        hits_at={str(cut): sum(0 < rank <= cut for rank in ranks) for cut in cutoffs},
        cold_start_answers=cold,
        repeats=repeats,
        events_posted=posted,
        requests=requests,
        seconds=seconds,
        requests_per_s=requests / seconds if seconds > 0 else float("nan"),
    )
    logger.info(
        "replay %s pass: %d rows, HitRate@%d %.4f, NDCG@%d %.4f, MRR@%d %.4f, %.1f s",
        mode,
        figures.rows,
        k,
        figures.hit_rate,
        k,
        figures.ndcg,
        k,
        figures.mrr,
        seconds,
    )
    return figures


def _post(
    client: httpx.Client,
    path: str,
    body: dict[str, Any],
    headers: dict[str, str],
    where: tuple[int, int, Mode],
) -> dict[str, Any]:
    """POST `body`; a 429 is waited out (its Retry-After, capped) and retried a few times."""
    n, total, mode = where
    said = f"{mode} pass, row {n + 1} of {total}: POST {client.base_url}{path} {body}"
    for attempt in range(RETRIES_429 + 1):
        try:
            response = client.post(path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            raise ReplayError(
                f"{said} failed: {type(exc).__name__}: {exc}; is the service running "
                "(`recsys serve`) at that URL?"
            ) from exc
        if response.status_code != 429 or attempt == RETRIES_429:
            break
        wait = response.headers.get("retry-after", "1")  # whole seconds (services.auth)
        time.sleep(min(float(wait) if wait.isdigit() else 1.0, MAX_RETRY_AFTER_S))
    if response.status_code in (401, 403):
        raise ReplayError(
            f"{said} answered HTTP {response.status_code}: {response.text[:300]}; give a key "
            "with the recommend and events scopes (--api-key or RECSYS_API_KEY)"
        )
    if response.status_code != 200:
        raise ReplayError(
            f"{said} answered HTTP {response.status_code}: {response.text[:300]}; "
            "serve models trained on the split's train/ directory and replay its test.csv"
        )
    answer: dict[str, Any] = response.json()
    return answer
