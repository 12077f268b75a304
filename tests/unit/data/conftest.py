"""Fixtures for the data package: small generated datasets and a real local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import io
import shutil
import socket
import threading
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from data.synth import SyntheticData, generate, write_movielens


@pytest.fixture(scope="session")
def small_synth() -> SyntheticData:
    """60 users, 50 movies, 900 ratings: enough for every format detail, fast to write."""
    return generate(60, 50, 900, seed=7)


@pytest.fixture
def write_format(small_synth: SyntheticData, tmp_path: Path) -> Callable[[str], Path]:
    """Write `small_synth` in a format into a fresh folder of tmp_path; returns the folder."""

    def write(fmt: str) -> Path:
        return write_movielens(small_synth, tmp_path / fmt, fmt)

    return write


@pytest.fixture
def copy_of(tmp_path: Path, small_synth: SyntheticData) -> Callable[[str], Path]:
    """A fresh, writable copy of the generated files in a format."""
    cache: dict[str, Path] = {}

    def copy(fmt: str) -> Path:
        if fmt not in cache:
            cache[fmt] = write_movielens(small_synth, tmp_path / "clean" / fmt, fmt)
        target = tmp_path / "work" / fmt
        shutil.copytree(cache[fmt], target)
        return target

    return copy


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A real http.server on 127.0.0.1 serving a folder: yields (folder, base URL)."""
    root = tmp_path / "served"
    root.mkdir()

    def handler(*args: object, **kwargs: object) -> _QuietHandler:
        return _QuietHandler(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def dataset_zip() -> Callable[[str, dict[str, str]], tuple[bytes, str]]:
    """Build a zip holding ``<name>/<file>`` entries; returns (bytes, md5 hex)."""

    def build(name: str, files: dict[str, str]) -> tuple[bytes, str]:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as zf:
            for file, text in files.items():
                zf.writestr(f"{name}/{file}", text)
        data = buffer.getvalue()
        return data, hashlib.md5(data, usedforsecurity=False).hexdigest()

    return build


@pytest.fixture
def refused_url() -> str:
    """A loopback URL where nothing listens (the port is bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"
