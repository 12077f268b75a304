"""Error hierarchy shared by every package; `RecsysError` is the root.

It lives in `data` because every other package already depends on `data`.
"""

from __future__ import annotations


class RecsysError(Exception):
    """Root of every error the project raises on purpose."""


class DataError(RecsysError):
    """A dataset is missing, malformed or inconsistent."""


class DataFormatError(DataError):
    """A directory holds no known MovieLens format."""


class MalformedLineError(DataError):
    """One line of a data file cannot be parsed."""

    def __init__(self, path: str, line_no: int, reason: str, line: str = "") -> None:
        shown = line if len(line) <= 120 else line[:117] + "..."
        super().__init__(
            f"{path}, line {line_no}: {reason}" + (f" (line was: {shown!r})" if shown else "")
        )
        self.path = path
        self.line_no = line_no


class DownloadError(DataError):
    """A dataset could not be downloaded or verified."""


class ArtifactError(RecsysError):
    """A stored artifact is missing or does not match what the code expects."""

    def __init__(self, tag: str, expected: object, got: object) -> None:
        super().__init__(f"artifact {tag}: expected {expected}, got {got}")
        self.tag = tag
        self.expected = expected
        self.got = got
