"""The chat page in a real headless browser: Debian's chromium driven by Selenium through
Debian's chromedriver (Selenium's own driver download cannot work here).

The page (src/proute/serving/chat.py) runs on a free loopback port with the tiny router of
tests/test_serve.py and the stub upstream; the browser picks a user, sends a message and
reads the routed LLM, every LLM's score, the user's description and the answer's caption
from the page, and they must be what the Python API decides. A screenshot of the page is
saved to ``test-artifacts/chat_page.png`` (gitignored; the path is printed).

Without chromium or chromedriver the test is skipped, unless ``CI`` is set: then it fails
(.ci/run installs both).
"""

import os
import re
import shutil
import time

import pytest

pytest.importorskip("gradio")
pytest.importorskip("fastapi")

import test_serve  # noqa: E402
from conftest import ROOT  # noqa: E402
from proute.serving.chat import NO_DECISION, build_app  # noqa: E402
from proute.serving.loadtest import free_port  # noqa: E402

router_dir, router, stub, upstreams = (
    test_serve.router_dir,
    test_serve.router,
    test_serve.stub,
    test_serve.upstreams,
)

SCREENSHOT = ROOT / "test-artifacts" / "chat_page.png"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # nothing beyond loopback
    "--window-size=1280,1600",
)
TIMEOUT = 60


def _browser() -> tuple[str, str]:
    """The chromium and chromedriver executables; skipped without them, failed under CI."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        driver = None
    if chromium and driver:
        return chromium, driver
    what = "chromium, chromium-driver and selenium (apt-get install -y chromium chromium-driver)"
    if os.environ.get("CI"):
        pytest.fail(f"CI is set but the browser test cannot run: it needs {what}")
    pytest.skip(f"needs {what}")


@pytest.fixture
def browser(tmp_path):
    chromium, driver_path = _browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium-profile'}")
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path))
    driver.set_page_load_timeout(TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page_url(router, upstreams):
    demo = build_app(router, upstreams)
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()


def _text(driver, css: str) -> str:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, css)
    return " ".join(found[0].text.split()) if found else ""  # code spans break lines


def _wait(driver, what: str, condition) -> object:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, TIMEOUT, poll_frequency=0.2).until(lambda d: condition(d))
    except TimeoutException:
        SCREENSHOT.parent.mkdir(exist_ok=True)
        driver.save_screenshot(str(SCREENSHOT))
        raise AssertionError(f"the page never showed {what} (screenshot: {SCREENSHOT})") from None


def _pick_user(driver, user: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = _wait(driver, "the user box", lambda d: d.find_element(By.CSS_SELECTOR, "#user-box input"))
    box.click()
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(user)
    option = f"//li[@data-testid='dropdown-option'][@aria-label='{user}']"
    _wait(driver, f"user {user} in the list", lambda d: d.find_elements(By.XPATH, option))
    driver.find_element(By.XPATH, option).click()
    described = f"user{user}:known"  # "user `8`: known (trained); ...", spaces aside
    _wait(
        driver, f"user {user}'s description", lambda d: described in re.sub(r"\s", "", _text(d, "#user-info"))
    )


def test_chat_page_in_a_real_browser(browser, page_url, router):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    user, message = "8", "Write a Python function that reverses a string"
    d = router.route_single({"query": message, "user_id": 8})
    llm = d["model_name"]

    started = time.monotonic()
    browser.get(page_url)
    _pick_user(browser, user)
    box = _wait(
        browser, "the message box", lambda b: b.find_element(By.CSS_SELECTOR, "#message-box textarea")
    )
    box.send_keys(message)
    browser.find_element(By.CSS_SELECTOR, "#send-button").click()
    decision = _wait(
        browser, "a routing decision", lambda b: "(score" in _text(b, "#decision") and _text(b, "#decision")
    )
    answered_in = time.monotonic() - started

    routed = decision.split(" (score")[0].strip()
    assert routed == llm, (decision, d)
    assert f"for user {user}" in decision
    rows = browser.find_elements(By.CSS_SELECTOR, "#scores table tbody tr")
    shown = {r.find_elements(By.TAG_NAME, "td")[0].text.replace(" (chosen)", ""): r.text for r in rows}
    assert set(shown) == set(router.llms), shown  # every LLM's score is on the page
    for name, row in shown.items():
        assert f"{d['scores'][name]:.3f}" in row and "%" in row
    assert "(chosen)" in shown[llm]
    about = _text(browser, "#user-info")
    assert "known (trained)" in about and "preference weight p = 1" in about
    bubble = _wait(
        browser,
        "the answer's caption",
        lambda b: f"answered by {llm}" in _text(b, "#conversation") and _text(b, "#conversation"),
    )
    assert f"stub stub-{llm}: {message}" in bubble

    SCREENSHOT.parent.mkdir(exist_ok=True)
    browser.save_screenshot(str(SCREENSHOT))

    # an unknown user: said in the status line; the conversation stays, the decision goes
    user_box = browser.find_element(By.CSS_SELECTOR, "#user-box input")
    user_box.click()
    user_box.send_keys(Keys.CONTROL, "a")
    user_box.send_keys("nobody", Keys.TAB)
    box = browser.find_element(By.CSS_SELECTOR, "#message-box textarea")
    box.send_keys("hi")
    browser.find_element(By.CSS_SELECTOR, "#send-button").click()
    status = _wait(
        browser, "the error", lambda b: "unknown user_id" in _text(b, "#status") and _text(b, "#status")
    )
    assert "'nobody'" in status
    assert f"stub stub-{llm}: {message}" in _text(browser, "#conversation")
    assert _text(browser, "#decision") == NO_DECISION and not browser.find_elements(
        By.CSS_SELECTOR, "#scores tr"
    )
    assert box.get_attribute("value") == "hi"  # the message box keeps what was typed
    print(f"\nchat page screenshot: {SCREENSHOT} (answered {answered_in:.1f} s after the page was opened)")
    assert SCREENSHOT.stat().st_size > 10_000
