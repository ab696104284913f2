"""Headless Chromium for the explorer's browser tests and README screenshot: Playwright for
Python driving the system's chromium (Debian's package; Playwright's own browser download is
not used), with a fresh profile and nothing that phones home."""

import shutil
import tempfile
from contextlib import contextmanager

#: Chromium's flags: headless, no sandbox (root in containers), no GPU, and no background
#: traffic (updates, sync, field trials)
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def chromium_path() -> str | None:
    """The system's chromium, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@contextmanager
def chromium_context(width: int = 1400, height: int = 1000):
    """A Playwright browser context on the system's chromium with a fresh user-data-dir."""
    from playwright.sync_api import sync_playwright

    executable = chromium_path()
    if executable is None:
        raise FileNotFoundError("no chromium on PATH: apt-get install chromium")
    with tempfile.TemporaryDirectory(prefix="vaelab-chromium-") as profile, \
            sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=executable, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height})
        try:
            yield context
        finally:
            context.close()
