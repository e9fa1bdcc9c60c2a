"""A real headless Chromium (Debian's `chromium` and `chromium-driver`, which `make test`
installs) driven through WebDriver by Selenium, for the web page's tests and screenshots."""

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM = "chromium"
DRIVER = "chromedriver"
DESKTOP = (1280, 900)
PHONE = (390, 844)


class BrowserUnavailable(RuntimeError):
    pass


@contextlib.contextmanager
def headless_chromium(downloads: Path) -> Iterator[webdriver.Chrome]:
    """A fresh headless Chromium (no profile kept) that saves downloads into `downloads`."""
    binary, driver = shutil.which(CHROMIUM), shutil.which(DRIVER)
    if not binary or not driver:
        raise BrowserUnavailable(
            "Chromium and its driver are needed: apt-get install chromium chromium-driver"
        )
    downloads.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (
        "--headless=new",
        "--no-sandbox",  # the tests run as root, where Chromium's sandbox cannot start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={DESKTOP[0]},{DESKTOP[1]}",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs",
        {"download.default_directory": str(downloads), "download.prompt_for_download": False},
    )
    browser = webdriver.Chrome(options=options, service=Service(driver))
    try:
        browser.execute_cdp_cmd(
            "Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
        )
        yield browser
    finally:
        browser.quit()


def full_page_screenshot(browser: webdriver.Chrome, path: Path) -> None:
    """The whole page, not only the window's part of it."""
    size = browser.get_window_size()
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(size["width"], max(size["height"], height + 120))
    try:
        browser.save_screenshot(str(path))
    finally:
        browser.set_window_size(size["width"], size["height"])
