"""Debian's chromium, headless, driven by selenium through Debian's
chromedriver: the browser of the web page's tests. Nothing is downloaded
at run time (both paths are given, so Selenium Manager never runs).

    with browser(tmp_path / "chromium") as driver:   # a fresh profile there
        driver.get(url)
        wait_for(driver, lambda d: d.find_element(By.ID, "results"))
        shot(driver, tmp_path / "page.png")

Every wait is bounded (WAIT seconds by default).
"""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: Seconds a page or a condition gets.
WAIT = 20.0
#: The window the pages are drawn (and screenshot) in.
WINDOW = (1400, 1000)


def available() -> str | None:
    """None if chromium and chromedriver are here, else what is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    return f"missing {', '.join(missing)} (tests/install-deps.sh installs them)" if missing else None


@contextlib.contextmanager
def browser(profile: Path) -> Iterator:
    """A headless chromium with a fresh user-data-dir at `profile`; quit at the end."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile.mkdir(parents=True, exist_ok=True)
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-default-apps",
        "--no-first-run",
        "--no-default-browser-check",
        f"--user-data-dir={profile}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
    ):
        opts.add_argument(arg)
    service = Service(executable_path=CHROMEDRIVER, log_output=str(profile.parent / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=opts)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


def wait_for(driver, condition: Callable, timeout: float = WAIT, what: str = "condition"):
    """Until condition(driver) is truthy (exceptions count as not yet);
    returns its value. AssertionError with the page's text after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = condition(driver)
            if value:
                return value
        except Exception as e:  # noqa: BLE001 - element not there yet, stale, ...
            last = e
        time.sleep(0.1)
    body = ""
    with contextlib.suppress(Exception):
        body = driver.find_element("tag name", "body").text[:2000]
    raise AssertionError(f"{what} not met within {timeout}s (last error: {last!r}); page text:\n{body}")


def shot(driver, path: Path) -> Path:
    """A screenshot of the whole page (PNG) at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    height = driver.execute_script("return Math.max(document.body.scrollHeight, 600)")
    driver.set_window_size(WINDOW[0], min(int(height) + 120, 4000))
    driver.save_screenshot(str(path))
    driver.set_window_size(*WINDOW)
    return path
