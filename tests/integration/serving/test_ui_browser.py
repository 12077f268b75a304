"""The page (GET /ui, issue 16) in a real browser against a real `bentoml serve`.

Headless Chromium (Debian's `chromium` + `chromium-driver`, driven by Selenium) opens the page
served by the RecommendationService with the session's trained models, and every test reads the
browser's console log: any SEVERE entry (a script error, a failed request, a Content-Security-
Policy violation) fails it. The page loads; a known user gets the ten titles the API returns,
with their reasons as readable labels and signed bars, and their ratings newest first; a rating
given from the page (keyboard only) makes that movie leave the list; a new user gets a cold
start; the drift chart draws a bar per feature with the thresholds and sample sizes, and its
button starts a check; catalog strings with HTML in them are shown as text; the page fits a
phone's width. With API keys on, the page asks for a key, shows a readable message for a key
without the admin scope and for an unknown one, and works with a good one.

A screenshot of each state is written to the `ui-screenshots` folder of the test's temporary
output (its path is printed; `pytest -s` shows it).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import WebDriverWait

from models.train import TrainReport
from services.auth import key_lines, new_key

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SERVICE = "services.recommendation:RecommendationService"
LAPTOP = (1280, 900)
PHONE = (390, 844)
DRIFT_TOP = 15  # bars the chart shows until "every feature" is ticked (drift.js)
KEYS_ON = "keys on"
HOSTILE = "<img src=x onerror=\"document.title='owned'\">Tom & Jerry <b>\"Q\"</b> &amp; 'R'"

# Rewrites the first title of /recommend and history answers, since the catalog has no title with
# markup in it: injected through DevTools (not subject to the page's policy) before any script.
HOSTILE_FETCH = """
(() => {
  const hostile = %s;
  const real = window.fetch.bind(window);
  window.fetch = async (input, init) => {
    const response = await real(input, init);
    const url = String(input);
    const wanted = url.startsWith("/recommend") || url.includes("/history");
    if (!response.ok || !wanted) return response;
    const body = await response.json();
    const rows = body.recommendations || body.ratings || [];
    if (rows.length) rows[0].title = hostile;
    return new Response(JSON.stringify(body), {status: response.status, headers: response.headers});
  };
})();
""" % json.dumps(HOSTILE)  # noqa: UP031 (the JS's own braces)


@dataclass
class Page:
    """The browser on the served page: navigation, waits, the console log and screenshots."""

    driver: WebDriver
    base_url: str
    shots: Path

    def open(self, fragment: str = "", size: tuple[int, int] = LAPTOP) -> None:
        """Load /ui (`fragment`: e.g. ``#user=5``) at `size` and wait for its first load."""
        self.resize(*size)
        self.driver.get("about:blank")  # a fresh document even when only the fragment differs
        self.driver.get(f"{self.base_url}/ui{fragment}")
        self.wait(lambda: self.body.get_attribute("data-state") == "ready", "the first load")

    def resize(self, width: int, height: int) -> None:
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
        )

    @property
    def body(self) -> WebElement:
        return self.driver.find_element(By.TAG_NAME, "body")

    def wait(self, condition: Callable[[], Any], what: str, timeout_s: float = 20) -> Any:
        """Wait until `condition()` is truthy; on timeout, say what the page showed."""
        try:
            return WebDriverWait(self.driver, timeout_s, poll_frequency=0.05).until(
                lambda _: condition()
            )
        except TimeoutException as exc:
            says = self.messages()
            raise AssertionError(f"timed out waiting for {what}; the page says {says}") from exc

    def by_id(self, element_id: str) -> WebElement:
        return self.driver.find_element(By.ID, element_id)

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, element_id: str) -> str:
        return str(self.by_id(element_id).text)

    def titles(self) -> list[str]:
        return [e.text for e in self.all("#recs-list .rec-title")]

    def messages(self) -> dict[str, str]:
        ids = ("pick-message", "recs-summary", "history-summary", "drift-summary", "auth-message")
        return {i: self.driver.execute_script(f"return document.getElementById('{i}').textContent")
                for i in ids}  # fmt: skip

    def severe(self) -> list[dict[str, Any]]:
        """The console's SEVERE entries since the last call (errors, failed loads, CSP)."""
        return [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def shot(self, name: str, whole: bool = False) -> Path:
        """A screenshot of the viewport, or of the `whole` page at the viewport's width."""
        path = self.shots / f"{name}.png"
        width, height = self.driver.execute_script("return [innerWidth, innerHeight]")
        if whole:
            self.resize(width, self.driver.execute_script("return document.body.scrollHeight"))
        self.driver.save_screenshot(str(path))
        if whole:
            self.resize(width, height)
        return path


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ui-screenshots")
    print(f"\nscreenshots of the page: {folder}")
    return folder


@pytest.fixture(scope="module")
def keys() -> dict[str, str]:
    """API keys for the keys-on server: every scope, and `recommend` alone."""
    return {"full": new_key(), "recommend": new_key()}


@pytest.fixture(scope="module")
def served(
    request: pytest.FixtureRequest,
    keys: dict[str, str],
    served_client: Callable[..., AbstractContextManager[httpx.Client]],
    trained_models: TrainReport,
    service_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[httpx.Client]:
    """The service as `make serve` runs it (embedded stages, parquet store, keys off); with
    keys on for a test parametrized indirectly with KEYS_ON.

    One server at a time: pytest stops the keys-off server before it starts the other (two
    `bentoml serve` with one BENTOML_HOME would share a Prometheus directory).
    """
    env = dict(service_env)
    if getattr(request, "param", None) == KEYS_ON:
        keys_file = tmp_path_factory.mktemp("ui-keys") / "api-keys"
        lines = key_lines(keys["full"], ["recommend", "events", "admin"])
        lines += key_lines(keys["recommend"], ["recommend"])
        keys_file.write_text("\n".join(lines) + "\n")
        env |= {"RECSYS_AUTH__ENABLED": "true", "RECSYS_AUTH__KEYS_FILE": str(keys_file)}
    with served_client(SERVICE, trained_models.tags, env) as client:
        yield client


@pytest.fixture
def page(chromium: WebDriver, served: httpx.Client, shots: Path) -> Iterator[Page]:
    chromium.get_log("browser")  # what earlier tests left
    yield Page(chromium, str(served.base_url).rstrip("/"), shots)
    chromium.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


@pytest.fixture(scope="module")
def active_users(history: pd.DataFrame) -> list[int]:
    """Known users, most ratings first (each test takes its own, so their lists stay apart)."""
    return [int(u) for u in history["user_id"].value_counts().index[:10]]


def test_the_page_loads_with_no_console_errors_and_shows_the_status(
    page: Page, trained_models: TrainReport
) -> None:
    page.open()
    assert page.severe() == []
    page.wait(lambda: len(page.titles()) == 10, "a random known user's ten titles")
    strip = page.text("status-list")
    assert "embedded" in strip
    assert "parquet" in strip
    assert trained_models.tags["ranker"].split(":")[1][:12] in strip
    assert "p50" in strip
    assert "p99" in strip
    assert page.by_id("auth").is_displayed() is False  # keys are off: no key field
    page.shot("01-loaded")
    assert page.severe() == []


def test_a_known_user_gets_the_ten_titles_of_the_api_with_reasons_and_history(
    page: Page, served: httpx.Client, active_users: list[int], history: pd.DataFrame
) -> None:
    user = active_users[0]
    page.open()
    field = page.by_id("user-id")
    field.clear()
    field.send_keys(str(user), Keys.ENTER)  # the keyboard alone
    page.wait(lambda: page.text("recs-summary").startswith(f"10 movies for user {user}"), "user")
    answer = served.post("/recommend", json={"user_id": user, "k": 10, "explain": True}).json()
    labels = served.get("/ui/labels.json").json()
    assert page.titles() == [r["title"] for r in answer["recommendations"]]
    for item, rec in zip(page.all("#recs-list > li"), answer["recommendations"], strict=True):
        assert item.get_attribute("data-item-id") == str(rec["item_id"])
        meta = item.find_element(By.CLASS_NAME, "rec-meta").text
        assert f"retrieval #{rec['retrieval_rank']} → rank #{rec['rank']}" in meta
        assert f"score {rec['score']:.3f}" in meta
        reasons = item.find_elements(By.CLASS_NAME, "reason")
        assert 1 <= len(reasons) <= 3
        shown = [r.find_element(By.CLASS_NAME, "reason-label").text for r in reasons]
        assert shown == [labels[r["feature"]] for r in rec["reasons"]]
        for row, reason in zip(reasons, rec["reasons"], strict=True):
            bar = row.find_element(By.CLASS_NAME, "bar")
            sign = "pos" if reason["value"] >= 0 else "neg"
            assert sign in bar.get_attribute("class").split()
            assert bar.size["width"] > 0 or abs(reason["value"]) < 1e-3
    rated = int((history["user_id"] == user).sum())
    rows = page.all("#history-body tr")
    assert len(rows) == min(rated, 50)
    dates = [row.find_element(By.CSS_SELECTOR, "time").get_attribute("datetime") for row in rows]
    assert dates == sorted(dates, reverse=True)  # most recent first
    page.shot("02-known-user")
    assert page.severe() == []


def test_a_rating_given_from_the_page_changes_the_list(
    page: Page, served: httpx.Client, active_users: list[int]
) -> None:
    user = active_users[1]
    page.open(f"#user={user}")
    page.wait(lambda: len(page.titles()) == 10, "the user's list")
    first = page.all("#recs-list > li")[0]
    item_id, title = first.get_attribute("data-item-id"), page.titles()[0]
    star = first.find_element(By.CSS_SELECTOR, "button[data-rating='4']")
    assert star.accessible_name == f"Rate {title} 4 out of 5"
    star.send_keys(Keys.ENTER)  # keyboard: the button has focus and Enter presses it
    page.wait(lambda: "left the list" in page.text("recs-summary"), "the list after the rating", 30)
    assert not page.all(f"#recs-list > li[data-item-id='{item_id}']")
    assert len(page.titles()) == 10
    assert page.all("#recs-list > li.fresh")  # the newcomer is marked
    newest = page.all("#history-body tr")[0]
    assert newest.find_element(By.CSS_SELECTOR, "th").text == title
    assert newest.find_element(By.CLASS_NAME, "rating").text == "4★"
    again = served.post("/recommend", json={"user_id": user, "k": 10}).json()
    assert int(item_id) not in [r["item_id"] for r in again["recommendations"]]
    page.shot("03-after-rating")  # the README's (services/ui/screenshot.png)
    page.shot("03-after-rating-whole-page", whole=True)
    assert page.severe() == []


def test_a_new_user_gets_a_cold_start_list(page: Page) -> None:
    page.open()
    page.by_id("user-new").click()
    page.wait(lambda: "cold start" in page.text("recs-summary"), "a cold start")
    assert len(page.titles()) == 10
    assert "no ratings yet" in page.text("history-summary")
    assert int(page.by_id("user-id").get_attribute("value")) >= 900_000_000
    page.shot("04-new-user")
    assert page.severe() == []


def test_the_drift_chart_draws_a_bar_per_feature_and_a_check_starts(
    page: Page, served: httpx.Client, active_users: list[int]
) -> None:
    for user in active_users * 4:  # past the window's minimum (service_env: 30 requests)
        served.post("/recommend", json={"user_id": user, "k": 10})
    page.open()
    old = page.wait(lambda: page.all("#drift-chart .drift-bars > li"), "the drift chart")[0]
    page.by_id("drift-refresh").click()  # the page's own requests are done: figures stay put
    page.wait(lambda: staleness_of(old)(page.driver), "the chart drawn again")
    status = served.get("/drift/status").json()
    features, thresholds = status["features"], status["thresholds"]
    rows = page.all("#drift-chart .drift-bars > li")
    assert len(rows) == min(DRIFT_TOP, len(features))
    shown = {}
    for row in rows:
        name = row.find_element(By.CLASS_NAME, "drift-name").text
        figures = features[name]
        assert row.find_element(By.CLASS_NAME, "drift-value").text == (
            f"{figures['psi']:.3f} · n={figures['observations']}"  # PSI and sample size
        )
        assert len(row.find_elements(By.CLASS_NAME, "threshold")) == 2
        shown[name] = figures["psi"]
    assert list(shown.values()) == sorted(shown.values(), reverse=True)  # highest first
    assert min(shown.values()) >= max(f["psi"] for n, f in features.items() if n not in shown)
    assert rows[0].find_element(By.CLASS_NAME, "drift-bar").size["width"] > 0
    axis = page.text("drift-chart")
    assert f"warn {thresholds['psi_warn']}" in axis
    assert f"drift {thresholds['psi_drift']}" in axis
    page.by_id("drift-all").click()
    page.wait(
        lambda: len(page.all("#drift-chart .drift-bars > li")) == len(features), "every feature"
    )
    page.shot("05-drift", whole=True)
    page.by_id("drift-check").click()
    page.wait(
        lambda: any(w in page.text("drift-summary") for w in ("running", "check done")),
        "the drift check to start",
    )
    assert page.severe() == []


def test_catalog_strings_with_markup_are_shown_as_text(page: Page, active_users: list[int]) -> None:
    script = page.driver.execute_cdp_cmd(
        "Page.addScriptToEvaluateOnNewDocument", {"source": HOSTILE_FETCH}
    )
    try:
        page.open(f"#user={active_users[2]}")
        page.wait(lambda: page.titles()[:1] == [HOSTILE], "the hostile title")
        assert page.all("#history-body th")[0].text == HOSTILE
        assert page.all("#recs-list img, #recs-list b, #history-body img, #history-body b") == []
        assert page.by_id("recs-list").find_element(By.TAG_NAME, "button").accessible_name == (
            f"Rate {HOSTILE} 1 out of 5"
        )
        assert page.driver.title == "Movie recommender"  # no handler ran
        assert page.severe() == []  # and none was refused by the policy either
    finally:
        page.driver.execute_cdp_cmd(
            "Page.removeScriptToEvaluateOnNewDocument", {"identifier": script["identifier"]}
        )


def test_the_page_fits_a_phone_width(page: Page, active_users: list[int]) -> None:
    page.open(f"#user={active_users[3]}", size=PHONE)
    page.wait(lambda: len(page.titles()) == 10, "the user's list")
    overflow = page.driver.execute_script(
        "return document.documentElement.scrollWidth - window.innerWidth"
    )
    assert overflow <= 0  # nothing wider than the screen: no sideways scrolling of the page
    page.shot("06-phone")
    assert page.severe() == []


# ---------------------------------------------------------------- API keys on


@pytest.mark.parametrize("served", [KEYS_ON], indirect=True)
def test_with_keys_on_the_page_asks_for_a_key_and_works_with_one(
    page: Page, keys: dict[str, str]
) -> None:
    chromium = page.driver
    page.open()
    assert page.by_id("auth").is_displayed()
    assert chromium.switch_to.active_element == page.by_id("auth-key")
    assert page.titles() == []
    page.shot("07-asks-for-a-key")
    # Nothing was asked of the API without a key, but the status strip (recommend scope): its
    # 401 says that keys are on.
    refused = [e["message"] for e in page.severe()]
    assert all("/ui/api/status" in m and "401" in m for m in refused), refused

    def enter(key: str) -> None:
        field = page.by_id("auth-key")
        field.clear()
        field.send_keys(key, Keys.ENTER)

    enter(keys["recommend"])  # may recommend, not read drift
    page.wait(lambda: len(page.titles()) == 10, "the list with a recommend key")
    page.wait(lambda: "admin scope" in page.text("drift-summary"), "the drift panel's 403")
    page.by_id("auth-forget").click()
    enter(new_key())  # unknown to the service
    page.wait(lambda: "not accepted" in page.text("auth-message"), "the unknown key's 401")
    meant = [e["message"] for e in page.severe()]  # the refusals above, nothing else
    assert all(" 403 " in m or " 401 " in m for m in meant), meant
    enter(keys["full"])
    page.wait(lambda: page.all("#drift-chart .drift-bars > li"), "the drift chart with the key")
    page.wait(lambda: len(page.titles()) == 10, "the list with the key")
    stored = chromium.execute_script("return sessionStorage.getItem('recsys.apiKey')")
    assert stored == keys["full"]
    assert chromium.execute_script("return localStorage.length") == 0
    assert keys["full"] not in chromium.current_url
    page.shot("08-with-a-key")
    assert page.severe() == []
