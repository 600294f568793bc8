"""Headless Debian chromium driven by Playwright (the app's browser test and `mvgen bench e2e`). No gradio here.

Playwright's own browser download does not work here; Debian's chromium (`make browser`) does. SwiftShader gives
WebGL without a GPU, without it ``gr.Model3D`` draws nothing.
"""

from __future__ import annotations

import shutil

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--enable-unsafe-swiftshader",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run"]


def chromium_path() -> str | None:
    """The chromium executable on PATH (``chromium`` or ``chromium-browser``), or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


def launch_chromium(playwright):
    """A headless chromium Browser from a running ``sync_playwright()``; ValueError when chromium is missing."""
    exe = chromium_path()
    if exe is None:
        raise ValueError("chromium not found on PATH; install it with `make browser` (apt-get install chromium)")
    return playwright.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
