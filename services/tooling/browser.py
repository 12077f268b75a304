"""Headless Chromium for the page's browser tests: Debian's `chromium` and `chromium-driver`.

The tests drive the browser through Selenium with the driver's path given, so nothing is ever
downloaded at run time (no Selenium Manager, no browser bundles). `make setup` runs
`recsys browser install`, which installs the two packages with apt-get where they are missing and
the process may (root on a Debian-like system), and otherwise says in one line why it did not:
the browser tests are then skipped with that reason, and everything else still runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PACKAGES = ("chromium", "chromium-driver")
APT_TIMEOUT_S = 900

Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]
Outcome = Literal["present", "installed", "absent"]


def missing(paths: Sequence[Path] = (CHROMIUM, CHROMEDRIVER)) -> list[Path]:
    """The binaries the browser tests need that are not on this machine."""
    return [path for path in paths if not path.exists()]


def _apt(command: Sequence[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        command, capture_output=True, text=True, env=env, timeout=APT_TIMEOUT_S, check=False
    )


def install(
    *,
    paths: Sequence[Path] = (CHROMIUM, CHROMEDRIVER),
    is_root: bool | None = None,
    which: Callable[[str], str | None] = shutil.which,
    run: Runner = _apt,
) -> tuple[Outcome, str]:
    """Install Chromium and its driver with apt-get where missing and possible.

    Args:
        paths: the binaries that must exist afterwards.
        is_root: whether this process may install packages (default: its effective uid is 0).
        which: finds an executable on PATH (tests pass a fake).
        run: runs one command and returns its result (tests pass a fake).

    Returns:
        ``(outcome, line)``: ``present`` (nothing to do), ``installed``, or ``absent`` (the
        browser tests will be skipped), and one line that says which, and why.
    """
    absent = missing(paths)
    if not absent:
        return "present", f"chromium and chromedriver: present ({', '.join(map(str, paths))})"
    names = " ".join(PACKAGES)
    is_root = os.geteuid() == 0 if is_root is None else is_root
    apt_get = which("apt-get")
    if apt_get is None:
        return "absent", f"{absent[0]} absent, no apt-get: install {names} for the browser tests"
    if not is_root:
        return "absent", f"{absent[0]} absent: `sudo apt-get install {names}` for the browser tests"
    install_command = [apt_get, "install", "-y", "--no-install-recommends", *PACKAGES]
    done = run(install_command)
    if done.returncode != 0:  # empty or stale package lists (a fresh image): update, once
        updated = run([apt_get, "update"])
        done = run(install_command) if updated.returncode == 0 else updated
    if done.returncode != 0 or missing(paths):
        tail = (done.stderr or done.stdout or "").strip().splitlines()[-1:] or ["no output"]
        return "absent", f"apt-get could not install {names} ({tail[0]}): browser tests skip"
    return "installed", f"installed {names} with apt-get"
