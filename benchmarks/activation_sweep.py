"""The full-NEU sweeps that the benchmarks time (activation.yaml unless told): their shared options
and command."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SPACE = REPO / "search_spaces" / "activation.yaml"
# The paper's frozen-phase protocol, where activation.yaml departs from it for random features.
PAPER_PROTOCOL = {
    "model.normalize_features": False,
    "frozen.augment": True,
    "frozen.epochs": 20,
    "frozen.early_stopping.monitor": "val_loss",
    "frozen.early_stopping.patience": 3,
}


def add_options(parser: argparse.ArgumentParser, image_size: int = 224) -> None:
    """--data, --weights and --image-size, as every benchmark takes them."""
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "neu"))
    parser.add_argument("--weights", default="none")
    parser.add_argument("--image-size", type=int, default=image_size)


def run(
    args: argparse.Namespace, tracking_uri: str, state_dir: str, *options: str, space: Path = SPACE
) -> float:
    """Run `study sweep` of `space` (activation.yaml) quietly on the benchmark's data; its wall
    time in s."""
    command = [
        sys.executable,
        "-m",
        "study.cli",
        "sweep",
        str(space),
        "--set",
        f"data.root={args.data}",
        "--set",
        f"model.weights={args.weights}",
        "--set",
        f"data.image_size={args.image_size}",
        "--tracking-uri",
        tracking_uri,
        "--state-dir",
        state_dir,
        "--quiet",
        *options,
    ]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    return time.perf_counter() - started
