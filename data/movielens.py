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
    if not path.exists():
        raise DataError(f"data directory {path} does not exist (set DATA_DIR or pass a path)")
    if not path.is_dir():
        raise DataError(f"{path} is a file; expected a MovieLens directory")
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
    original = _decode(path, encoding)
    lines = original.splitlines()  # for messages: the file's own text, line by line
    text, parse_sep = original, sep
    if sep == "::":
        if "\t" in text:
            raise DataError(f"{path} contains tab characters; expected '::'-separated fields")
        text, parse_sep = text.replace("::", "\t"), "\t"
    try:
        frame = pd.read_csv(
            io.StringIO(text), sep=parse_sep, header=None, dtype=str, quoting=csv.QUOTE_NONE,
            keep_default_na=False, engine="c",
        )  # fmt: skip
    except pd.errors.ParserError as exc:
        _check_fields(path, lines, sep, n_fields)
        raise DataError(f"{path}: cannot parse ({exc})") from exc
    # Short lines come back padded with "": every line must hold exactly n_fields - 1 separators.
    if frame.shape[1] != n_fields or text.count(parse_sep) != len(frame) * (n_fields - 1):
        _check_fields(path, lines, sep, n_fields)
        raise DataError(f"{path}: expected {n_fields} fields per line, found {frame.shape[1]}")
    _remember_lines(frame, lines, header=False)
    return frame


def _remember_lines(frame: pd.DataFrame, lines: list[str], header: bool) -> None:
    """Keep the text lines, and each row's line number when pandas skipped empty lines."""
    frame.attrs["lines"] = lines
    frame.attrs["header"] = header
    if "" in lines:
        numbers = np.flatnonzero(np.array([bool(line) for line in lines])) + 1
        frame.attrs["line_numbers"] = numbers[1:] if header else numbers


def _line_of(frame: pd.DataFrame, row: int) -> tuple[int, str]:
    """The 1-based line number and text of data row `row` of `frame`."""
    numbers = frame.attrs.get("line_numbers")
    if numbers is not None and row < len(numbers):
        line_no = int(numbers[row])
    else:
        line_no = row + 1 + int(frame.attrs.get("header", False))
    lines = frame.attrs.get("lines", [])
    return line_no, lines[line_no - 1] if line_no - 1 < len(lines) else ""


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
    if (frame == "").to_numpy().any():  # short rows come back padded with ""
        for i, row in enumerate(csv.reader(io.StringIO(text)), start=1):
            if row and len(row) != n_fields:
                raise MalformedLineError(
                    str(path), i, f"expected {n_fields} comma-separated fields, got {len(row)}"
                )
    frame.columns = range(n_fields)
    _remember_lines(frame, text.splitlines(), header=True)
    return frame


def _column(
    frame: pd.DataFrame, col: int, path: Path, kind: Callable[[pd.Series], pd.Series], what: str
) -> pd.Series:
    """Convert one column, naming the first bad line on failure."""
    values = frame[col]
    try:
        return kind(values)
    except (ValueError, TypeError, OverflowError):
        bad = _first_bad(values, integer=kind is _ints)
        line_no, line = _line_of(frame, bad)
        raise MalformedLineError(str(path), line_no, f"{what} {values.iloc[bad]!r}", line) from None


def _first_bad(values: pd.Series, integer: bool) -> int:
    """Row of the first value that is not a number (not an integer when `integer`)."""
    converted = pd.to_numeric(values, errors="coerce")
    bad = converted.isna().to_numpy()
    if integer:
        bad |= (converted != converted.round()).to_numpy()
    rows = np.flatnonzero(bad)
    if rows.size:
        return int(rows[0])
    for i, value in enumerate(values):  # e.g. an integer too large for int64
        try:
            int(value) if integer else float(value)
            if integer and abs(int(value)) >= 2**63:
                return i
        except (ValueError, TypeError):
            return i
    return 0


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
        line_no, line = _line_of(frame, int(bad[0]))
        raise MalformedLineError(
            str(path), line_no, f"rating {out['rating'].iloc[bad[0]]} outside 0.5..5", line
        )
    return out


def _check_unique(frame: pd.DataFrame, ids: pd.Series, path: Path, what: str) -> None:
    """A catalog or users file lists each id once."""
    dup = np.flatnonzero(ids.duplicated().to_numpy())
    if dup.size:
        line_no, line = _line_of(frame, int(dup[0]))
        raise MalformedLineError(
            str(path), line_no, f"{what} {ids.iloc[dup[0]]} listed twice", line
        )


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
        line_no, line = _line_of(frame, row)
        raise MalformedLineError(str(path), line_no, "genre flags must be 0 or 1", line)
    flag_values = flags.to_numpy() == "1"
    genres = [_genre_tuple([_ML100K_GENRES[j] for j in np.flatnonzero(r)]) for r in flag_values]
    titles = frame[1].str.strip()
    year = _year(titles)
    release = pd.to_datetime(frame[2], format="%d-%b-%Y", errors="coerce").dt.year
    out = pd.DataFrame(
        {
            "item_id": _column(frame, 0, path, _ints, "movie id is not an integer:"),
            "title": titles,
            "year": year.fillna(release.astype("float64")),
            "genres": genres,
        }
    )
    _check_unique(frame, out["item_id"], path, "movie id")
    return out


def _items_from_pipe_genres(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    titles = frame[1].str.strip()
    out = pd.DataFrame(
        {
            "item_id": _column(frame, 0, path, _ints, "movie id is not an integer:"),
            "title": titles,
            "year": _year(titles),
            "genres": [_genre_tuple(g.split("|")) for g in frame[2]],
        }
    )
    _check_unique(frame, out["item_id"], path, "movie id")
    return out


def _age_bucket(age: int) -> str:
    bounds = [int(b) for b in AGE_BUCKETS]
    idx = int(np.searchsorted(bounds, age, side="right")) - 1
    return AGE_BUCKETS[max(idx, 0)]


def _users_100k(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    ages = _column(frame, 1, path, _ints, "age is not an integer:")
    out = pd.DataFrame(
        {
            "user_id": _column(frame, 0, path, _ints, "user id is not an integer:"),
            "gender": frame[2].where(frame[2].isin(["M", "F"]), UNKNOWN),
            "age_bucket": [_age_bucket(int(a)) for a in ages],
            "occupation": frame[3].map(_ML100K_OCCUPATIONS).fillna(UNKNOWN),
            "zip_code": frame[4].replace("", UNKNOWN),
        }
    )
    _check_unique(frame, out["user_id"], path, "user id")
    return out


def _users_1m(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    occ = _column(frame, 3, path, _ints, "occupation code is not an integer:")
    out = pd.DataFrame(
        {
            "user_id": _column(frame, 0, path, _ints, "user id is not an integer:"),
            "gender": frame[1].where(frame[1].isin(["M", "F"]), UNKNOWN),
            "age_bucket": frame[2].where(frame[2].isin(AGE_BUCKETS), UNKNOWN),
            "occupation": [OCCUPATIONS[o] if 0 <= o < len(OCCUPATIONS) else UNKNOWN for o in occ],
            "zip_code": frame[4].replace("", UNKNOWN),
        }
    )
    _check_unique(frame, out["user_id"], path, "user id")
    return out
