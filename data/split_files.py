"""The protocol's split written as files (`recsys data split`), to check a deployment as measured.

``OUT/train/`` is a MovieLens directory of the input's own format: every file is copied as it is,
except the ratings file, which keeps exactly the lines of the train window (their original text
and order). ``OUT/test.csv`` holds the held-out window (``user_id,item_id,rating,timestamp``) and
``OUT/test_users.txt`` its users, one per line, ready for ``recsys recommend --batch``. Train a
service on ``OUT/train``, ask it for those users and score the answers with ``recsys evaluate
--recommendations``: the figures are the deployed service's, on ratings it never saw.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from data.errors import DataError
from data.movielens import detect_format, load_movielens
from data.schema import DataFormat
from data.split import DEFAULT_FRACTION, holdout_last

# Ratings file, its encoding, field separator and whether it starts with a header line.
_RATINGS_FILE: dict[DataFormat, tuple[str, str, str, bool]] = {
    DataFormat.ML_100K: ("u.data", "ascii", "\t", False),
    DataFormat.ML_1M: ("ratings.dat", "latin-1", "::", False),
    DataFormat.ML_LATEST: ("ratings.csv", "utf-8", ",", True),
}
TEST_FILE = "test.csv"
TEST_USERS_FILE = "test_users.txt"


@dataclass(frozen=True)
class SplitFiles:
    """Where `write_split` put the two windows and how large they are."""

    train_dir: Path
    test_file: Path
    users_file: Path
    train_ratings: int
    test_ratings: int
    test_users: int


def write_split(
    directory: str | Path, out: str | Path, fraction: float = DEFAULT_FRACTION
) -> SplitFiles:
    """Split a MovieLens directory per user by time and write both windows.

    Args:
        directory: a MovieLens directory of any supported format.
        out: where to write ``train/``, ``test.csv`` and ``test_users.txt`` (created).
        fraction: each user's held-out share (the protocol's 0.2).

    Returns:
        The paths written and the window sizes.

    Raises:
        DataError: the input cannot be loaded, or `out` is the input directory itself.
    """
    source, target = Path(directory), Path(out)
    if target.resolve() == source.resolve() or source.resolve() in target.resolve().parents:
        raise DataError(f"--out {target} must lie outside the input directory {source}")
    fmt = detect_format(source)
    dataset = load_movielens(source)
    train, test = holdout_last(dataset.interactions, fraction)
    train_dir = target / "train"
    train_dir.mkdir(parents=True, exist_ok=True)
    name, encoding, sep, header = _RATINGS_FILE[fmt]
    for file in source.iterdir():
        if file.is_file() and file.name != name:
            shutil.copy2(file, train_dir / file.name)
    lines = (source / name).read_text(encoding=encoding).splitlines()
    kept = _lines_of(lines[1:] if header else lines, sep, train)
    text = "\n".join(([lines[0]] if header else []) + kept) + "\n"
    (train_dir / name).write_text(text, encoding=encoding)
    test_file = target / TEST_FILE
    test[["user_id", "item_id", "rating", "timestamp"]].to_csv(test_file, index=False)
    users = np.unique(test["user_id"].to_numpy(np.int64))
    users_file = target / TEST_USERS_FILE
    users_file.write_text("".join(f"{u}\n" for u in users))
    return SplitFiles(train_dir, test_file, users_file, len(kept), len(test), len(users))


def _lines_of(lines: list[str], sep: str, window: pd.DataFrame) -> list[str]:
    """The ratings lines whose (user, item, timestamp) lie in `window`, in file order."""
    wanted = set(
        zip(
            window["user_id"].tolist(),
            window["item_id"].tolist(),
            window["timestamp"].tolist(),
            strict=True,
        )
    )
    kept = []
    for line in lines:
        fields = line.split(sep)
        if len(fields) >= 4 and (int(fields[0]), int(fields[1]), int(fields[3])) in wanted:
            kept.append(line)
    if len(kept) != len(wanted):
        raise DataError(f"found {len(kept)} of the {len(wanted)} train ratings in the file")
    return kept


def read_test(path: str | Path) -> pd.DataFrame:
    """Read a held-out window written by `write_split` (``user_id,item_id,...`` CSV).

    Raises:
        DataError: the file is missing or lacks the ``user_id`` / ``item_id`` columns.
    """
    file = Path(path)
    if not file.is_file():
        raise DataError(f"test file {file} does not exist (write it with `recsys data split`)")
    frame = pd.read_csv(file)
    missing = {"user_id", "item_id"} - set(frame.columns)
    if missing:
        raise DataError(f"{file} lacks the column(s) {sorted(missing)}")
    return frame.astype({"user_id": np.int64, "item_id": np.int64})
