"""Whether a process is alive, as the lease of a worker and a stale partial file ask it."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from study.processes import alive


def test_a_running_process_is_alive_and_an_ended_one_is_not_even_before_it_is_reaped():
    assert alive(os.getpid())
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert alive(child.pid)
        child.kill()
        deadline = time.monotonic() + 30
        while alive(child.pid):  # not reaped: a zombie until `wait`
            assert time.monotonic() < deadline, "a killed process stayed alive"
            time.sleep(0.05)
        os.kill(child.pid, 0)  # the zombie still exists as a process id
    finally:
        child.wait()
    assert not alive(child.pid)
