"""The service's own online figures over a replay pass (GET /info's ``online_quality``).

`services.online_quality` counts, since its process started, the events it matched to a
recommendation it remembered, the hits at ranks 1, 5 and 10 and the sum of reciprocal ranks.
Read before and after a pass, the difference is the service's HitRate@1/5/10 and MRR@10 over
that pass alone, whatever traffic came before. /info answers from one API worker: with several
workers (``RECSYS_WORKERS``) the figures are that worker's, and events another worker received
are not in them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

ONLINE_CUTOFFS = ("1", "5", "10")  # the cut-offs of services.online_quality


@dataclass(frozen=True)
class OnlineFigures:
    """The service's online figures over one pass (GET /info, after - before).

    ``note`` says why they are missing (counts 0, rates None then): a key without the admin
    scope, or a service without ``online_quality`` in /info.
    """

    events: int  # events the service matched to a recommendation it remembered
    hits: dict[str, int]  # by cut-off "1", "5", "10"
    hit_rate: dict[str, float | None]
    mrr: float | None  # MRR@10
    note: str | None = None


def online_totals(client: httpx.Client, headers: dict[str, str]) -> dict[str, Any] | str:
    """The service's counts since it started (``since_start.overall``), or why there are none.

    Raises:
        httpx.HTTPError: the service cannot be reached.
    """
    response = client.get("/info", headers=headers)
    if response.status_code in (401, 403):
        return (
            f"GET /info answered {response.status_code}: the key needs the admin scope "
            "for the service's own figures"
        )
    if response.status_code != 200:
        return f"GET /info answered {response.status_code}: {response.text[:200]}"
    online = response.json().get("online_quality")
    if not isinstance(online, dict):
        return "the service's /info has no online_quality (a service older than the replay?)"
    overall: dict[str, Any] = online["since_start"]["overall"]
    return overall


def online_delta(before: dict[str, Any] | str, after: dict[str, Any] | str) -> OnlineFigures:
    """The figures of what the service counted between two `online_totals` readings."""
    if isinstance(before, str) or isinstance(after, str):
        note = before if isinstance(before, str) else str(after)
        return OnlineFigures(0, dict.fromkeys(ONLINE_CUTOFFS, 0),
                             dict.fromkeys(ONLINE_CUTOFFS), None, note)  # fmt: skip
    events = int(after["events"]) - int(before["events"])
    hits = {cut: int(after["hits"][cut]) - int(before["hits"][cut]) for cut in ONLINE_CUTOFFS}
    reciprocal = float(after["reciprocal_rank_sum"]) - float(before["reciprocal_rank_sum"])
    return OnlineFigures(
        events=events,
        hits=hits,
        hit_rate={cut: (h / events if events else None) for cut, h in hits.items()},
        mrr=reciprocal / events if events else None,
    )


def online_table(
    online: OnlineFigures, k: int, rows: int, hits_at: dict[str, int], mrr: float
) -> tuple[list[str], list[list[str]]]:
    """(header, rows) of a replay pass (`rows` events, `hits_at` cut-offs, MRR@`k`) beside the
    service's online figures over it."""
    header = ["figure", "replay (applied)", "service online", "online - replay"]
    table = [["events", f"{rows:d} replayed", f"{online.events:d} matched", ""]]
    for cut in ONLINE_CUTOFFS:
        if int(cut) <= k:
            table.append(
                [f"HitRate@{cut}", *_side_by_side(hits_at[cut] / rows, online.hit_rate[cut])]
            )
    if k <= int(ONLINE_CUTOFFS[-1]):  # the service's MRR is MRR@10
        table.append([f"MRR@{k}", *_side_by_side(mrr, online.mrr)])
    if online.note:
        table.append(["note", "", online.note, ""])
    return header, table


def _side_by_side(replayed: float, online: float | None) -> list[str]:
    if online is None:
        return [f"{replayed:.4f}", "-", ""]
    return [f"{replayed:.4f}", f"{online:.4f}", f"{online - replayed:+.4f}"]
