"""One Chromium page per test worker, handed from browser test to browser test.

A fresh browser context per test cost about 1.1 s of CPU more than reusing one page: Chromium
starts a renderer for the new window's page and another for its omnibox popup (a WebUI page,
even headless), and a new Playwright driver and browser per test module added about 1 s each.
So each pytest-xdist worker starts Chromium once (on its first browser test) and keeps one
context and one page. Between tests the page is put back to a blank state: the test's request
routes dropped, ``about:blank`` loaded (the dashboard's scripts and event stream end with it),
cookies, granted permissions and the origin's storage (localStorage and the like) cleared, the
viewport and colour scheme reset. Each worker's browser tests serve their app on one port when
it is free (``PagePool.port``): one origin, so the page's scripts come from the HTTP cache and
V8's code cache instead of being fetched and compiled again (test_dashboard and
test_dashboard_entry, one worker, twice each way: 39.5 -> 33 s of CPU for 28 tests). A test
that failed, or a page that cannot be put back, gives up the context: the next test gets a
new one.

While Playwright's sync API is started, its event loop counts as running in the main thread
(its dispatcher is a greenlet suspended inside ``run_until_complete``), so a test that calls
``asyncio.run`` there would fail. conftest closes the pool after a browser test whose next test
on the worker is not one: the browser tests sit together in collection
order, so a worker mostly runs them back to back.
"""

from __future__ import annotations

import socket
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    Page,
    Playwright,
    ViewportSize,
    sync_playwright,
)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAPTOP: ViewportSize = {"width": 1366, "height": 900}
# what a test may leave in its origin for the next one (not the HTTP cache: that is the point)
ORIGIN_STORAGE = "local_storage,session_storage,indexeddb,cache_storage,service_workers"


class PagePool:
    """The worker's Chromium, started on first use, and the one page it lends out."""

    def __init__(self) -> None:
        self._playwright: Playwright | None = None
        self._browser: Browser | None = None
        self._context: BrowserContext | None = None
        self._page: Page | None = None
        self._port = 0

    @property
    def port(self) -> int:
        """The loopback port this worker's browser tests serve their app on (when it is free:
        conftest.served falls back to any port)."""
        if not self._port:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                self._port = int(sock.getsockname()[1])
        return self._port

    def take(self) -> Page:
        if self._page is None:
            # reduced motion: the page's endless animations (an order's progress bar, the
            # halted badge) would have chromium draw sixty frames a second through every test
            self._context = self._start().new_context(viewport=LAPTOP, reduced_motion="reduce")
            self._page = self._context.new_page()
        return self._page

    def give_back(self, page: Page, reuse: bool) -> None:
        """Put ``page`` back to a blank state for the next test, or close its context when
        ``reuse`` is false or the reset fails (the error is raised after the context is closed)."""
        assert page is self._page and self._context is not None
        try:
            if reuse:
                page.unroute_all(behavior="ignoreErrors")
                origin = _origin(page.url)
                page.goto("about:blank")
                if origin is not None:  # the next test's app may be on the same origin
                    session = self._context.new_cdp_session(page)
                    try:
                        session.send(
                            "Storage.clearDataForOrigin",
                            {"origin": origin, "storageTypes": ORIGIN_STORAGE},
                        )
                    finally:
                        session.detach()
                self._context.clear_cookies()
                self._context.clear_permissions()
                page.set_viewport_size(LAPTOP)
                page.emulate_media(color_scheme="null")  # the emulation off
                return
        except Exception:
            self._close_context()
            raise
        self._close_context()

    def close(self) -> None:
        """Stop Chromium and Playwright; the next ``take`` starts them again."""
        self._close_context()
        browser, self._browser = self._browser, None
        playwright, self._playwright = self._playwright, None
        try:
            if browser is not None:
                browser.close()
        finally:
            if playwright is not None:
                playwright.stop()

    def _start(self) -> Browser:
        if self._browser is None:
            if not Path(CHROMIUM).exists():
                pytest.fail(
                    f"{CHROMIUM} is missing: apt-get install -y chromium (scripts/test does it)"
                )
            self._playwright = sync_playwright().start()
            self._browser = self._playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS
            )
        return self._browser

    def _close_context(self) -> None:
        context, self._context, self._page = self._context, None, None
        if context is not None:
            context.close()


def _origin(url: str) -> str | None:
    """The http(s) origin of ``url`` (None for about:blank and the like)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") else None


POOL = PagePool()  # the worker's one pool (conftest's page_pool fixture hands it out)
