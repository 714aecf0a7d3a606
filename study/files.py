"""Crash-safe file writes: a reader sees the old file or the whole new one, never a part."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from study.processes import alive


@contextmanager
def atomic_file(path: str | Path) -> Iterator[BinaryIO]:
    """Write to a temporary file beside `path`, then rename it over `path`."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(partial, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_file(path) as handle:
        handle.write(text.encode())


def remove_stale_partials(path: str | Path) -> None:
    """Delete the temporary files that killed writers of `path` left behind (their process is
    gone); a live writer's file is left alone."""
    path = Path(path)
    for partial in path.parent.glob(f".{path.name}.*.partial"):
        pid = partial.name.removeprefix(f".{path.name}.").removesuffix(".partial")
        if pid.isdigit() and not alive(int(pid)):
            partial.unlink(missing_ok=True)


def slug(name: str) -> str:
    """`name` as a file or folder name: each run of other characters than word characters,
    dots and dashes becomes one underscore."""
    return re.sub(r"[^\w.-]+", "_", name)
