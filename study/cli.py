"""The `study` command line. Only this module knows about arguments and exit codes:
0 success, 1 the work failed (a `WorkFailed`: one line saying what failed), 2 bad input (a
`StudyError`: one line saying what and how to fix it), 130 Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from study import logs
from study.config import RUNTIMES
from study.errors import StudyError, WorkFailed
from study.processes import sigterm_as_interrupt
from study.tracking.provenance import set_source

if TYPE_CHECKING:
    from study.config import StudyConfig
    from study.tracking.store import Store
    from study.tuning.sweep import SweepSummary


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
            return args.command(args)
        except StudyError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        except WorkFailed as error:
            print(f"{error.what} failed: {error}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            return 130


def train(args: argparse.Namespace) -> int:
    from study import config as study_config
    from study.runs import session, tracked
    from study.tracking.store import Store

    config = study_config.load(args.config, args.set)
    if args.register:  # registering needs the run's Keras file
        config = config.with_values({"tracking.log_model": True})
    store = Store(args.tracking_uri)
    say = _printer(args.quiet)
    say(f"study {config.name}: tracking in {store.display_uri}")
    prepared = session.prepare(config, store, args.state_dir, progress=not args.quiet)
    dataset = prepared.dataset
    say(
        f"data: {len(dataset)} images, {len(dataset.class_names)} classes from {dataset.root}"
        + (f" ({len(dataset.skipped)} unreadable files skipped)" if dataset.skipped else "")
    )
    for notice in dataset.notices:
        say(f"note: {notice}")
    say(f"weights: {prepared.weights_for(config).label}")
    experiment_id = store.experiment(config.name, config.description)
    run_id, result = tracked.execute(
        config,
        prepared,
        store,
        experiment_id,
        run_name=f"{config.name}-seed{config.seed}",
        tags={"run_type": "train"},
        verbose=0 if args.quiet else 2,
    )
    final = result.evaluations[result.final_stage]
    scores = ", ".join(
        f"{name} accuracy {ev.metrics['accuracy']:.4f}" for name, ev in final.items()
    )
    times = ", ".join(f"{p.name} {p.wall_time_s:.1f} s" for p in result.phases)
    say(f"run {run_id} FINISHED: {scores} ({times})")
    if args.register:
        from study.tracking import registry

        objective = config.tuner.objective
        split, _, name = objective.partition("_")
        score = final[split].metrics[name]
        registered = registry.register(
            store,
            run_id,
            args.register,
            dataset.class_names,
            dataset.images.shape[1],
            objective,
            score,
        )
        print(_registered(registered))
    say("browse the runs with: study ui")
    return 0


def sweep(args: argparse.Namespace) -> int:
    from study import config as study_config
    from study.tracking import server
    from study.tracking.store import Store
    from study.tuning.sweep import Sweep

    config = study_config.load(args.config, args.set)
    store = Store(args.tracking_uri)
    say = _printer(args.quiet)
    if args.worker:
        if not args.oracle:
            raise StudyError("--worker needs --oracle HOST:PORT, the address of the chief")
        say(f"worker {args.worker} of sweep {config.name}, chief at {args.oracle}")
        runner = Sweep(config, store, args.state_dir, say=say, progress=not args.quiet)
        runner.work(args.oracle, args.worker)
        return 0
    if args.serve_oracle and not server.is_loopback(args.serve_oracle.rpartition(":")[0]):
        print(
            f"warning: the oracle at {args.serve_oracle} takes requests from the network",
            file=sys.stderr,
        )
    return _sweep(config, store, args, fresh=args.fresh, oracle_address=args.serve_oracle)


def _sweep(
    config: StudyConfig,
    store: Store,
    args: argparse.Namespace,
    fresh: bool,
    oracle_address: str | None,
) -> int:
    """Run (or resume) the sweep of `config`, then log its knobs' importance and register its
    best model; 1 when every trial failed."""
    from study.tuning.sweep import Sweep

    say = _printer(args.quiet)
    runner = Sweep(config, store, args.state_dir, say=say, progress=not args.quiet)
    say(f"sweep {config.name}: {config.tuner.oracle} search, tracking in {store.display_uri}")
    summary = runner.run(
        fresh=fresh,
        workers=args.workers,
        oracle_address=oracle_address,
        retry_failed=args.retry_failed,
    )
    if summary.completed:  # the sweep is recorded as ended: its trials are safe to read
        _log_importance(store, summary, config.tuner.objective, say)
    print(
        f"sweep {config.name}: {summary.completed} trials completed, {summary.failed} failed "
        f"(parent run {summary.parent_run_id})"
    )
    if summary.stop_reason:
        print(f"the search stopped before its planned trials: {summary.stop_reason}")
    if summary.best_values is not None:
        values = " ".join(f"{k}={v}" for k, v in summary.best_values.items()) or "(no knobs)"
        print(
            f"best configuration: {values}, mean {config.tuner.objective} "
            f"{summary.best_score:.4f}; rerun it with: study train {summary.best_config_path}"
        )
        from study.runs import best

        kept = best.keep_sweep_best(
            config,
            runner.prepared,
            store,
            summary.experiment_id,
            summary.parent_run_id,
            summary.best_values,
            summary.best_score,
        )
        print(_registered(kept))
    return 1 if summary.statuses and not summary.completed else 0


def replicate(args: argparse.Namespace) -> int:
    from study import config as study_config
    from study.report.build import build_replication_report
    from study.tracking.store import Store
    from study.tuning.replicate import data_set_configs

    configs = data_set_configs(study_config.load(args.config, args.set), args.data)
    store = Store(args.tracking_uri)
    say = _printer(args.quiet)
    for number, config in enumerate(configs, 1):
        root = config.data.root or "the embedded sample"
        say(f"data set {number} of {len(configs)}: experiment {config.name} on {root}")
        if _sweep(config, store, args, fresh=False, oracle_address=None):
            return 1
    folder = build_replication_report([c.name for c in configs], store, args.out)
    print(f"replication report: {folder / 'report.md'} (also report.html, replication.csv)")
    return 0


def _log_importance(
    store: Store, summary: SweepSummary, objective: str, say: Callable[[str], None]
) -> None:
    """Which knob mattered, on the sweep's parent run as `importance.*` metrics (and said)."""
    from study.report.build import sweep_importance  # loads optuna only when needed

    table = sweep_importance(store, summary.experiment_id, summary.parent_run_id, objective)
    if table is not None:
        shown = ", ".join(f"{row.knob} {row.importance:.3f}" for row in table.itertuples())
        say(
            "importance of each knob (fANOVA share of a forest's variance; the knob tests are "
            f"the report's): {shown}"
        )


def _registered(kept) -> str:
    holder = "it is the champion" if kept.is_champion else f"champion stays version {kept.champion}"
    return (
        f"model: run {kept.run_id} registered as {kept.name} version {kept.version} "
        f"(score {kept.score:.4f}; {holder}); use it as models:/{kept.name}@champion"
    )


def predict(args: argparse.Namespace) -> int:
    from study.serving import predict as predicting
    from study.tracking import logged_model
    from study.tracking.store import Store

    files = predicting.image_files(args.paths)
    store = Store(args.tracking_uri)
    store.check()
    classifier = logged_model.load(store.uri, args.model_uri)
    rows = predicting.predict(classifier, files, progress=not args.quiet)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        rows.to_csv(args.out, index=False)
    else:
        rows.to_csv(sys.stdout, index=False)
    skipped = rows[rows[predicting.SKIPPED_COLUMN] != ""]
    columns = [predicting.FILE_COLUMN, predicting.SKIPPED_COLUMN]
    for file, why in skipped[columns].itertuples(index=False):
        print(f"skipped {file}: {why}", file=sys.stderr)
    if args.out:
        _printer(args.quiet)(
            f"predictions: {args.out} ({len(rows) - len(skipped)} images, {len(skipped)} skipped)"
        )
    return 0


def export(args: argparse.Namespace) -> int:
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


def ui(args: argparse.Namespace) -> int:
    return _serve("ui", args)


def serve(args: argparse.Namespace) -> int:
    return _serve("server", args)


def _serve(kind: str, args: argparse.Namespace) -> int:
    from study.tracking import server
    from study.tracking.store import Store

    store = Store(args.tracking_uri)
    store.check()
    server.check_port(args.host, args.port)
    store.initialize()  # a new store's tables are created here, whole, not by MLflow's server
    if not server.is_loopback(args.host):
        print(
            f"warning: serving on {args.host}: the runs become visible to the network",
            file=sys.stderr,
        )
    artifacts = getattr(args, "artifacts_destination", None)
    process_spec = server.command(
        kind, store.uri, args.host, args.port, args.allowed_hosts, artifacts, not args.verbose
    )
    what = "MLflow UI" if kind == "ui" else "MLflow tracking server"
    print(f"{what} for {store.display_uri} at http://{args.host}:{args.port} (Ctrl-C stops it)")
    address = None
    if kind == "ui":
        experiments = store.recent_experiments()
        for n, experiment in enumerate(experiments):
            url = server.runs_url(process_spec.url, experiment.experiment_id)
            address = address or url
            print(f"{'latest experiment' if n == 0 else '  also'} {experiment.name}: {url}")
    sys.stdout.flush()
    when_up = None
    if getattr(args, "open", False):
        import webbrowser

        def when_up() -> None:
            webbrowser.open(address or process_spec.url)

    return server.run(process_spec, when_up)


def report(args: argparse.Namespace) -> int:
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


def bench(args: argparse.Namespace) -> int:
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="study",
        description="Tune and compare NASNet-Mobile steel-defect classifiers, tracked in MLflow.",
    )
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--tracking-uri",
        help="MLflow store: sqlite:///PATH, postgresql://USER:PASSWORD@HOST:PORT/DB or "
        "http://HOST:PORT (default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)",
    )
    common.add_argument(
        "--state-dir",
        type=Path,
        default=Path("mlruns"),
        help="where the feature cache and sweep state live (default: mlruns)",
    )
    common.add_argument("--quiet", "-q", action="store_true", help="print only the result")
    common.add_argument(
        "--verbose",
        action="store_true",
        help="let TensorFlow's own log lines (absl, oneDNN, CUDA) and the MLflow server's "
        "(uvicorn's INFO lines, its warnings) through",
    )

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
    command.add_argument(
        "--register",
        metavar="NAME",
        help="log the model as an MLflow model and register it under NAME (alias champion "
        "when it scores best)",
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
    command.add_argument(
        "--retry-failed",
        action="store_true",
        help="when resuming, run every failed trial once more (its failed run stays, tagged)",
    )
    command.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="run the trials in N local worker processes (Keras Tuner chief/worker); 0: in "
        "this process (default: 2 for long frozen-phase trials on cached features on 2 or more "
        "cores, else 0)",
    )
    command.add_argument(
        "--serve-oracle",
        metavar="HOST:PORT",
        help="be the chief and serve the oracle at HOST:PORT to workers on other machines",
    )
    command.add_argument(
        "--worker", metavar="ID", help="be a worker with this id (unique per worker)"
    )
    command.add_argument("--oracle", metavar="HOST:PORT", help="the chief a worker asks")
    command.set_defaults(command=sweep)

    server_args = argparse.ArgumentParser(add_help=False, parents=[common])
    server_args.add_argument("--port", type=int, default=5000)
    server_args.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine)"
    )
    server_args.add_argument(
        "--allowed-hosts",
        help="Host headers MLflow accepts when serving beyond this machine, e.g. myhost:5000",
    )
    command = commands.add_parser(
        "ui", parents=[server_args], help="browse the runs in the MLflow UI"
    )
    command.add_argument(
        "--open", action="store_true", help="open the latest experiment's runs in a browser"
    )
    command.set_defaults(command=ui)
    command = commands.add_parser(
        "server",
        parents=[server_args],
        help="an MLflow tracking server over the store, for workers on several machines",
    )
    command.add_argument(
        "--artifacts-destination",
        metavar="FOLDER_OR_URI",
        help="where the server keeps the artifacts clients send it, a folder or an object store "
        "URI such as s3://bucket/path (default: artifacts/ beside a SQLite store, "
        "mlruns/artifacts for PostgreSQL)",
    )
    command.set_defaults(command=serve)

    command = commands.add_parser(
        "report",
        parents=[common],
        help="rebuild the paper's tables from an experiment's runs, beside the paper's figures",
    )
    command.add_argument(
        "experiment",
        nargs="+",
        help="MLflow experiment name (the study's name); several: one study on several data "
        "sets, reported as a replication (docs/replication.md)",
    )
    command.add_argument(
        "--out",
        type=Path,
        default=Path("reports"),
        help="folder for <experiment>/report.md, report.html, CSVs and PNGs (default: reports)",
    )
    command.add_argument(
        "--sweep", metavar="RUN_ID", help="the sweep's parent run (default: the latest sweep)"
    )
    command.add_argument(
        "--objective",
        help="metric that ranks configurations, e.g. val_loss (default: the sweep's objective)",
    )
    command.set_defaults(command=report)

    command = commands.add_parser(
        "replicate",
        parents=[study_args],
        help="sweep the study on each of several data sets, then pool their answers",
    )
    command.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="DIR",
        help="a data set's image folder, as its own experiment <study>-<folder name> "
        "(repeatable; default: the study's replicate: list)",
    )
    command.add_argument(
        "--workers", type=int, metavar="N", help="as for sweep: local worker processes"
    )
    command.add_argument(
        "--retry-failed", action="store_true", help="as for sweep: rerun failed trials once"
    )
    command.add_argument(
        "--out",
        type=Path,
        default=Path("reports"),
        help="folder for the replication report (default: reports)",
    )
    command.set_defaults(command=replicate)

    command = commands.add_parser(
        "bench",
        parents=[study_args],
        help="time inference of the full classifier on this machine, logged for the report",
    )
    command.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 1], metavar="N")
    command.add_argument("--repeats", type=int, default=20, help="timed steps per batch size")
    command.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    command.add_argument("--classes", type=int, default=6, help="output classes (NEU: 6)")
    command.add_argument(
        "--runtime",
        choices=RUNTIMES,
        default="tensorflow",
        help="inference runtime (default tensorflow); each is a row of Table 5",
    )
    command.set_defaults(command=bench)

    model_args = argparse.ArgumentParser(add_help=False, parents=[common])
    model_args.add_argument(
        "model_uri", metavar="MODEL_URI", help="runs:/<run id>/model or models:/NAME@champion"
    )
    command = commands.add_parser(
        "predict",
        parents=[model_args],
        help="predict the class of image files with a logged model, as CSV",
    )
    command.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="files or folders")
    command.add_argument("--out", type=Path, help="CSV file to write (default: standard output)")
    command.set_defaults(command=predict)

    command = commands.add_parser(
        "export",
        parents=[model_args],
        help="export a logged model for another runtime, checked against Keras on its test split",
    )
    command.add_argument("--format", choices=["onnx", "openvino"], default="onnx")
    command.add_argument(
        "--tolerance",
        type=float,
        help="largest allowed absolute difference of a probability from Keras's "
        "(default: onnx 1e-4, openvino 1e-3)",
    )
    command.set_defaults(command=export)
    return parser


def _printer(quiet: bool):
    def say(message: str) -> None:
        if not quiet:
            print(message, flush=True)

    return say


if __name__ == "__main__":
    sys.exit(main())
