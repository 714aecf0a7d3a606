"""Debian's chromium, headless, driven by Playwright: for the tests and benchmarks that look at
`study ui` in a real browser."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from study.tracking.server import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def launch(playwright):
    """A headless Chromium browser (close it when done)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def start_ui(uri: str, folder: Path) -> tuple[subprocess.Popen, int, Path]:
    """`study ui` over `uri` on a free port of 127.0.0.1, in its own process group, its output
    in `folder`/ui.log: the process (stop its group when done), the port and the log."""
    port = free_port()
    log = folder / "ui.log"
    with open(log, "w") as output:
        ui = subprocess.Popen(
            [sys.executable, "-m", "study.cli", "ui", "--tracking-uri", uri, "--port", str(port)],
            cwd=folder,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ui, port, log
