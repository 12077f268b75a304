"""README's training table comes from `recsys train --report` files and nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from services.tooling.training_table import END, START, replace_block

REPORT = {  # the shape `TrainReport.to_dict` writes, figures made up for the test
    "tags": {"two-tower": "two-tower:abc"},
    "validation": {
        "retrieval (validation)": {
            "valid_recall@100": 0.47461, "valid_users": 6040.0, "epochs_run": 7.0,
            "train_seconds": 101.4, "processes": 2.0,
        }
    },
    "seconds": {"load": 3.2, "features": 9.9, "retrieval": 110.2, "sources": 61.5,
                "ranking": 40.4},
    "total_seconds": 225.2,
    "peak_rss_mb": {"load": 900.0, "ranking": 3174.4},
    "max_peak_rss_mb": 3174.4,
    "info": {"dataset": "ml-1m", "known_ratings": 1000000,
             "skipped": {"ease": "needs 29 GiB"}},
}  # fmt: skip


def test_recsys_training_table_rewrites_the_readme_block(tmp_path: Path) -> None:
    report = tmp_path / "ml-1m-synth.json"
    report.write_text(json.dumps(REPORT))
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n{START}\nold table\n{END}\nafter\n")
    recsys = Path(sys.executable).with_name("recsys")
    done = subprocess.run(
        [str(recsys), "training-table", str(report), "--readme", str(readme)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    text = readme.read_text()
    assert "old table" not in text
    assert text.startswith("# Title\n\nbefore\n")
    assert text.endswith(f"{END}\nafter\n")
    row = next(line for line in text.splitlines() if line.startswith("| ml-1m-synth"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells == ["ml-1m-synth (ml-1m)", "1,000,000", "2", "101 (7)", "62", "40", "225",
                     "3.1", "0.4746 (6,040)", "ease"]  # fmt: skip


def test_a_file_without_the_markers_is_refused() -> None:
    with pytest.raises(ValueError, match=r"no .* block"):
        replace_block("# no markers here\n", "| table |")
