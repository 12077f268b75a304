"""`recsys data split`: the protocol's windows as files, checked against the raw rating lines."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from data.errors import DataError
from data.split_files import read_test, write_split
from services.tooling.cli import app

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "data"

# (directory, ratings file, encoding, separator, header line)
REAL_SETS = [
    (SHARED / "ml-100k", "u.data", "ascii", "\t", False),
    (SHARED / "ml-latest-small-2016", "ratings.csv", "utf-8", ",", True),
]


def _rows(path: Path, encoding: str, sep: str, header: bool) -> list[tuple[str, int, int, int]]:
    """(line, user, item, timestamp) of every rating line, parsed by hand."""
    lines = path.read_text(encoding=encoding).splitlines()[int(header) :]
    out = []
    for line in lines:
        fields = line.split(sep)
        out.append((line, int(fields[0]), int(fields[1]), int(fields[3])))
    return out


@pytest.mark.parametrize(("source", "name", "encoding", "sep", "header"), REAL_SETS)
def test_real_set_splits_into_train_lines_and_test_rows(
    tmp_path: Path, source: Path, name: str, encoding: str, sep: str, header: bool
) -> None:
    files = write_split(source, tmp_path / "out")
    original = _rows(source / name, encoding, sep, header)
    kept = _rows(files.train_dir / name, encoding, sep, header)
    # Train lines are original lines, in the original order.
    original_lines = [row[0] for row in original]
    positions = [original_lines.index(row[0]) for row in kept[:50]]
    assert positions == sorted(positions)
    assert {row[0] for row in kept} <= set(original_lines)
    with files.test_file.open() as handle:
        test = [(int(r["user_id"]), int(r["item_id"]), int(r["timestamp"]))
                for r in csv.DictReader(handle)]  # fmt: skip
    assert len(kept) + len(test) == len(original)
    # Per user: the last ceil(20%) by (timestamp, item id) are held out, the rest kept.
    by_user: dict[int, list[tuple[int, int]]] = {}
    for _, user, item, ts in original:
        by_user.setdefault(user, []).append((ts, item))
    expected_test = set()
    for user, rows in by_user.items():
        rows.sort()
        n = max(1, math.ceil(0.2 * len(rows))) if len(rows) > 1 else 0
        expected_test |= {(user, item, ts) for ts, item in rows[len(rows) - n :]}
    assert set(test) == expected_test
    assert {(u, i, t) for _, u, i, t in kept} == {(u, i, t) for _, u, i, t in original} - set(
        expected_test
    )
    if header:
        assert (files.train_dir / name).read_text(encoding=encoding).splitlines()[0] == (
            (source / name).read_text(encoding=encoding).splitlines()[0]
        )
    # The other files are copied unchanged; the users file lists the test users.
    for other in source.iterdir():
        if other.is_file() and other.name != name:
            assert (files.train_dir / other.name).read_bytes() == other.read_bytes()
    users = [int(line) for line in files.users_file.read_text().splitlines()]
    assert users == sorted({u for u, _, _ in test})


def test_ml1m_format_round_trips(write_format: Callable[[str], Path], tmp_path: Path) -> None:
    source = write_format("ml-1m")
    files = write_split(source, tmp_path / "out")
    kept = (files.train_dir / "ratings.dat").read_text(encoding="latin-1").splitlines()
    total = (source / "ratings.dat").read_text(encoding="latin-1").splitlines()
    assert len(kept) + len(read_test(files.test_file)) == len(total)
    assert set(kept) <= set(total)


def test_out_inside_the_input_is_refused(write_format: Callable[[str], Path]) -> None:
    source = write_format("ml-100k")
    with pytest.raises(DataError, match="outside the input"):
        write_split(source, source / "split")


def test_cli_prints_where_it_wrote(write_format: Callable[[str], Path], tmp_path: Path) -> None:
    source = write_format("ml-latest")
    result = CliRunner().invoke(app, ["data", "split", str(source), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "test ratings" in result.output
    assert (tmp_path / "o" / "train" / "ratings.csv").is_file()
