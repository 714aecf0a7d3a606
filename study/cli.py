"""The `study` command line. Only this module knows about arguments and exit codes:
0 success, 1 the work failed (a `WorkFailed`: one line saying what failed), 2 bad input (a
`StudyError`: one line saying what and how to fix it), 130 Ctrl-C or SIGTERM.

Each command is a `Command`: it declares the options it reads and its `run` reads every one of
them (tests/test_cli.py checks), parses nothing else and calls the library.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

from study import logs
from study.config import RUNTIMES
from study.errors import StudyError, WorkFailed
from study.processes import sigterm_as_interrupt
from study.tracking.provenance import set_source


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(argv)
    set_source(["study", *argv])
    if not args.verbose:
        logs.quiet_tensorflow()
    warnings.filterwarnings("ignore", category=UserWarning, module="keras")
    warnings.filterwarnings("ignore", category=FutureWarning)
    sigterm_as_interrupt()
    with contextlib.nullcontext() if args.verbose else logs.without_noise():
        try:
            return args.command.run(args)
        except StudyError as error:
            print(f"error: {error}{args.command.flags_for(error.settings)}", file=sys.stderr)
            return 2
        except WorkFailed as error:
            print(f"{error.what} failed: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130


Option = tuple[tuple[str, ...], dict]  # add_argument's flags (or name) and settings


def option(*flags: str, **settings) -> Option:
    return flags, settings


TRACKING = option(
    "--tracking-uri",
    help="MLflow store: sqlite:///PATH, postgresql://USER:PASSWORD@HOST:PORT/DB or "
    "http://HOST:PORT (default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)",
)
QUIET = option("--quiet", "-q", action="store_true", help="print only the result")
CONFIG = (
    option("config", help="study YAML, for example search_spaces/smoke.yaml"),
    option(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, for example --set data.root=PATH (repeatable)",
    ),
)
STATE_DIR = option(
    "--state-dir",
    type=Path,
    default=Path("mlruns"),
    help="where the feature cache and sweep state live (default: mlruns)",
)
STUDY = (*CONFIG, TRACKING, STATE_DIR, QUIET)  # what the commands that train read
SWEEPING = (
    option(
        "--retry-failed",
        action="store_true",
        help="when resuming, run every failed trial once more (its failed run stays, tagged)",
    ),
    option(
        "--workers",
        type=int,
        metavar="N",
        help="run the trials in N local worker processes (Keras Tuner chief/worker); 0: in "
        "this process (default: 2 on 2 or more cores for long frozen-phase trials on cached "
        "features, or fine-tuning trials on cached activations with the memory for two; else 0)",
    ),
)
MODEL = (
    TRACKING,
    option("model_uri", metavar="MODEL_URI", help="runs:/<run id>/model or models:/NAME@champion"),
)
SERVING = (
    TRACKING,
    option("--port", type=int, default=5000),
    option("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine)"),
    option(
        "--allowed-hosts",
        help="Host headers MLflow accepts when serving beyond this machine, e.g. myhost:5000",
    ),
)


VERBOSE = option(  # read by `main`, for every command
    "--verbose",
    action="store_true",
    help="let TensorFlow's own log lines (absl, oneDNN, CUDA) and the MLflow server's "
    "(uvicorn's INFO lines, its warnings) through",
)


def out_folder(what: str) -> Option:
    return option(
        "--out", type=Path, default=Path("reports"), help=f"folder for {what} (default: reports)"
    )


class Command:
    """A `study` subcommand: `options` declares what it reads, `run` reads every one."""

    name: str
    help: str
    options: tuple[Option, ...]
    flags: dict[str, str]  # an option's setting -> its flag, as `_parser` declared them

    def run(self, args: argparse.Namespace) -> int:
        raise NotImplementedError

    def flags_for(self, settings: tuple[str, ...]) -> str:
        """The command-line flags of the settings an error names, to add to its message."""
        flags = [self.flags[setting] for setting in settings if setting in self.flags]
        return f" (on the command line: {', '.join(flags)})" if flags else ""


class Train(Command):
    name, help = "train", "train one configuration as one MLflow run"
    options = (
        *STUDY,
        option(
            "--register",
            metavar="NAME",
            help="log the model as an MLflow model and register it under NAME (alias champion "
            "when it scores best)",
        ),
    )

    def run(self, args: argparse.Namespace) -> int:
        from study import config as study_config
        from study.runs import single
        from study.tracking.store import Store

        config = study_config.load(args.config, args.set)
        say = _printer(args.quiet)
        registered = single.train(
            config,
            Store(args.tracking_uri),
            args.state_dir,
            register=args.register,
            say=say,
            progress=not args.quiet,
        )
        if registered is not None:
            print(registered.describe())
        say("browse the runs with: study ui")
        return 0


class Sweep(Command):
    name = "sweep"
    help = "run (or resume) a Keras Tuner search; one MLflow child run per trial"
    options = (
        *STUDY,
        option("--fresh", action="store_true", help="start a new sweep instead of resuming"),
        *SWEEPING,
        option(
            "--serve-oracle",
            metavar="HOST:PORT",
            help="be the chief and serve the oracle at HOST:PORT to workers on other machines",
        ),
        option(
            "--worker",
            dest="worker_id",
            metavar="ID",
            help="be a worker with this id (unique per worker)",
        ),
        option("--oracle", metavar="HOST:PORT", help="the chief a worker asks"),
    )

    def run(self, args: argparse.Namespace) -> int:
        from study import config as study_config
        from study.tracking.store import Store
        from study.tuning.sweep import Sweep

        config = study_config.load(args.config, args.set)
        store = Store(args.tracking_uri)
        say = _printer(args.quiet)
        sweep = Sweep(config, store, args.state_dir, say=say, progress=not args.quiet)
        if args.worker_id:
            if not args.oracle:
                raise StudyError("--worker needs --oracle HOST:PORT, the address of the chief")
            say(f"worker {args.worker_id} of sweep {config.name}, chief at {args.oracle}")
            sweep.work(args.oracle, args.worker_id)
            return 0
        summary = sweep.run(
            fresh=args.fresh,
            workers=args.workers,
            oracle_address=args.serve_oracle,
            retry_failed=args.retry_failed,
            callbacks=_sweep_end(say),
        )
        return 1 if summary.all_failed else 0


class Replicate(Command):
    name = "replicate"
    help = "sweep the study on each of several data sets, then pool their answers"
    options = (
        *STUDY,
        option(
            "--data",
            action="append",
            default=[],
            metavar="DIR",
            help="a data set's image folder, as its own experiment <study>-<folder name> "
            "(repeatable; default: the study's replicate: list)",
        ),
        *SWEEPING,
        out_folder("the replication report"),
    )

    def run(self, args: argparse.Namespace) -> int:
        from study import config as study_config
        from study.report.build import build_replication_report
        from study.tracking.store import Store
        from study.tuning import replicate

        configs = replicate.data_set_configs(study_config.load(args.config, args.set), args.data)
        say = _printer(args.quiet)
        store = Store(args.tracking_uri)
        summaries = replicate.replicate(
            configs,
            store,
            args.state_dir,
            workers=args.workers,
            retry_failed=args.retry_failed,
            callbacks=_sweep_end(say),
            say=say,
            progress=not args.quiet,
        )
        if summaries[-1].all_failed:
            return 1
        folder = build_replication_report([c.name for c in configs], store, args.out)
        print(f"replication report: {folder / 'report.md'} (also report.html, replication.csv)")
        return 0


def _sweep_end(say: Callable[[str], None]) -> list[Callable]:
    """Once a sweep has ended: say each knob's importance and the outcome, keep the best model."""
    from study.report.build import SweepImportance
    from study.tuning.sweep_end import KeepBest, SayOutcome

    return [SweepImportance(say), SayOutcome(print), KeepBest(print)]


class Predict(Command):
    name, help = "predict", "predict the class of image files with a logged model, as CSV"
    options = (
        *MODEL,
        QUIET,
        option("paths", type=Path, nargs="+", metavar="PATH", help="files or folders"),
        option("--out", type=Path, help="CSV file to write (default: standard output)"),
    )

    def run(self, args: argparse.Namespace) -> int:
        from study.serving import predict as predicting
        from study.tracking import logged_model
        from study.tracking.store import Store

        files = predicting.image_files(args.paths)
        store = Store(args.tracking_uri)
        store.check()
        classifier = logged_model.load(store.uri, args.model_uri)
        rows = predicting.predict(classifier, files, progress=not args.quiet)
        skipped = predicting.write(rows, args.out)
        if args.out:
            _printer(args.quiet)(
                f"predictions: {args.out} ({len(rows) - len(skipped)} images, "
                f"{len(skipped)} skipped)"
            )
        return 0


class Export(Command):
    name = "export"
    help = "export a logged model for another runtime, checked against Keras on its test split"
    options = (
        *MODEL,
        option("--format", choices=["onnx", "openvino"], default="onnx"),
        option(
            "--tolerance",
            type=float,
            help="largest allowed absolute difference of a probability from Keras's "
            "(default: onnx 1e-4, openvino 1e-3)",
        ),
    )

    def run(self, args: argparse.Namespace) -> int:
        from study.serving import export as exporting
        from study.tracking.store import Store

        store = Store(args.tracking_uri)
        store.check()
        done = exporting.export(store, args.model_uri, args.format, args.tolerance)
        print(
            f"{done.format} export logged to run {done.run_id} under {done.artifact_path}/: on "
            f"{done.images} test images max abs difference {done.max_abs_diff:.2e}, "
            "predicted classes identical"
        )
        return 0


class _Serve(Command):
    """An MLflow server process over the store (`kind`: ui or server), until Ctrl-C."""

    kind: str

    def serve(self, args: argparse.Namespace, **options) -> int:
        from study.tracking import server
        from study.tracking.store import Store

        return server.serve(
            self.kind,
            Store(args.tracking_uri),
            args.host,
            args.port,
            args.allowed_hosts,
            quiet=not args.verbose,
            **options,
        )


class Ui(_Serve):
    name, help, kind = "ui", "browse the runs in the MLflow UI", "ui"
    options = (
        *SERVING,
        option(
            "--open", action="store_true", help="open the latest experiment's runs in a browser"
        ),
    )

    def run(self, args: argparse.Namespace) -> int:
        return self.serve(args, open_browser=args.open)


class Server(_Serve):
    name, kind = "server", "server"
    help = "an MLflow tracking server over the store, for workers on several machines"
    options = (
        *SERVING,
        option(
            "--artifacts-destination",
            metavar="FOLDER_OR_URI",
            help="where the server keeps the artifacts clients send it, a folder or an object "
            "store URI such as s3://bucket/path (default: artifacts/ beside a SQLite store, "
            "mlruns/artifacts for PostgreSQL)",
        ),
    )

    def run(self, args: argparse.Namespace) -> int:
        return self.serve(args, artifacts=args.artifacts_destination)


class Report(Command):
    name = "report"
    help = "rebuild the paper's tables from an experiment's runs, beside the paper's figures"
    options = (
        TRACKING,
        option(
            "experiment",
            nargs="+",
            help="MLflow experiment name (the study's name); several: one study on several "
            "data sets, reported as a replication (docs/replication.md)",
        ),
        out_folder("<experiment>/report.md, report.html, CSVs and PNGs"),
        option(
            "--sweep", metavar="RUN_ID", help="the sweep's parent run (default: the latest sweep)"
        ),
        option(
            "--objective",
            help="metric that ranks configurations, e.g. val_loss (default: the sweep's objective)",
        ),
    )

    def run(self, args: argparse.Namespace) -> int:
        from study.report import build_report
        from study.report.build import build_replication_report
        from study.tracking.store import Store

        store = Store(args.tracking_uri)
        if len(args.experiment) > 1:
            if args.sweep:
                raise StudyError(
                    f"--sweep {args.sweep} names one sweep; a report of {len(args.experiment)} "
                    "experiments reads each one's latest sweep (drop --sweep)"
                )
            folder = build_replication_report(args.experiment, store, args.out, args.objective)
            print(f"replication report: {folder / 'report.md'} (also report.html, replication.csv)")
            return 0
        folder = build_report(
            args.experiment[0], store, args.out, sweep_run_id=args.sweep, objective=args.objective
        )
        print(f"report: {folder / 'report.md'} (also report.html, one CSV per table, PNG figures)")
        return 0


class Bench(Command):
    name = "bench"
    help = "time inference of the full classifier on this machine, logged for the report"
    options = (
        *CONFIG,
        TRACKING,
        QUIET,
        option("--batch-sizes", type=int, nargs="+", default=[32, 1], metavar="N"),
        option("--repeats", type=int, default=20, help="timed steps per batch size"),
        option("--warmup", type=int, default=3, help="untimed steps first"),
        option("--classes", type=int, default=6, help="output classes (NEU: 6)"),
        option(
            "--runtime",
            choices=RUNTIMES,
            default="tensorflow",
            help="inference runtime (default tensorflow); each is a row of Table 5",
        ),
    )

    def run(self, args: argparse.Namespace) -> int:
        from study import config as study_config
        from study.serving import bench as timing
        from study.tracking.store import Store

        config = study_config.load(args.config, args.set)
        store = Store(args.tracking_uri)
        store.check()
        say = _printer(args.quiet)
        say(
            f"timing NASNet-Mobile inference at {config.data.image_size} px on this machine "
            f"with {args.runtime}"
        )
        result = timing.measure_config(
            config,
            n_classes=args.classes,
            batch_sizes=tuple(args.batch_sizes),
            warmup=args.warmup,
            repeats=args.repeats,
            runtime=args.runtime,
        )
        run_id = timing.log(result, store, config.name)
        print(timing.summary(result))
        say(
            f"logged as run {run_id} in experiment {config.name}; "
            f"`study report {config.name}` puts it in Table 5"
        )
        return 0


COMMANDS = (Train(), Sweep(), Ui(), Server(), Report(), Replicate(), Bench(), Predict(), Export())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="study",
        description="Tune and compare NASNet-Mobile steel-defect classifiers, tracked in MLflow.",
    )
    subparsers = parser.add_subparsers(required=True, metavar="COMMAND")
    for command in COMMANDS:
        subparser = subparsers.add_parser(command.name, help=command.help)
        actions = [subparser.add_argument(*f, **s) for f, s in (*command.options, VERBOSE)]
        command.flags = {a.dest: a.option_strings[0] for a in actions if a.option_strings}
        subparser.set_defaults(command=command)
    return parser


def _printer(quiet: bool) -> Callable[[str], None]:
    def say(message: str) -> None:
        if not quiet:
            print(message, flush=True)

    return say


if __name__ == "__main__":
    sys.exit(main())
