"""The page as a person uses it: headless Chromium opens ``tinydl serve``'s page, draws the
digits 0-9 stroke by stroke with pointer events, and reads the answer the page shows.

Screenshots go to ``$TINYDL_ARTIFACTS/serve-browser/`` when that is set, else to the test's
``tmp_path``; the test prints the folder."""

import os
import time

import pytest

from tests.serve.conftest import chromium_paths
from tests.serve.strokes import DIGITS, SIZE

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
_MISSING = [n for n, p in zip(("chromium", "chromedriver"), chromium_paths()) if p is None]
# NOTE: checked before the fixtures run, so that a missing browser does not first train a model
pytestmark = pytest.mark.skipif(
    bool(_MISSING),
    reason=f"{' and '.join(_MISSING)} not on PATH (apt install chromium chromium-driver)",
)

from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.actions import interaction  # noqa: E402
from selenium.webdriver.common.actions.action_builder import ActionBuilder  # noqa: E402
from selenium.webdriver.common.actions.pointer_input import PointerInput  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402


@pytest.fixture
def browser(monkeypatch):
    binary, driver_path = chromium_paths()
    # NOTE: the system chromedriver and chromium are named, and Selenium Manager is kept
    # offline, so that nothing is downloaded
    monkeypatch.setenv("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--window-size=1100,800",
        "--disable-dev-shm-usage",
    ):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    yield driver
    driver.quit()


@pytest.fixture
def artifacts(tmp_path):
    root = os.environ.get("TINYDL_ARTIFACTS")
    folder = (os.path.abspath(root) if root else str(tmp_path)) + os.sep + "serve-browser"
    os.makedirs(folder, exist_ok=True)
    print(f"\nbrowser screenshots: {folder}")
    return folder


def _draw(driver, canvas, strokes):
    """Each stroke as pen down, moves along the polyline, pen up (offsets from the centre)."""
    actions = ActionBuilder(
        driver, mouse=PointerInput(interaction.POINTER_MOUSE, "pen"), duration=15
    )
    for line in strokes:
        (x0, y0), rest = line[0], line[1:]
        actions.pointer_action.move_to(canvas, x0 - SIZE // 2, y0 - SIZE // 2)
        actions.pointer_action.pointer_down()
        for x, y in rest:
            actions.pointer_action.move_to(canvas, x - SIZE // 2, y - SIZE // 2)
        actions.pointer_action.pointer_up()
    actions.perform()


def _answer(driver, timeout=20.0) -> str:
    """The page's top class once it shows the answer to the last drawing sent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = driver.execute_script(
            "const t = document.getElementById('top1'), p = document.getElementById('pad');"
            "return Number(p.dataset.requested) > 0 && t.dataset.seq === p.dataset.requested;"
        )
        if done:
            return driver.find_element(By.ID, "top1").text
        time.sleep(0.05)
    raise AssertionError("the page showed no answer to the drawing")


def _input_brightness(driver) -> float:
    return driver.execute_script(
        "const d = document.getElementById('input').getContext('2d')"
        ".getImageData(0, 0, 28, 28).data; let s = 0;"
        "for (let i = 0; i < d.length; i += 4) s += d[i]; return s / 255;"
    )


def test_digits_drawn_on_the_page_are_recognised(digit_run, start_server, browser, artifacts):
    server = start_server(digit_run)
    browser.get(server.url + "/")
    canvas = browser.find_element(By.ID, "pad")
    clear = browser.find_element(By.ID, "clear")
    answers = {}
    for digit, strokes in DIGITS.items():
        clear.click()
        assert browser.find_element(By.ID, "top1").text == ""
        assert _input_brightness(browser) == 0
        _draw(browser, canvas, strokes)
        answers[digit] = _answer(browser)
        assert len(browser.find_elements(By.CSS_SELECTOR, "#top3 .row")) == 3
        assert browser.find_element(By.ID, "error").text == ""
        assert _input_brightness(browser) > 20  # the prepared 28x28 input is drawn
        browser.save_screenshot(os.path.join(artifacts, f"digit-{digit}.png"))
    right = sum(answers[d] == str(d) for d in DIGITS)
    print(f"page answers (drawn -> shown): {answers}; {right}/10 right")
    assert right >= 8, answers
