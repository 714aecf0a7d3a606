"""TensorFlow's own log lines (absl, oneDNN, CUDA on a machine without a GPU) kept off the
terminal; the command line lets them through with `--verbose`.

Most of them are switched off by environment variables set before TensorFlow is imported
(processes started later inherit them). A few are written by TensorFlow's native libraries as
they load, before any setting is read: those are taken out of the standard error stream, line
by line, at the file descriptor, so the same holds for the worker processes, which inherit it.
"""

from __future__ import annotations

import os
import re
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

ENVIRONMENT = {
    "TF_CPP_MIN_LOG_LEVEL": "2",  # TensorFlow's C++ INFO (the oneDNN notice) and WARNING lines
    "GRPC_VERBOSITY": "ERROR",  # the distributed tuner's gRPC
}
# Lines of TensorFlow's logging that say nothing to a user: absl's banner, its INFO and WARNING
# lines (`I0000 00:00:1795767266.793570    6917 cudart_stub.cc:31] ...`), the errors of a
# machine without a GPU (`E0000 ... failed call to cuInit`), and TensorFlow's older format.
NOISE = re.compile(
    rb"WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|[IW]\d{4} [\d:.]+\s+\d+ \S+:\d+\] "
    rb"|E\d{4} [\d:.]+\s+\d+ \S+:\d+\] .*(cuInit|CUDA|cuda)"
    rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IW] \S+:\d+\] "
    rb"|To enable the following instructions: .* rebuild TensorFlow"
)
# The start of a line that may turn out to be noise: held until the line is complete.
MAYBE_NOISE = re.compile(rb"[IWE]\d|WARNING: All|To enable|\d{4}-")
# What this process writes last into the filter: processes that outlive it (the resource
# trackers of multiprocessing and joblib, joblib's idle workers) keep the pipe open, so the
# filter ends at this mark, not at the pipe's end.
END = b"\0end of the filtered output\0\n"


def quiet_tensorflow() -> None:
    """Switch TensorFlow's logging off before it is imported (a user's own setting wins)."""
    for name, value in ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    from absl import logging as absl_logging

    absl_logging.set_verbosity(absl_logging.ERROR)


@contextmanager
def without_noise() -> Iterator[None]:
    """Drop the NOISE lines from everything written to file descriptor 2 meanwhile, by this
    process or the processes it starts."""
    sys.stderr.flush()
    terminal = os.dup(2)
    source, sink = os.pipe()
    os.dup2(sink, 2)
    os.close(sink)
    forwarder = threading.Thread(target=_forward, args=(source, terminal), daemon=True)
    forwarder.start()
    try:
        yield
    finally:
        sys.stderr.flush()
        with suppress(OSError):  # no reader left: the forwarder failed
            os.write(2, END)
        os.dup2(terminal, 2)
        forwarder.join(timeout=5)
        if not forwarder.is_alive():
            os.close(terminal)


def _forward(source: int, terminal: int) -> None:
    pending, ended = b"", False
    with os.fdopen(source, "rb", buffering=0) as pipe:
        while not ended and (chunk := pipe.read(65536)):
            ended = END in pending + chunk
            *lines, pending = re.split(rb"(?<=[\r\n])", (pending + chunk).replace(END, b""))
            kept = b"".join(line for line in lines if not NOISE.match(line))
            if pending and not MAYBE_NOISE.match(pending) and len(pending) > 5:
                kept, pending = kept + pending, b""  # a progress bar's line: show it now
            _write(terminal, kept)
    _write(terminal, pending)


def _write(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]
