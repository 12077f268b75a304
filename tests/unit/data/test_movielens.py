"""Loaders on generated files in the three formats, format detection, and every bad-data case."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from data.errors import DataError, DataFormatError, MalformedLineError
from data.movielens import detect_format, load_movielens
from data.schema import UNKNOWN, DataFormat
from data.synth import OCCUPATION_TO_100K, SyntheticData
from services.tooling.cli import app


def _whole_stars(ratings: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(ratings + 0.5), 1, 5)


@pytest.mark.parametrize("fmt", ["ml-100k", "ml-1m", "ml-latest"])
def test_round_trip(fmt: str, small_synth: SyntheticData, write_format: Callable[[str], Path]):
    dataset = load_movielens(write_format(fmt))
    truth = small_synth

    assert dataset.format == DataFormat(fmt)
    got = dataset.interactions.sort_values(["user_id", "timestamp"]).reset_index(drop=True)
    want = truth.interactions
    for col in ("user_id", "item_id", "timestamp"):
        np.testing.assert_array_equal(got[col].to_numpy(), want[col].to_numpy())
    expected = want["rating"].to_numpy()
    if fmt != "ml-latest":  # ML-100K and ML-1M hold whole stars only
        expected = _whole_stars(expected)
    np.testing.assert_array_equal(got["rating"].to_numpy(), expected)
    assert dataset.dropped_unknown_item_ratings == 0

    items = dataset.items.set_index("item_id")
    assert list(items["title"]) == list(truth.items["title"])  # latin-1 letters and commas
    assert list(items["genres"]) == list(truth.items["genres"])
    np.testing.assert_array_equal(items["year"].to_numpy(), truth.items["year"].to_numpy())


@pytest.mark.parametrize("fmt", ["ml-100k", "ml-1m"])
def test_demographics_round_trip(
    fmt: str, small_synth: SyntheticData, write_format: Callable[[str], Path]
):
    users = load_movielens(write_format(fmt)).users
    truth = small_synth.users
    assert list(users["gender"]) == list(truth["gender"])
    assert list(users["age_bucket"]) == list(truth["age_bucket"])
    assert list(users["zip_code"]) == list(truth["zip_code"])
    if fmt == "ml-1m":
        assert list(users["occupation"]) == list(truth["occupation"])
    else:  # ML-100K's smaller vocabulary: compare through its names
        assert list(users["occupation"].map(OCCUPATION_TO_100K)) == list(
            truth["occupation"].map(OCCUPATION_TO_100K)
        )


def test_ml_latest_has_no_demographics(write_format: Callable[[str], Path]):
    dataset = load_movielens(write_format("ml-latest"))
    assert not dataset.has_demographics
    for col in ("gender", "age_bucket", "occupation", "zip_code"):
        assert set(dataset.users[col]) == {UNKNOWN}
    assert set(dataset.users["user_id"]) == set(dataset.interactions["user_id"])


def test_files_use_the_real_encodings_and_separators(write_format: Callable[[str], Path]):
    movies_dat = (write_format("ml-1m") / "movies.dat").read_bytes()
    assert "Amélie".encode("latin-1") in movies_dat  # latin-1, not UTF-8
    assert b"::" in movies_dat.splitlines()[0]
    csv_text = (write_format("ml-latest") / "movies.csv").read_text(encoding="utf-8")
    assert '"Good, the Bad and the Ugly, The (' in csv_text  # quoted because of the commas
    assert csv_text.startswith("movieId,title,genres\n")
    u_item = (write_format("ml-100k") / "u.item").read_bytes().decode("latin-1")
    assert len(u_item.splitlines()[0].split("|")) == 24  # 5 fields + 19 genre flags


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("ml-100k", DataFormat.ML_100K),
        ("ml-1m", DataFormat.ML_1M),
        ("ml-latest", DataFormat.ML_LATEST),
    ],
)
def test_detect_format(fmt: str, expected: DataFormat, write_format: Callable[[str], Path]):
    assert detect_format(write_format(fmt)) is expected


def _replace_line(path: Path, line_no: int, text: str, encoding: str = "latin-1") -> None:
    lines = path.read_text(encoding=encoding).splitlines()
    lines[line_no - 1] = text
    path.write_text("\n".join(lines) + "\n", encoding=encoding)


def _missing_dir(d: Path) -> Path:
    return d / "nowhere"


def _remove(name: str) -> Callable[[Path], Path]:
    def damage(d: Path) -> Path:
        (d / name).unlink()
        return d

    return damage


def _unknown_format(d: Path) -> Path:
    for f in d.iterdir():
        f.rename(d / f"{f.name}.bak")
    return d


def _set_line(name: str, line_no: int, text: str) -> Callable[[Path], Path]:
    def damage(d: Path) -> Path:
        _replace_line(d / name, line_no, text)
        return d

    return damage


def _blank_then_bad(d: Path) -> Path:
    lines = (d / "u.data").read_text().splitlines()
    lines[3] = ""  # pandas skips empty lines; the reported line number must not shift
    lines[6] = "1\t2\tfive\t881250949"
    (d / "u.data").write_text("\n".join(lines) + "\n")
    return d


def _empty(name: str) -> Callable[[Path], Path]:
    def damage(d: Path) -> Path:
        (d / name).write_bytes(b"")
        return d

    return damage


def _header_only(d: Path) -> Path:
    (d / "movies.csv").write_text("movieId,title,genres\n")
    return d


def _utf16(d: Path) -> Path:
    path = d / "ratings.csv"
    path.write_bytes(path.read_text(encoding="utf-8").encode("utf-16"))
    return d


def _latin1_in_utf8(d: Path) -> Path:
    path = d / "movies.csv"
    path.write_bytes(path.read_text(encoding="utf-8").encode("latin-1"))  # "Amélie" on line 2
    return d


def _many_unknown_movies(d: Path) -> Path:
    lines = (d / "ratings.dat").read_text(encoding="latin-1").splitlines()
    for i in range(0, len(lines), 5):  # 20% of the ratings point at movie 999999
        user, _, rating, ts = lines[i].split("::")
        lines[i] = f"{user}::999999::{rating}::{ts}"
    (d / "ratings.dat").write_text("\n".join(lines) + "\n", encoding="latin-1")
    return d


BAD_DATA = [
    # the directory does not exist
    pytest.param("ml-1m", _missing_dir, DataError, ["does not exist"], id="missing-dir"),
    # ML-1M without users.dat
    pytest.param("ml-1m", _remove("users.dat"), DataError, ["missing users.dat"], id="no-users"),
    # ML-100K without u.item
    pytest.param("ml-100k", _remove("u.item"), DataError, ["missing u.item"], id="no-u.item"),
    # ml-latest without movies.csv
    pytest.param("ml-latest", _remove("movies.csv"), DataError, ["movies.csv"], id="no-movies"),
    # files of no MovieLens layout at all
    pytest.param(
        "ml-1m", _unknown_format, DataFormatError, ["no known MovieLens"], id="unknown-format"
    ),
    # a ratings.dat line with three fields
    pytest.param(
        "ml-1m", _set_line("ratings.dat", 7, "1::2::3"), MalformedLineError,
        ["ratings.dat", "line 7"], id="short-line-1m",
    ),
    # a ratings.dat line with five fields
    pytest.param(
        "ml-1m", _set_line("ratings.dat", 9, "1::2::3::4::5"), MalformedLineError,
        ["ratings.dat", "line 9"], id="long-line-1m",
    ),
    # movies.dat line without genres
    pytest.param(
        "ml-1m", _set_line("movies.dat", 3, "3::Heat (1995)"), MalformedLineError,
        ["movies.dat", "line 3"], id="short-movie-line",
    ),
    # a user id that is not an integer, in u.data
    pytest.param(
        "ml-100k", _set_line("u.data", 5, "x1\t2\t3\t881250949"), MalformedLineError,
        ["u.data", "line 5", "user id"], id="bad-user-id",
    ),
    # a fractional movie id (parses as a number, still not an id)
    pytest.param(
        "ml-100k", _set_line("u.data", 6, "1\t2.5\t3\t881250949"), MalformedLineError,
        ["u.data", "line 6", "movie id"], id="fractional-id",
    ),
    # a rating word after an empty line: the number counts the empty line
    pytest.param(
        "ml-100k", _blank_then_bad, MalformedLineError, ["u.data", "line 7", "rating"],
        id="blank-line-numbering",
    ),
    # a rating outside 0.5..5
    pytest.param(
        "ml-1m", _set_line("ratings.dat", 4, "1::1::9::978300760"), MalformedLineError,
        ["ratings.dat", "line 4", "outside"], id="rating-out-of-range",
    ),
    # ratings.csv: extra field (line 1 is the header)
    pytest.param(
        "ml-latest", _set_line("ratings.csv", 6, "1,2,3.5,978300760,9"), MalformedLineError,
        ["ratings.csv", "line 6"], id="csv-extra-field",
    ),
    # ratings.csv: missing field
    pytest.param(
        "ml-latest", _set_line("ratings.csv", 8, "1,2,3.5"), MalformedLineError,
        ["ratings.csv", "line 8"], id="csv-missing-field",
    ),
    # a movie listed twice in the catalog
    pytest.param(
        "ml-1m", _set_line("movies.dat", 2, "1::Again (1990)::Drama"), MalformedLineError,
        ["movies.dat", "line 2", "listed twice"], id="duplicate-movie",
    ),
    # a genre flag that is not 0/1 in u.item
    pytest.param(
        "ml-100k", _set_line("u.item", 4, "4|X (1990)|01-Jan-1990||u" + "|2" * 19),
        MalformedLineError, ["u.item", "line 4", "genre flags"], id="bad-genre-flag",
    ),
    # an empty ratings file
    pytest.param("ml-1m", _empty("ratings.dat"), DataError, ["is empty"], id="empty-file"),
    # a movies.csv with only its header
    pytest.param("ml-latest", _header_only, DataError, ["no rows"], id="header-only"),
    # ratings.csv saved as UTF-16
    pytest.param("ml-latest", _utf16, DataError, ["wrong encoding"], id="utf-16"),
    # movies.csv saved as latin-1 where UTF-8 is expected
    pytest.param(
        "ml-latest", _latin1_in_utf8, DataError, ["movies.csv", "line 2", "utf-8"],
        id="invalid-utf-8",
    ),
    # 20% of the ratings name movies absent from movies.dat: the files do not belong together
    pytest.param(
        "ml-1m", _many_unknown_movies, DataError, ["missing from the catalog"], id="unknown-movies"
    ),
]  # fmt: skip


@pytest.mark.parametrize(("fmt", "damage", "error", "fragments"), BAD_DATA)
def test_bad_data_is_a_clear_error(
    fmt: str,
    damage: Callable[[Path], Path],
    error: type[Exception],
    fragments: list[str],
    copy_of: Callable[[str], Path],
):
    directory = damage(copy_of(fmt))
    with pytest.raises(error) as info:
        load_movielens(directory)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize(("fmt", "damage", "error", "fragments"), BAD_DATA)
def test_cli_bad_data_exits_one_with_one_line(
    fmt: str,
    damage: Callable[[Path], Path],
    error: type[Exception],
    fragments: list[str],
    copy_of: Callable[[str], Path],
):
    directory = damage(copy_of(fmt))
    result = CliRunner().invoke(app, ["data", "stats", str(directory), "--json"])
    assert result.exit_code == 1
    message = result.stderr.strip()
    assert "\n" not in message
    assert message.startswith("error:")
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in message


def test_a_few_unknown_movies_are_dropped_and_counted(copy_of: Callable[[str], Path]):
    directory = copy_of("ml-1m")
    path = directory / "ratings.dat"
    lines = path.read_text(encoding="latin-1").splitlines()
    for i in (3, 10):
        user, _, rating, ts = lines[i].split("::")
        lines[i] = f"{user}::999999::{rating}::{ts}"
    path.write_text("\n".join(lines) + "\n", encoding="latin-1")

    dataset = load_movielens(directory)
    assert dataset.dropped_unknown_item_ratings == 2
    assert len(dataset.interactions) == len(lines) - 2
    assert 999999 not in set(dataset.interactions["item_id"])


def test_malformed_line_error_quotes_the_line(copy_of: Callable[[str], Path]):
    directory = copy_of("ml-1m")
    _replace_line(directory / "ratings.dat", 7, "1::2::3")
    with pytest.raises(MalformedLineError) as info:
        load_movielens(directory)
    assert info.value.line_no == 7
    assert re.search(r"ratings\.dat, line 7: .*'1::2::3'", str(info.value))
