"""Shared fixtures: real NEU images from ../shared, small copies of them, and the CLI."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from PIL import Image

from study.tracking import server

from . import postgres

REPO = Path(__file__).resolve().parents[1]
NEU = REPO.parent / "shared" / "data" / "neu"
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
SMOKE = REPO / "search_spaces" / "smoke.yaml"
CLASSES = ["crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"]


@pytest.fixture(autouse=True)
def restore_mlflow_tracking_uri():
    """Leave MLflow's global tracking URI as each test found it. `mlflow.set_tracking_uri`
    (in a test, or in the code it calls) also sets MLFLOW_TRACKING_URI in this process's
    environment, which every later `study` subprocess would inherit."""
    before = os.environ.get(TRACKING_URI_ENV)
    yield
    mlflow.set_tracking_uri(None)  # unset, as MLflow starts: it reads the environment again
    if before is None:
        os.environ.pop(TRACKING_URI_ENV, None)
    else:
        os.environ[TRACKING_URI_ENV] = before


def pytest_configure(config: pytest.Config) -> None:
    """Stop with one line, before any test, when the NEU images the tests read are missing."""
    if not NEU.is_dir():
        raise pytest.UsageError(
            f"the tests read the NEU database from {NEU} (a folder beside the checkout); "
            "see README.md, Install, for where it comes from"
        )


@pytest.fixture(scope="session")
def neu() -> Path:
    return NEU


@pytest.fixture(scope="session")
def postgres_uri() -> Iterator[str]:
    """postgresql://USER:PASSWORD@127.0.0.1:PORT/DB of a throwaway PostgreSQL cluster that
    lives as long as the test session (`tests/postgres.py`)."""
    programs = postgres.binaries()
    if programs is None:
        pytest.skip("PostgreSQL is not installed (no initdb): apt-get install postgresql")
    with postgres.cluster(programs) as (uri, _):
        yield uri


@pytest.fixture
def no_generator_feeding(monkeypatch):
    """Fails the test if anything feeds TensorFlow through `tf.data.Dataset.from_generator`
    (as Keras does with a PyDataset): its kernel changes glibc's allocator settings for the
    whole process, which made every training step after it up to twice as slow
    (`feeding.batch_pipeline`)."""
    import tensorflow as tf

    def refuse(*args, **kwargs):
        raise AssertionError("tf.data.Dataset.from_generator was called")

    monkeypatch.setattr(tf.data.Dataset, "from_generator", refuse)


def copy_slice(destination: Path, per_class: int, first: int = 1) -> Path:
    """The first `per_class` images of every NEU class, in class folders."""
    for name in CLASSES:
        folder = destination / name
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(first, first + per_class):
            shutil.copy(NEU / name / f"{name}_{n}.jpg", folder)
    return destination


def nested_copy(destination: Path, per_class: int, classes: list[str] = CLASSES[:3]) -> Path:
    """NEU images as a segmentation set ships: `<class>/Imgs/<name>.jpg`, the mask `<name>.png`
    beside each image, and a preview image and a README at the root."""
    for name in classes:
        folder = destination / name / "Imgs"
        folder.mkdir(parents=True)
        for n in range(1, per_class + 1):
            image = NEU / name / f"{name}_{n}.jpg"
            shutil.copy(image, folder / f"exp_{n}.jpg")
            with Image.open(image) as pixels:
                mask = pixels.convert("L").point(lambda v: 255 if v > 128 else 0)
            mask.save(folder / f"exp_{n}.png")
    shutil.copy(NEU / classes[0] / f"{classes[0]}_{per_class + 1}.jpg", destination / "dataset.jpg")
    (destination / "README.txt").write_text("A defect data set: one folder per class.\n")
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


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory):
    """The README's smoke sweep (at 32 px) in a store of its own: (folder, store URI, output)."""
    folder = tmp_path_factory.mktemp("smoke")
    uri = f"sqlite:///{folder}/mlflow.db"
    result = run_study(
        "sweep", str(SMOKE), "--set", "data.image_size=32", "--tracking-uri", uri, cwd=folder
    )
    assert result.returncode == 0, result.stderr
    return folder, uri, result


@pytest.fixture
def tracking_server(tmp_path):
    """A real `study server` on a free port of 127.0.0.1, over its own SQLite store."""
    folder = tmp_path / "server"
    folder.mkdir()
    port = server.free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "study.cli", "server", "--port", str(port), "--tracking-uri"]
        + [f"sqlite:///{folder}/mlflow.db"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_health(port, process)
        yield port, folder
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def wait_for_health(
    port: int,
    process: subprocess.Popen,
    log: Path | None = None,
    path: str = "/health",
    wait_s: float = 120,
) -> None:
    """Wait until the MLflow process started on `port` answers `path`."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2)
            return
        except OSError:
            detail = log.read_text() if log else ""
            assert process.poll() is None and time.monotonic() < deadline, detail
            time.sleep(0.5)
