"""Headless Chromium for the explorer tests (Debian's chromium and
chromium-driver, driven by selenium).

``scripts/test`` installs the two packages when it runs as root; elsewhere
the tests that need them skip and say what to install.
"""

from __future__ import annotations

import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path(shutil.which("chromedriver") or "/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,900")


def missing() -> str | None:
    """Why a browser test cannot run here, or None."""
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists():
        return (f"needs {CHROMIUM} and {CHROMEDRIVER}: apt-get install -y chromium "
                "chromium-driver (scripts/test does it when run as root)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "needs selenium: pip install -e .[test]"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def browser() -> Iterator[Any]:
    """A fresh headless Chromium (own profile directory), quit afterwards."""
    reason = missing()
    if reason is not None:
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    with tempfile.TemporaryDirectory(prefix="explorer-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for flag in (*FLAGS, f"--user-data-dir={profile}"):
            options.add_argument(flag)
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        driver.set_script_timeout(60)
        try:
            yield driver
        finally:
            driver.quit()


def wait_ready(driver: Any, timeout: float = 30.0) -> None:
    """Until the explorer has finished the page it was routed to (its
    ``#main`` says ``data-state="ready"``, set after every verification)."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: d.execute_script(
            "const m = document.getElementById('main');"
            "return m !== null && m.getAttribute('data-state') === 'ready'"))


def open_page(driver: Any, url: str) -> None:
    """Load ``url`` and wait for the explorer to finish rendering it.  A
    change of only the hash does not reload the page: the explorer routes
    on ``hashchange``, so the state is reset to ``loading`` first."""
    driver.get("about:blank")
    driver.get(url)
    wait_ready(driver)
