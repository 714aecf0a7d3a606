"""The `study` command line. Only this module knows about arguments and exit codes:
0 success, 1 the work failed, 2 bad input (one line saying what and how to fix it), 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import warnings
from pathlib import Path

from study.errors import StudyError


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
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
            tags={"run_type": "train"},
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


def sweep(args: argparse.Namespace) -> int:
    from study import config as study_config
    from study.sweep import Sweep
    from study.tracking import Store

    config = study_config.load(args.config, args.set)
    store = Store(args.tracking_uri)
    say = _printer(args.quiet)
    say(f"sweep {config.name}: {config.tuner.oracle} search, tracking in {store.display_uri}")
    summary = Sweep(config, store, args.state_dir, say=say, progress=not args.quiet).run(
        fresh=args.fresh
    )
    print(
        f"sweep {config.name}: {summary.completed} trials completed, {summary.failed} failed "
        f"(parent run {summary.parent_run_id})"
    )
    if summary.best_values is not None:
        values = " ".join(f"{k}={v}" for k, v in summary.best_values.items()) or "(no knobs)"
        print(
            f"best configuration: {values}, mean {config.tuner.objective} "
            f"{summary.best_score:.4f}; rerun it with: study train {summary.best_config_path}"
        )
    return 1 if summary.statuses and not summary.completed else 0


def ui(args: argparse.Namespace) -> int:
    import subprocess

    from study.tracking import Store

    store = Store(args.tracking_uri)
    store.check()
    command = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", store.uri]
    command += ["--host", args.host, "--port", str(args.port), "--workers", "1"]
    if args.allowed_hosts:
        command += ["--allowed-hosts", args.allowed_hosts]
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: serving on {args.host}: the runs become visible to the network",
            file=sys.stderr,
        )
    print(f"MLflow UI for {store.display_uri} at http://{args.host}:{args.port} (Ctrl-C stops it)")
    server = subprocess.Popen(command)
    try:
        return server.wait()
    except KeyboardInterrupt:
        server.terminate()
        server.wait()
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

    command = commands.add_parser(
        "sweep",
        parents=[study_args],
        help="run (or resume) a Keras Tuner search; one MLflow child run per trial",
    )
    command.add_argument(
        "--fresh", action="store_true", help="start a new sweep instead of resuming"
    )
    command.set_defaults(command=sweep)

    command = commands.add_parser("ui", parents=[common], help="browse the runs in the MLflow UI")
    command.add_argument("--port", type=int, default=5000)
    command.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine)"
    )
    command.add_argument(
        "--allowed-hosts",
        help="Host headers MLflow accepts when serving beyond this machine, e.g. myhost:5000",
    )
    command.set_defaults(command=ui)
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
