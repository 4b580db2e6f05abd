"""A real headless browser for the web page's tests: Debian's chromium driven by Playwright.

Browsers cannot be downloaded here, so Playwright launches the system's /usr/bin/chromium
(as root, without its sandbox). Without chromium or Playwright these tests skip locally and
fail under CI=true, like the Alertmanager ones.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.async_api import Browser

CHROMIUM = "/usr/bin/chromium"
PHONE = {"width": 390, "height": 844}  # an ordinary phone, in CSS pixels


def _missing(message: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless chromium; skipped locally (failed under CI) when it is not installed."""
    if not shutil.which(CHROMIUM):
        _missing("chromium is missing (apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        _missing("playwright is missing (pip install -e '.[test]')")
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            await browser.close()
