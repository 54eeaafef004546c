"""Browser tests: Deni on a real loopback port, driven by Debian's Chromium through Playwright.

Playwright never downloads a browser here: it launches the Chromium that `make test` installs
with apt (DENI_TEST_CHROMIUM points elsewhere). Without one the browser tests skip locally, and
fail under CI, so CI can never pass with the browser tier silently off.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from deni.bootstrap import Deni
from deni.entrypoints.api.app import create_app
from deni.sandbox.server import BackgroundServer

CHROMIUM = os.environ.get("DENI_TEST_CHROMIUM", "/usr/bin/chromium")
# Playwright's own default is 30 s; nothing on loopback takes a tenth of that when it works.
TIMEOUT_MS = 10_000
_REPORTS = pytest.StashKey[dict[str, pytest.TestReport]]()


@pytest.fixture
def database_url(sqlite_template: Path, tmp_path: Path) -> str:
    """SQLite only: the server side runs on both databases elsewhere, and CI time is dear.

    Overrides tests/conftest.py's fixture of the same name, parametrized over both.
    """
    path = tmp_path / "deni.sqlite3"
    shutil.copy(sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture(scope="session")
def chromium() -> Iterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        reason = (
            f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium when run as "
            "root; or set DENI_TEST_CHROMIUM to a Chromium executable"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def web_server(deni: Deni) -> Iterator[BackgroundServer]:
    """Deni's whole app (API and /app) in uvicorn on a free loopback port: `web_server.url`."""
    with BackgroundServer(create_app(deni)) as server:
        yield server


@pytest.fixture
def page(
    chromium: Browser, web_server: BackgroundServer, request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Page]:
    """A fresh browser context (no cookies, storage or service worker) per test."""
    context = chromium.new_context(base_url=web_server.url)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    yield page
    call = request.node.stash.get(_REPORTS, {}).get("call")
    if call is not None and call.failed:
        screenshot = tmp_path / "failure.png"
        page.screenshot(path=screenshot, full_page=True)
        print(f"screenshot of the failed page: {screenshot}")
    context.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keep each phase's report on the test item, so `page` can tell whether the test failed."""
    report: pytest.TestReport = yield
    item.stash.setdefault(_REPORTS, {})[report.when] = report
    return report
