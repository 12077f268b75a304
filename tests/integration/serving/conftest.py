"""Fixtures of the serving tests: small models trained into the session's BentoML store.

`trained_models` runs the real training pipeline (`models.train.train_all`) on a synthetic
ML-1M-format dataset written to disk, so the served service loads real artifacts. `chromium`
drives Debian's headless Chromium for the page's tests.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import pytest
from starlette.testclient import TestClient

from data.split_files import SplitFiles, write_split
from data.synth import generate, write_movielens
from models.train import TrainReport, train_all

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

SMALL = {"users": 300, "items": 250, "ratings": 12_000}


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset in ML-1M format (planted taste clusters)."""
    data = generate(SMALL["users"], SMALL["items"], SMALL["ratings"], seed=11)
    return write_movielens(data, tmp_path_factory.mktemp("ml-1m-synth"), "ml-1m")


@pytest.fixture(scope="session")
def trained_models(synth_dir: Path) -> TrainReport:
    """Retriever, ranker and feature snapshot trained and stored (quick settings)."""
    return train_all(synth_dir, seed=0, quick=True)


# A small drift window so a test can fill it with one kind of traffic, then another.
DRIFT_ENV = {
    "RECSYS_DRIFT__WINDOW": "60",
    "RECSYS_DRIFT__BLOCK_REQUESTS": "10",
    "RECSYS_DRIFT__MIN_WINDOW_REQUESTS": "30",
    "RECSYS_DRIFT__LOG_SAMPLE_RATE": "1.0",
    "RECSYS_DRIFT__EXPORT_EVERY_S": "0.3",
}


@pytest.fixture(scope="session")
def service_env(
    trained_models: TrainReport,
    pinned_artifacts_env: Callable[[Mapping[str, str]], dict[str, str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, str]]:
    """Environment of the served service: its own models, a small drift window, temp logs."""
    from services.settings import get_settings

    logs = tmp_path_factory.mktemp("drift")
    env = {
        **pinned_artifacts_env(trained_models.tags),
        **DRIFT_ENV,
        "RECSYS_DRIFT__LOG_DIR": str(logs / "log"),
        "RECSYS_DRIFT__REPORT_DIR": str(logs / "reports"),
    }
    saved = {name: os.environ.get(name) for name in env}
    os.environ.update(env)
    get_settings.cache_clear()
    yield env
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    get_settings.cache_clear()


@contextmanager
def event_log_at(events_dir: Path) -> Iterator[None]:
    """This process's settings read the event log at `events_dir` inside the block."""
    from services.settings import get_settings

    saved = os.environ.get("RECSYS_EVENTS__DIR")
    os.environ["RECSYS_EVENTS__DIR"] = str(events_dir)
    get_settings.cache_clear()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("RECSYS_EVENTS__DIR", None)
        else:
            os.environ["RECSYS_EVENTS__DIR"] = saved
        get_settings.cache_clear()


@contextmanager
def in_process_service(events_dir: Path) -> Iterator[TestClient]:
    """A new RecommendationService instance (stages composed in process) with its event log."""
    from services.recommendation import RecommendationService

    with event_log_at(events_dir):
        app = RecommendationService.to_asgi()
        with TestClient(app, raise_server_exceptions=False) as test_client:
            yield test_client


@pytest.fixture(scope="session")
def client(
    trained_models: TrainReport,
    service_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[TestClient]:
    """The RecommendationService ASGI app, dependencies composed in process."""
    with in_process_service(tmp_path_factory.mktemp("events")) as test_client:
        yield test_client


def read_ratings(path: Path, sep: str, header: bool = False) -> pd.DataFrame:
    """``user_id, item_id, timestamp`` of a MovieLens ratings file, parsed by hand.

    The expected "already rated" sets come from the files the service was trained on, never from
    the state the training code built.
    """
    lines = path.read_text(encoding="latin-1").splitlines()[int(header) :]
    fields = [line.split(sep) for line in lines if line]
    return pd.DataFrame(
        {
            "user_id": [int(f[0]) for f in fields],
            "item_id": [int(f[1]) for f in fields],
            "timestamp": [int(f[3]) for f in fields],
        }
    )


@pytest.fixture(scope="session")
def history(synth_dir: Path) -> pd.DataFrame:
    """Every rating the served models were trained on (``recsys train`` serves all of them)."""
    return read_ratings(synth_dir / "ratings.dat", "::")


@pytest.fixture(scope="session")
def ml100k_models(ml100k_dir: Path) -> TrainReport:
    """Deployable models trained by `recsys train`'s code on all of ML-100K (quick settings)."""
    return train_all(ml100k_dir, seed=0, quick=True, progress=False)


@pytest.fixture(scope="session")
def ml100k_rated(ml100k_dir: Path) -> dict[int, set[int]]:
    """Each ML-100K user's rated movies, straight from u.data."""
    rated: dict[int, set[int]] = {}
    ratings = read_ratings(ml100k_dir / "u.data", "\t")
    for user, item in zip(ratings["user_id"], ratings["item_id"], strict=True):
        rated.setdefault(int(user), set()).add(int(item))
    return rated


@pytest.fixture(scope="session")
def ml100k_split(ml100k_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> SplitFiles:
    """`recsys data split` of ML-100K: ``train/`` and the held-out ``test.csv``."""
    return write_split(ml100k_dir, tmp_path_factory.mktemp("ml-100k-split"))


@pytest.fixture(scope="session")
def ml100k_split_models(ml100k_split: SplitFiles) -> TrainReport:
    """Models trained by `recsys train`'s code on the split's train/ only (quick settings), so
    the held-out ratings are new to the service (`recsys replay`'s setting)."""
    return train_all(ml100k_split.train_dir, seed=0, quick=True, progress=False)


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """Headless Chromium driven by Selenium through Debian's chromedriver, 1280x900.

    The driver's path is given, so Selenium Manager never runs (nothing is downloaded). The
    browser log (`goog:loggingPrefs`) keeps every console message: `driver.get_log("browser")`.
    Skipped, with a one-line reason, only where the binaries are absent.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    from services.tooling.browser import CHROMEDRIVER, CHROMIUM, missing

    if absent := missing():
        pytest.skip(f"{', '.join(map(str, absent))} absent (`make setup` as root installs them)")

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tmp_path_factory.mktemp("chromium-profile")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--no-first-run", "--disable-extensions", "--disable-background-networking",
                 "--disable-sync", "--disable-component-update", "--lang=en-US",
                 "--window-size=1280,900", f"--user-data-dir={profile}"):  # fmt: skip
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=str(CHROMEDRIVER), log_output=str(profile / "driver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
