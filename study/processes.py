"""This process and others: signals, whether a process is alive, the cores it may use."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def sigterm_as_interrupt() -> None:
    """Make SIGTERM end this process like Ctrl-C, so its runs end KILLED, not RUNNING."""

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine. A zombie (ended, not yet reaped by its
    parent) does not: it writes no file and holds no lease."""
    try:
        os.kill(pid, 0)  # signal 0: checks that the process exists, sends nothing
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    if not Path("/proc/self/stat").exists():  # no procfs (not Linux): the signal must do
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:  # it ended since the signal
        return False


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container or taskset can
    make fewer than the machine's)."""
    return len(os.sched_getaffinity(0))
