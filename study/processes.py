"""This process and others: signals, and whether a process is alive."""

from __future__ import annotations

import signal


def sigterm_as_interrupt() -> None:
    """Make SIGTERM end this process like Ctrl-C, so its runs end KILLED, not RUNNING."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
