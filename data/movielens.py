"""Load any MovieLens directory (ML-100K, ML-1M, ml-latest*) into canonical tables.

The format is detected from the file names. Every problem with the files becomes a `DataError`
that names the file and, for a malformed line, the line number.

Policy for ratings of movies missing from the catalog file: they are dropped and counted
(`Dataset.dropped_unknown_item_ratings`, plus a warning log line). If more than
`MAX_UNKNOWN_ITEM_FRACTION` of the ratings are affected the files do not belong together and
loading fails instead.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from data.errors import DataError, DataFormatError, MalformedLineError
from data.schema import (
    AGE_BUCKETS,
    GENRE_ALIASES,
    GENRES,
    OCCUPATIONS,
    UNKNOWN,
    DataFormat,
    Dataset,
)

logger = logging.getLogger(__name__)

MAX_UNKNOWN_ITEM_FRACTION = 0.05

_FORMAT_FILES: dict[DataFormat, tuple[str, ...]] = {
    DataFormat.ML_100K: ("u.data", "u.item", "u.user"),
    DataFormat.ML_1M: ("ratings.dat", "movies.dat", "users.dat"),
    DataFormat.ML_LATEST: ("ratings.csv", "movies.csv"),
}
_ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
    "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip
_ML100K_OCCUPATIONS = {
    "administrator": "clerical/admin", "artist": "artist", "doctor": "doctor/health care",
    "educator": "academic/educator", "engineer": "technician/engineer",
    "entertainment": "artist", "executive": "executive/managerial",
    "healthcare": "doctor/health care", "homemaker": "homemaker", "lawyer": "lawyer",
    "librarian": "academic/educator", "marketing": "sales/marketing", "none": "unemployed",
    "other": "other", "programmer": "programmer", "retired": "retired",
    "salesman": "sales/marketing", "scientist": "scientist", "student": "college/grad student",
    "technician": "technician/engineer", "writer": "writer",
}  # fmt: skip
_YEAR_RE = re.compile(r"\((\d{4})\)\s*$")
_INTERACTION_COLUMNS = ["user_id", "item_id", "rating", "timestamp"]


def detect_format(directory: str | Path) -> DataFormat:
    """Tell which MovieLens layout a directory holds.

    Raises:
        DataError: the directory does not exist.
        DataFormatError: no known layout matches; the message lists what was expected.
    """
    path = Path(directory)
    if not path.is_dir():
        raise DataError(f"data directory {path} does not exist (set DATA_DIR or pass a path)")
    for fmt, files in _FORMAT_FILES.items():
        if (path / files[0]).exists():
            missing = [f for f in files if not (path / f).exists()]
            if missing:
                raise DataError(
                    f"{path} looks like {fmt.value} but is missing {', '.join(missing)}"
                )
            return fmt
    expected = "; ".join(f"{fmt.value}: {', '.join(files)}" for fmt, files in _FORMAT_FILES.items())
    raise DataFormatError(f"{path} holds no known MovieLens format (expected {expected})")


def load_movielens(directory: str | Path) -> Dataset:
    """Load a MovieLens directory of any supported format into canonical tables.

    Raises:
        DataError: missing or empty files, a malformed line (file and line named), a wrong
            encoding, or too many ratings of movies absent from the catalog.
    """
    path = Path(directory)
    fmt = detect_format(path)
    if fmt is DataFormat.ML_100K:
        ratings = _read_table(path / "u.data", "\t", 4, "ascii")
        items = _items_100k(_read_table(path / "u.item", "|", 24, "latin-1"), path / "u.item")
        users = _users_100k(_read_table(path / "u.user", "|", 5, "ascii"), path / "u.user")
        has_demo = True
    elif fmt is DataFormat.ML_1M:
        ratings = _read_table(path / "ratings.dat", "::", 4, "latin-1")
        items = _items_from_pipe_genres(
            _read_table(path / "movies.dat", "::", 3, "latin-1"), path / "movies.dat"
        )
        users = _users_1m(_read_table(path / "users.dat", "::", 5, "latin-1"), path / "users.dat")
        has_demo = True
    else:
        ratings = _read_csv(path / "ratings.csv", 4)
        items = _items_from_pipe_genres(_read_csv(path / "movies.csv", 3), path / "movies.csv")
        users = None
        has_demo = False

    interactions = _interactions(ratings, path / _FORMAT_FILES[fmt][0])
    interactions, dropped = _drop_unknown_items(interactions, items, path)
    if users is None:
        users = pd.DataFrame({"user_id": np.sort(interactions["user_id"].unique())})
        for col in ("gender", "age_bucket", "occupation", "zip_code"):
            users[col] = UNKNOWN
    return Dataset(
        format=fmt,
        interactions=interactions,
        users=users.reset_index(drop=True),
        items=items.reset_index(drop=True),
        has_demographics=has_demo,
        dropped_unknown_item_ratings=dropped,
    )


def _decode(path: Path, encoding: str) -> str:
    if not path.is_file():
        raise DataError(f"{path} is missing")
    raw = path.read_bytes()
    if not raw.strip():
        raise DataError(f"{path} is empty")
    if b"\x00" in raw[:4096]:
        raise DataError(f"{path} has NUL bytes: wrong encoding (expected {encoding} text)")
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line_no = raw[: exc.start].count(b"\n") + 1
        raise DataError(
            f"{path}, line {line_no}: not valid {encoding} text (byte {raw[exc.start]:#x}); "
            f"wrong encoding?"
        ) from exc


def _check_fields(path: Path, lines: list[str], sep: str, n_fields: int) -> None:
    for i, line in enumerate(lines, start=1):
        if line.strip() and len(line.split(sep)) != n_fields:
            raise MalformedLineError(
                str(path), i, f"expected {n_fields} fields separated by {sep!r}", line
            )


def _read_table(path: Path, sep: str, n_fields: int, encoding: str) -> pd.DataFrame:
    """Read a separator-delimited file with no quoting into a frame of strings."""
    text = _decode(path, encoding)
    if sep == "::":
        if "\t" in text:
            raise DataError(f"{path} contains tab characters; expected '::'-separated fields")
        text = text.replace("::", "\t")
        sep = "\t"
    try:
        frame = pd.read_csv(
            io.StringIO(text), sep=sep, header=None, dtype=str, quoting=csv.QUOTE_NONE,
            keep_default_na=False, engine="c",
        )  # fmt: skip
    except pd.errors.ParserError:
        _check_fields(path, text.splitlines(), sep, n_fields)
        raise
    if frame.shape[1] != n_fields:
        _check_fields(path, text.splitlines(), sep, n_fields)
        raise DataError(f"{path}: expected {n_fields} fields per line, found {frame.shape[1]}")
    frame.attrs["lines"] = text.splitlines()
    return frame


def _read_csv(path: Path, n_fields: int) -> pd.DataFrame:
    """Read an ml-latest CSV (header row, quoted fields) into a frame of strings."""
    text = _decode(path, "utf-8")
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except pd.errors.ParserError as exc:
        rows = csv.reader(io.StringIO(text))
        for i, row in enumerate(rows, start=1):
            if row and len(row) != n_fields:
                raise MalformedLineError(
                    str(path), i, f"expected {n_fields} comma-separated fields, got {len(row)}"
                ) from exc
        raise DataError(f"{path}: {exc}") from exc
    if frame.empty:
        raise DataError(f"{path} has a header but no rows")
    if frame.shape[1] != n_fields:
        raise DataError(f"{path}: expected {n_fields} columns, found {list(frame.columns)}")
    frame.columns = range(n_fields)
    frame.attrs["header"] = True
    frame.attrs["lines"] = text.splitlines()
    return frame


def _column(
    frame: pd.DataFrame, col: int, path: Path, kind: Callable[[pd.Series], pd.Series], what: str
) -> pd.Series:
    """Convert one column, naming the first bad line on failure."""
    values = frame[col]
    try:
        return kind(values)
    except (ValueError, TypeError):
        converted = pd.to_numeric(values, errors="coerce")
        bad = int(np.flatnonzero(converted.isna().to_numpy())[0])
        line_no = bad + 1 + (1 if frame.attrs.get("header") else 0)
        lines = frame.attrs.get("lines", [])
        line = lines[line_no - 1] if line_no - 1 < len(lines) else ""
        raise MalformedLineError(str(path), line_no, f"{what} {values.iloc[bad]!r}", line) from None


def _ints(values: pd.Series) -> pd.Series:
    return values.astype("int64")


def _floats(values: pd.Series) -> pd.Series:
    out = values.astype("float64")
    if out.isna().any():
        raise ValueError("missing value")
    return out


def _interactions(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "user_id": _column(frame, 0, path, _ints, "user id is not an integer:"),
            "item_id": _column(frame, 1, path, _ints, "movie id is not an integer:"),
            "rating": _column(frame, 2, path, _floats, "rating is not a number:").astype("float32"),
            "timestamp": _column(frame, 3, path, _ints, "timestamp is not an integer:"),
        }
    )
    bad = np.flatnonzero(~out["rating"].between(0.5, 5.0).to_numpy())
    if bad.size:
        line_no = int(bad[0]) + 1 + (1 if frame.attrs.get("header") else 0)
        raise MalformedLineError(
            str(path), line_no, f"rating {out['rating'].iloc[bad[0]]} outside 0.5..5"
        )
    return out


def _drop_unknown_items(
    interactions: pd.DataFrame, items: pd.DataFrame, path: Path
) -> tuple[pd.DataFrame, int]:
    known = interactions["item_id"].isin(items["item_id"])
    dropped = int((~known).sum())
    if dropped == 0:
        return interactions.reset_index(drop=True), 0
    if dropped > MAX_UNKNOWN_ITEM_FRACTION * len(interactions):
        raise DataError(
            f"{path}: {dropped} of {len(interactions)} ratings refer to movies missing from the "
            f"catalog file (more than {MAX_UNKNOWN_ITEM_FRACTION:.0%}); the files do not match"
        )
    logger.warning("%s: dropped %d ratings of movies missing from the catalog", path, dropped)
    return interactions[known].reset_index(drop=True), dropped


def _year(titles: pd.Series) -> pd.Series:
    return titles.str.extract(_YEAR_RE, expand=False).astype("float64")


def _genre_tuple(names: list[str]) -> tuple[str, ...]:
    genres = {GENRE_ALIASES.get(n, n) for n in names}
    return tuple(g for g in GENRES if g in genres)


def _items_100k(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    flags = frame.loc[:, 5:23]
    if not flags.isin(["0", "1"]).all().all():
        row = int(np.flatnonzero(~flags.isin(["0", "1"]).all(axis=1).to_numpy())[0])
        raise MalformedLineError(str(path), row + 1, "genre flags must be 0 or 1")
    flag_values = flags.to_numpy() == "1"
    genres = [_genre_tuple([_ML100K_GENRES[j] for j in np.flatnonzero(r)]) for r in flag_values]
    titles = frame[1].str.strip()
    year = _year(titles)
    release = pd.to_datetime(frame[2], format="%d-%b-%Y", errors="coerce").dt.year
    return pd.DataFrame(
        {
            "item_id": _column(frame, 0, path, _ints, "movie id is not an integer:"),
            "title": titles,
            "year": year.fillna(release.astype("float64")),
            "genres": genres,
        }
    )


def _items_from_pipe_genres(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    titles = frame[1].str.strip()
    return pd.DataFrame(
        {
            "item_id": _column(frame, 0, path, _ints, "movie id is not an integer:"),
            "title": titles,
            "year": _year(titles),
            "genres": [_genre_tuple(g.split("|")) for g in frame[2]],
        }
    )


def _age_bucket(age: int) -> str:
    bounds = [int(b) for b in AGE_BUCKETS]
    idx = int(np.searchsorted(bounds, age, side="right")) - 1
    return AGE_BUCKETS[max(idx, 0)]


def _users_100k(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    ages = _column(frame, 1, path, _ints, "age is not an integer:")
    return pd.DataFrame(
        {
            "user_id": _column(frame, 0, path, _ints, "user id is not an integer:"),
            "gender": frame[2].where(frame[2].isin(["M", "F"]), UNKNOWN),
            "age_bucket": [_age_bucket(int(a)) for a in ages],
            "occupation": frame[3].map(_ML100K_OCCUPATIONS).fillna(UNKNOWN),
            "zip_code": frame[4].replace("", UNKNOWN),
        }
    )


def _users_1m(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    occ = _column(frame, 3, path, _ints, "occupation code is not an integer:")
    return pd.DataFrame(
        {
            "user_id": _column(frame, 0, path, _ints, "user id is not an integer:"),
            "gender": frame[1].where(frame[1].isin(["M", "F"]), UNKNOWN),
            "age_bucket": frame[2].where(frame[2].isin(AGE_BUCKETS), UNKNOWN),
            "occupation": [OCCUPATIONS[o] if 0 <= o < len(OCCUPATIONS) else UNKNOWN for o in occ],
            "zip_code": frame[4].replace("", UNKNOWN),
        }
    )
