"""`recsys browser install` (what `make setup` runs): install Chromium where missing and possible,
else one line saying why, never a failure (issue 16). apt-get is replaced by a recorder that
creates the binaries the way a real install would: the real one would change this machine."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from services.tooling.browser import install


class FakeApt:
    """Answers each apt-get call with the next exit code; a successful install writes the files."""

    def __init__(self, paths: Sequence[Path], codes: Sequence[int]) -> None:
        self.paths, self.codes, self.calls = paths, list(codes), []

    def __call__(self, command: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(command[1])
        code = self.codes.pop(0)
        if code == 0 and command[1] == "install":
            for path in self.paths:
                path.write_text("")
        err = "E: Unable to locate package chromium" if code else ""
        return subprocess.CompletedProcess(list(command), code, "", err)


@pytest.mark.parametrize(
    ("present", "is_root", "apt_get", "codes", "outcome", "calls", "said"),
    [
        # both binaries there already: nothing runs
        (True, True, "/usr/bin/apt-get", [], "present", [], "present"),
        # no apt-get (not Debian): one line, no attempt
        (False, True, None, [], "absent", [], "no apt-get"),
        # not root: it says the command to run instead
        (False, False, "/usr/bin/apt-get", [], "absent", [], "sudo apt-get install"),
        # root: one install
        (False, True, "/usr/bin/apt-get", [0], "installed", ["install"], "installed"),
        # stale package lists (a fresh image): update once, install again
        (False, True, "/usr/bin/apt-get", [100, 0, 0], "installed",
         ["install", "update", "install"], "installed"),
        # no network: the reason in one line, and the run goes on
        (False, True, "/usr/bin/apt-get", [100, 100], "absent", ["install", "update"],
         "Unable to locate package"),
    ],
)  # fmt: skip
def test_install_where_missing_and_possible_else_one_line(
    tmp_path: Path,
    present: bool,
    is_root: bool,
    apt_get: str | None,
    codes: list[int],
    outcome: str,
    calls: list[str],
    said: str,
) -> None:
    paths = [tmp_path / "chromium", tmp_path / "chromedriver"]
    if present:
        for path in paths:
            path.write_text("")
    apt = FakeApt(paths, codes)
    got, line = install(paths=paths, is_root=is_root, which=lambda _: apt_get, run=apt)
    assert (got, apt.calls) == (outcome, calls)
    assert said in line
    assert "\n" not in line
