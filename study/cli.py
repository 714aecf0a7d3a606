"""The `study` command line. Only this module knows about arguments and exit codes:
0 success, 1 the work failed, 2 bad input (one line saying what and how to fix it), 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import warnings
from pathlib import Path

from study.errors import StudyError


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    _quiet_libraries()
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return args.command(args)
    except StudyError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def train(args: argparse.Namespace) -> int:
    from study import config as study_config
    from study import runs
    from study.tracking import Store
    from study.training import TrainingFailed

    config = study_config.load(args.config, args.set)
    store = Store(args.tracking_uri)
    say = _printer(args.quiet)
    say(f"study {config.name}: tracking in {store.display_uri}")
    prepared = runs.prepare(config, store, args.state_dir, progress=not args.quiet)
    dataset = prepared.dataset
    say(
        f"data: {len(dataset)} images, {len(dataset.class_names)} classes from {dataset.root}"
        + (f" ({len(dataset.skipped)} unreadable files skipped)" if dataset.skipped else "")
    )
    say(f"weights: {prepared.weights.label}")
    experiment_id = store.experiment(config.name)
    try:
        run_id, result = runs.execute(
            config,
            prepared,
            store,
            experiment_id,
            run_name=f"{config.name}-seed{config.seed}",
            verbose=0 if args.quiet else 2,
        )
    except TrainingFailed as error:
        print(f"training failed: {error}", file=sys.stderr)
        return 1
    final = result.evaluations[result.final_stage]
    scores = ", ".join(
        f"{name} accuracy {ev.metrics['accuracy']:.4f}" for name, ev in final.items()
    )
    times = ", ".join(f"{p.name} {p.wall_time_s:.1f} s" for p in result.phases)
    say(f"run {run_id} FINISHED: {scores} ({times})")
    say("browse the runs with: study ui")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="study",
        description="Tune and compare NASNet-Mobile steel-defect classifiers, tracked in MLflow.",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--tracking-uri",
        help="MLflow store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)",
    )
    common.add_argument(
        "--state-dir",
        type=Path,
        default=Path("mlruns"),
        help="where the feature cache and sweep state live (default: mlruns)",
    )
    common.add_argument("--quiet", "-q", action="store_true", help="print only the result")

    study_args = argparse.ArgumentParser(add_help=False, parents=[common])
    study_args.add_argument("config", help="study YAML, for example search_spaces/smoke.yaml")
    study_args.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, for example --set data.root=PATH (repeatable)",
    )

    command = commands.add_parser(
        "train", parents=[study_args], help="train one configuration as one MLflow run"
    )
    command.set_defaults(command=train)
    return parser


def _printer(quiet: bool):
    def say(message: str) -> None:
        if not quiet:
            print(message, flush=True)

    return say


def _quiet_libraries() -> None:
    for name in ("mlflow", "tensorflow", "absl", "alembic", "keras_tuner"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module="keras")
    warnings.filterwarnings("ignore", category=FutureWarning)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
