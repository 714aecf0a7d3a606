"""Shared fixtures: real NEU images from ../shared, small copies of them, and the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NEU = REPO.parent / "shared" / "data" / "neu"
CLASSES = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]


@pytest.fixture(scope="session")
def neu() -> Path:
    if not NEU.is_dir():
        pytest.fail(f"the NEU database is expected at {NEU}")
    return NEU


def copy_slice(destination: Path, per_class: int, first: int = 1) -> Path:
    """The first `per_class` images of every NEU class, in class folders."""
    for name in CLASSES:
        folder = destination / name
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(first, first + per_class):
            shutil.copy(NEU / name / f"{name}_{n}.jpg", folder)
    return destination


@pytest.fixture
def neu_slice(tmp_path: Path) -> Path:
    return copy_slice(tmp_path / "neu", per_class=12)


def run_study(*args: str, cwd: Path, env: dict | None = None, timeout: float = 600):
    """Run the real `study` command line in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "study.cli", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
