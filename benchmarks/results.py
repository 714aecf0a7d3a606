"""Where a benchmark's output is kept: every line it prints also goes to
`benchmarks/results/<benchmark>.txt`, under a header naming the command, the machine (CPU model
and cores), the date and the git commit it ran on, so that the docs can quote the file.

    from results import Results

    results = Results(__file__)
    results.print(f"ratio: {ratio:.2f}x")

The file is started afresh at the first printed line and written line by line, so a run that
stops early leaves the lines it printed under its header.
"""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import TextIO

RESULTS = Path(__file__).resolve().parent / "results"


class Results:
    """print() for a benchmark's output lines: to standard output and to its results file."""

    def __init__(self, script: str, folder: Path = RESULTS, variant: str = "") -> None:
        """`variant` names a second results file of the same script (`<benchmark>_<variant>.txt`),
        for a mode measured apart."""
        self.name = Path(script).stem
        self.path = folder / f"{self.name}{'_' + variant if variant else ''}.txt"
        self._file: TextIO | None = None

    def print(self, *values: object, sep: str = " ") -> None:
        line = sep.join(str(value) for value in values)
        print(line, flush=True)
        if self._file is None:
            top = header(self.name)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w", encoding="utf-8")
            self._file.write(top)
        self._file.write(line + "\n")
        self._file.flush()


def header(name: str) -> str:
    """The lines that head a results file: command, machine, date (UTC) and git commit."""
    command = " ".join(["python", f"benchmarks/{name}.py", *sys.argv[1:]])
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"# {command}\n"
        f"# machine: {cpu_model()}, {os.cpu_count()} cores\n"
        f"# date: {now}\n"
        f"# commit: {git_commit()}\n"
    )


def cpu_model() -> str:
    """The CPU's model name as Linux reports it (else what platform knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def git_commit() -> str:
    """The checkout's commit, marked when the working tree has uncommitted changes."""
    repo = RESULTS.parent.parent

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        return "unknown (not a git checkout)"
    changed = git(
        "status", "--porcelain", "--untracked-files=no", "--", ".", ":!benchmarks/results"
    )
    return f"{commit} (with uncommitted changes)" if changed else commit
