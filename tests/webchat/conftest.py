"""Fixtures of the web chat tests: Debian's Chromium driven by Playwright (never a downloaded
browser) and a folder for screenshots."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

import pytest

from tests.backoffice_process import PROJECT_ROOT

ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "webchat"
DEBIAN_CHROMIUM = "/usr/bin/chromium"


def _find_chromium() -> Optional[str]:
    for candidate in (os.environ.get("CHROMIUM_PATH"), DEBIAN_CHROMIUM, shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _install_debian_chromium() -> Optional[str]:
    """`apt-get install chromium` when we may (root, apt-get present); the browser or None."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        result = subprocess.run(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            print(f"`{' '.join(command)}` failed:\n{result.stdout[-2000:]}", file=sys.stderr)
            return None
    return _find_chromium()


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = _find_chromium() or _install_debian_chromium()
    if path is None:
        pytest.skip(
            "no Chromium: install Debian's package (`apt-get install chromium`) or set CHROMIUM_PATH; "
            "Playwright's own browser downloads are not used"
        )
    return path


# module scope: Playwright's sync API keeps an event loop running in this thread while it is
# open, which would stop the next modules' own event loops (sanic's test client, asyncio tests)
@pytest.fixture(scope="module")
def browser(chromium_path: str):
    sync_api = pytest.importorskip("playwright.sync_api", reason="the `playwright` package (test extra) is missing")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium_path, headless=True, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """Screenshots of the tests: test-artifacts/webchat/ in the project (git-ignored)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
