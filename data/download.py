"""Download MovieLens archives from GroupLens into a cache directory, verified and atomic.

Layout of the cache: ``<cache_dir>/<name>/`` holds the extracted dataset (the archive's own
top-level folder). It appears in one `os.replace`, so it is either complete or absent; a killed
download leaves only ``.tmp-*`` entries that the next attempt ignores and cleans.

Every archive is checked against an MD5 before anything is extracted: the ones pinned in
`PINNED_MD5` (stable releases), otherwise the ``<zip>.md5`` file GroupLens publishes next to the
archive (ml-latest-small and ml-32m are re-released from time to time).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from http.client import HTTPResponse
from pathlib import Path, PurePosixPath
from typing import IO, cast

from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from data.errors import DownloadError

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://files.grouplens.org/datasets/movielens"
DATASETS: tuple[str, ...] = ("ml-100k", "ml-1m", "ml-latest-small", "ml-25m", "ml-32m")
# MD5s of the stable GroupLens releases (the same values GroupLens publishes in <zip>.md5).
PINNED_MD5: dict[str, str] = {
    "ml-100k": "0e33842e24a9c977be4e0107933c0723",
    "ml-1m": "c4d9eecfca2ab87c1945afe126590906",
    "ml-25m": "6b51fb2759a8657d3bfcbfc42b592ada",
}
_CHUNK = 1 << 20
_MD5_RE = re.compile(r"\b([0-9a-fA-F]{32})\b")
_OFFLINE_HINT = (
    "set DATA_DIR=/path/to/local/copy to use a MovieLens directory you already have "
    "(e.g. DATA_DIR=../shared/data/ml-100k)"
)


def ensure_dataset(
    name: str,
    cache_dir: str | Path,
    base_url: str = DEFAULT_BASE_URL,
    timeout_s: float = 30.0,
) -> Path:
    """The directory of dataset `name` in `cache_dir`, downloaded first if not cached yet.

    Args:
        name: one of `DATASETS`.
        cache_dir: where datasets are cached (created if needed).
        base_url: where the ``<name>.zip`` archives are served.
        timeout_s: socket timeout for each connection.

    Returns:
        The extracted dataset directory, ``<cache_dir>/<name>``.

    Raises:
        DownloadError: unknown name, network unreachable, HTTP error or checksum mismatch.
    """
    target = Path(cache_dir) / _check_name(name)
    if target.is_dir():
        logger.info("using cached %s at %s", name, target)
        return target
    return download_dataset(name, cache_dir, base_url=base_url, timeout_s=timeout_s)


def download_dataset(
    name: str,
    cache_dir: str | Path,
    force: bool = False,
    base_url: str = DEFAULT_BASE_URL,
    timeout_s: float = 30.0,
    progress: bool = True,
) -> Path:
    """Download, verify and extract dataset `name` into ``<cache_dir>/<name>``.

    Args:
        name: one of `DATASETS`.
        cache_dir: where datasets are cached (created if needed).
        force: download again even if the dataset is cached (the old copy is replaced only
            once the new one is verified and extracted).
        base_url: where the ``<name>.zip`` archives (and ``.md5`` files) are served.
        timeout_s: socket timeout for each connection.
        progress: show a progress bar on stderr.

    Returns:
        The extracted dataset directory.

    Raises:
        DownloadError: unknown name, network unreachable, HTTP error, checksum mismatch or an
            archive without the expected folder. Nothing is left in the cache on failure.
    """
    cache = Path(cache_dir)
    target = cache / _check_name(name)
    if target.is_dir() and not force:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    url = f"{base_url.rstrip('/')}/{name}.zip"
    expected = PINNED_MD5.get(name) or _published_md5(url, timeout_s)
    fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{name}-", suffix=".zip", dir=cache)
    tmp_zip = Path(tmp_name)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=cache))
    try:
        with os.fdopen(fd, "wb") as out:
            got = _fetch(url, out, timeout_s, progress)
        if got != expected.lower():
            raise DownloadError(
                f"checksum mismatch for {url}: expected md5 {expected}, got {got}; "
                "the download is corrupt or the file changed upstream (nothing was kept)"
            )
        _extract(tmp_zip, tmp_dir)
        extracted = tmp_dir / name
        if not extracted.is_dir():
            found = sorted(p.name for p in tmp_dir.iterdir())
            raise DownloadError(f"{url}: archive has no folder {name}/ (it holds {found})")
        _replace_dir(extracted, target)
    finally:
        tmp_zip.unlink(missing_ok=True)
        shutil.rmtree(tmp_dir, ignore_errors=True)
    logger.info("downloaded %s (md5 %s) to %s", url, expected, target)
    return target


def _check_name(name: str) -> str:
    if name not in DATASETS:
        raise DownloadError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return name


def _open(url: str, timeout_s: float) -> HTTPResponse:
    """Open `url`, turning network and HTTP failures into `DownloadError`."""
    try:
        return cast(HTTPResponse, urllib.request.urlopen(url, timeout=timeout_s))
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"{url}: server answered HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"cannot reach {url} ({reason}): the network looks unreachable; {_OFFLINE_HINT}"
        ) from exc


def _published_md5(url: str, timeout_s: float) -> str:
    with _open(f"{url}.md5", timeout_s) as response:
        text = response.read(4096).decode("ascii", errors="replace")
    match = _MD5_RE.search(text)
    if match is None:
        raise DownloadError(f"{url}.md5 holds no MD5 checksum (got {text[:80]!r})")
    return match.group(1).lower()


def _fetch(url: str, out: IO[bytes], timeout_s: float, progress: bool) -> str:
    """Stream `url` into the binary file `out`; return the MD5 of what was written."""
    md5 = hashlib.md5(usedforsecurity=False)
    with (
        _open(url, timeout_s) as response,
        Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            disable=not progress,
        ) as bar,
    ):
        length = response.headers.get("Content-Length")
        task = bar.add_task(url.rsplit("/", 1)[-1], total=int(length) if length else None)
        try:
            while chunk := response.read(_CHUNK):
                md5.update(chunk)
                out.write(chunk)
                bar.advance(task, len(chunk))
        except (TimeoutError, ConnectionError, OSError) as exc:
            raise DownloadError(f"download of {url} broke off ({exc}); {_OFFLINE_HINT}") from exc
    return md5.hexdigest()


def _extract(archive: Path, into: Path) -> None:
    """Extract `archive` into `into`, refusing members that would land outside it."""
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                parts = PurePosixPath(member).parts
                if member.startswith("/") or ".." in parts:
                    raise DownloadError(f"{archive.name}: unsafe path {member!r} in archive")
            zf.extractall(into)
    except zipfile.BadZipFile as exc:
        raise DownloadError(f"{archive.name} is not a valid zip archive: {exc}") from exc


def _replace_dir(source: Path, target: Path) -> None:
    """Move `source` to `target` atomically, swapping out an existing `target` if any."""
    if not target.exists():
        os.replace(source, target)
        return
    trash = Path(tempfile.mkdtemp(prefix=f".tmp-old-{target.name}-", dir=target.parent))
    os.replace(target, trash / target.name)
    os.replace(source, target)
    with contextlib.suppress(OSError):
        shutil.rmtree(trash)
