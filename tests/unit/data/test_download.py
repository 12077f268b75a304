"""Download against a real http.server on 127.0.0.1 (no mocks): success, checksum, offline."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from data.download import download_dataset, ensure_dataset
from data.errors import DownloadError
from services.tooling.cli import app

ZipBuilder = Callable[[str, dict[str, str]], tuple[bytes, str]]
FILES = {"ratings.csv": "userId,movieId,rating,timestamp\n1,1,4.0,964982703\n",
         "movies.csv": "movieId,title,genres\n1,Toy Story (1995),Animation\n"}  # fmt: skip


def _serve(root: Path, name: str, data: bytes, md5: str | None) -> None:
    (root / f"{name}.zip").write_bytes(data)
    if md5 is not None:  # GroupLens's own layout: "MD5 (ml-latest-small.zip) = <hex>"
        (root / f"{name}.zip.md5").write_text(f"MD5 ({name}.zip) = {md5}\n")


def test_download_verifies_extracts_and_caches(http_root, dataset_zip: ZipBuilder, tmp_path):
    root, url = http_root
    _serve(root, "ml-latest-small", *dataset_zip("ml-latest-small", FILES))
    cache = tmp_path / "cache"

    path = download_dataset("ml-latest-small", cache, base_url=url, progress=False)
    assert path == cache / "ml-latest-small"
    assert (path / "movies.csv").read_text() == FILES["movies.csv"]
    assert [p.name for p in cache.iterdir()] == ["ml-latest-small"]  # no temp files left

    (root / "ml-latest-small.zip").unlink()  # cached: the server is not asked again
    assert ensure_dataset("ml-latest-small", cache, base_url=url) == path


def test_force_replaces_the_cached_copy(http_root, dataset_zip: ZipBuilder, tmp_path):
    root, url = http_root
    cache = tmp_path / "cache"
    _serve(root, "ml-32m", *dataset_zip("ml-32m", FILES))
    download_dataset("ml-32m", cache, base_url=url, progress=False)
    newer = {**FILES, "links.csv": "movieId,imdbId,tmdbId\n"}
    _serve(root, "ml-32m", *dataset_zip("ml-32m", newer))
    path = download_dataset("ml-32m", cache, force=True, base_url=url, progress=False)
    assert (path / "links.csv").exists()
    assert [p.name for p in cache.iterdir()] == ["ml-32m"]


def _wrong_published_md5(root: Path, build: ZipBuilder) -> str:
    data, _ = build("ml-latest-small", FILES)
    _serve(root, "ml-latest-small", data, "0" * 32)
    return "ml-latest-small"


def _pinned_md5_differs(root: Path, build: ZipBuilder) -> str:
    _serve(root, "ml-100k", *build("ml-100k", FILES))  # ML-100K's md5 is pinned in the code
    return "ml-100k"


def _no_md5_published(root: Path, build: ZipBuilder) -> str:
    _serve(root, "ml-32m", build("ml-32m", FILES)[0], None)
    return "ml-32m"


def _not_a_zip(root: Path, build: ZipBuilder) -> str:
    page = b"<html>maintenance</html>"
    _serve(root, "ml-32m", page, hashlib.md5(page, usedforsecurity=False).hexdigest())
    return "ml-32m"


def _wrong_folder(root: Path, build: ZipBuilder) -> str:
    data, md5 = build("something-else", FILES)
    _serve(root, "ml-latest-small", data, md5)
    return "ml-latest-small"


FAILURES = [
    # the published .md5 does not match the archive
    pytest.param(_wrong_published_md5, "checksum mismatch", id="published-md5"),
    # the archive differs from the pinned GroupLens release
    pytest.param(_pinned_md5_differs, "checksum mismatch", id="pinned-md5"),
    # no .md5 next to the archive: refuse rather than trust it
    pytest.param(_no_md5_published, "HTTP 404", id="no-md5"),
    # the server answers with something that is not a zip
    pytest.param(_not_a_zip, "not a valid zip", id="not-zip"),
    # a zip without the dataset's folder
    pytest.param(_wrong_folder, "no folder ml-latest-small/", id="wrong-folder"),
]


@pytest.mark.parametrize(("serve", "fragment"), FAILURES)
def test_bad_downloads_leave_nothing(http_root, dataset_zip: ZipBuilder, tmp_path, serve, fragment):
    root, url = http_root
    name = serve(root, dataset_zip)
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match=fragment):
        download_dataset(name, cache, base_url=url, progress=False)
    assert not cache.exists() or list(cache.iterdir()) == []


def test_unreachable_server_says_offline(refused_url: str, tmp_path: Path):
    with pytest.raises(DownloadError) as info:
        ensure_dataset("ml-1m", tmp_path / "cache", base_url=refused_url, timeout_s=2)
    assert "network looks unreachable" in str(info.value)
    assert "DATA_DIR=/path/to/local/copy" in str(info.value)
    assert not (tmp_path / "cache" / "ml-1m").exists()


def test_unknown_dataset_name(tmp_path: Path):
    with pytest.raises(DownloadError, match=r"unknown dataset 'ml-2m'.*ml-100k, ml-1m"):
        download_dataset("ml-2m", tmp_path)


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("ml-2m", "unknown dataset"),  # not a GroupLens dataset name
        ("ml-1m", "DATA_DIR="),  # nothing listens at the configured base URL
    ],
)
def test_cli_download_errors(
    refused_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, fragment: str
):
    from services.settings import get_settings

    monkeypatch.setenv("RECSYS_DOWNLOAD_BASE_URL", refused_url)
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["data", "download", name])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_download_success(http_root, dataset_zip: ZipBuilder, tmp_path, monkeypatch):
    from services.settings import get_settings

    root, url = http_root
    _serve(root, "ml-latest-small", *dataset_zip("ml-latest-small", FILES))
    monkeypatch.setenv("RECSYS_DOWNLOAD_BASE_URL", url)
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path / "cache"))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["data", "download", "ml-latest-small"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert (tmp_path / "cache" / "ml-latest-small" / "ratings.csv").exists()
