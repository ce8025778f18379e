"""Headless Debian Chromium driven by Playwright, kept off the network.

Never downloads a browser: it launches /usr/bin/chromium (Debian package
``chromium``). ``open_context`` blocks and records every request that is not
for the given local origin, so a page cannot silently depend on the internet.
"""

import contextlib
import os

CHROMIUM = os.environ.get("LORANN_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-quic", "--no-first-run"]


@contextlib.contextmanager
def chromium():
    """A launched headless Chromium (Playwright Browser)."""
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        raise RuntimeError(f"{CHROMIUM} not found: install it with 'apt-get install chromium'")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


class LocalOnly:
    """Route handler: lets through requests to ``origin``, aborts and records the rest."""

    def __init__(self, origin):
        self.origin = origin.rstrip("/") + "/"
        self.blocked = []

    def __call__(self, route):
        url = route.request.url
        if url.startswith(self.origin) or url.startswith("data:") or url.startswith("blob:"):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort("blockedbyclient")


def open_context(browser, origin):
    """A fresh browser context that can reach only ``origin``; returns (context, guard)."""
    context = browser.new_context()
    guard = LocalOnly(origin)
    context.route("**/*", guard)
    return context, guard
