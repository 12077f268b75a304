"""README's training table, written from `recsys train --report FILE.json` files.

`recsys training-table reports/training/*.json --readme README.md` replaces the lines between
the two markers below with one row per report, so the table is what the reports say and
nothing else. Each report's file name (without ``.json``) names its row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

START = "<!-- training-table: start (recsys training-table writes this) -->"
END = "<!-- training-table: end -->"
HEADER = (
    "| data (report) | ratings | processes | two-tower s (epochs) | sources s | ranking s "
    "| whole `recsys train` s | peak RSS GiB | validation Recall@100 (users) | skipped |\n"
    "|---|---|---|---|---|---|---|---|---|---|"
)


def _seconds(report: dict[str, Any], step: str) -> str:
    value = report.get("seconds", {}).get(step)
    return "–" if value is None else f"{value:,.0f}"


def row(name: str, report: dict[str, Any]) -> str:
    """One table row from one report (what `TrainReport.to_dict` wrote)."""
    info = report.get("info", {})
    tower = report.get("validation", {}).get("retrieval (validation)", {})
    recall = tower.get("valid_recall@100")
    users = tower.get("valid_users")
    recall_cell = "–" if recall is None else f"{recall:.4f}"
    if recall is not None and users:
        recall_cell += f" ({users:,.0f})"
    epochs = tower.get("epochs_run")
    tower_cell = "–" if "train_seconds" not in tower else f"{tower['train_seconds']:,.0f}"
    if epochs is not None:
        tower_cell += f" ({epochs:.0f})"
    skipped = info.get("skipped", {})
    cells = [
        f"{name} ({info.get('dataset', '?')})",
        f"{info.get('known_ratings', 0):,}",
        f"{tower.get('processes', 1):.0f}",
        tower_cell,
        _seconds(report, "sources"),
        _seconds(report, "ranking"),
        f"{report.get('total_seconds', 0):,.0f}",
        f"{report.get('max_peak_rss_mb', 0) / 1024:.1f}",
        recall_cell,
        ", ".join(sorted(skipped)) or "none",
    ]
    return "| " + " | ".join(cells) + " |"


def table(paths: list[Path]) -> str:
    """The markdown table of `paths`, in the order given."""
    rows = [row(p.stem, json.loads(p.read_text())) for p in paths]
    return "\n".join([HEADER, *rows])


def replace_block(text: str, new_table: str) -> str:
    """`text` with the lines between the markers replaced by `new_table`."""
    if START not in text or END not in text:
        raise ValueError(f"the file has no {START!r} ... {END!r} block to replace")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{new_table}\n{END}{tail}"
