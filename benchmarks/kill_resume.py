"""Does a sweep survive `kill -9`? Five SIGKILLs at moments drawn by a seeded RNG, a resume
after each, and an audit of what the finished sweep left.

    python benchmarks/kill_resume.py [--seed 6] [--epochs 400] [--keep DIR] [--workers 2]
                                     [--store sqlite|postgresql]

An 8-trial grid sweep (4 activations x 2 seeds) on the embedded NEU sample at 32 px, with its
own SQLite store and --state-dir in a temporary folder. The first kill lands while the feature
cache is built, the second while the MLflow store and the sweep's parent run are created and
logged; the other three land during a trial, while a trial logs its results, and just after a
trial finished, in an order and with delays the RNG picks. Each time the same command runs
again (resumes) and is killed at the next moment; the last one runs to the end. Then:

- exactly 8 FINISHED child runs, one per trial and per configuration, none RUNNING, every run
  that was RUNNING at a kill now KILLED (or FAILED);
- one parent run, FINISHED (a parent run a kill left without state is KILLED);
- the Keras Tuner state, reloaded, agrees with MLflow: the same trials, all COMPLETED, with the
  values and scores the runs logged;
- the feature cache is one complete, valid file (checked after every kill too: a half-written
  cache file never appears under its name).

With `--workers 2` the sweep is distributed (a chief and 2 local worker processes, the SQLite
store behind the tracking server the chief starts), and the 5 SIGKILLs hit single processes
while a trial runs: 3 times the worker running it (the chief starts the worker again and hands
it back its trial) and twice the chief alone (its workers must stop by themselves; the same
command is started again and resumes), in an order the RNG picks. A kill is survived when the
trial it hit ends with one FINISHED run and the sweep ends with exit code 0. With `--store
postgresql` (distributed only) the store is a database of a throwaway PostgreSQL cluster
(`tests/postgres.py`) that the chief and its workers write directly, and the lines go to
`results/kill_resume_postgresql.txt`.

Prints one line per kill and `kills survived: N/5, duplicate runs: D, lost trials: L`; exits 1
unless all 5 kills were survived with 0 duplicates, 0 lost trials and no other problem.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import tempfile
import time
from pathlib import Path

from mlflow import MlflowClient

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from results import Results  # noqa: E402

from study.tracking.store import Store  # noqa: E402
from tests import postgres  # noqa: E402
from tests.kill_harness import SweepUnderTest, audit, check_feature_cache  # noqa: E402

SMOKE = REPO / "search_spaces" / "smoke.yaml"
STORES = ("sqlite", "postgresql")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=6, help="seeds the kill moments and delays")
    parser.add_argument(
        "--epochs", type=int, default=400, help="frozen epochs per trial (a few seconds each)"
    )
    parser.add_argument("--keep", type=Path, help="work here (kept) instead of a temp folder")
    parser.add_argument(
        "--workers", type=int, default=0, help="distributed: a chief and N local workers"
    )
    parser.add_argument("--store", default="sqlite", help=f"one of {', '.join(STORES)}")
    args = parser.parse_args()
    if args.store not in STORES:
        parser.error(f"--store {args.store!r}: valid: {', '.join(STORES)}")
    if args.store == "postgresql" and not args.workers:
        parser.error("--store postgresql: only the distributed mode (--workers N) runs on it")
    results = Results(__file__, variant="" if args.store == "sqlite" else args.store)

    from study import config as study_config

    overrides = [
        "data.image_size=32",
        f"frozen.epochs={args.epochs}",
        "hyperparameters.model.activation.values=[elu, relu, tanh, sigmoid]",
    ]
    config = study_config.load(SMOKE, overrides)
    rng = random.Random(args.seed)
    moments = ["cache", "store", *rng.sample(["trial", "logging", "between"], 3)]

    with contextlib.ExitStack() as stack:
        scratch = stack.enter_context(tempfile.TemporaryDirectory(prefix="kill-resume-"))
        work = args.keep or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        state = work / "state"
        if args.store == "postgresql":
            programs = postgres.binaries()
            if programs is None:
                raise SystemExit("--store postgresql: PostgreSQL is not installed (no initdb)")
            server, _ = stack.enter_context(postgres.cluster(programs))
            uri = postgres.fresh_database(server, "kill_resume")
        else:
            uri = f"sqlite:///{work / 'store' / 'mlflow.db'}"
        command = ["sweep", str(SMOKE), "--tracking-uri", uri, "--state-dir", str(state)]
        for item in overrides:
            command += ["--set", item]
        if args.workers:
            command += ["--workers", str(args.workers)]
        sweep = SweepUnderTest(command, work, uri, state, work / "sweep.log")
        if args.workers:
            return distributed(sweep, config, uri, state, rng, args, results)
        results.print(
            f"8-trial sweep in {work}; kill moments (seed {args.seed}): {', '.join(moments)}"
        )
        started = time.monotonic()

        outcomes: list[str | int] = []  # per launch: "killed", or the exit code it ended with
        killed_runs, cache_problems = [], []
        for number, moment in enumerate(moments, 1):
            kill = sweep.kill_at(moment, rng)
            outcomes.append("killed" if kill else sweep.exit_codes[-1])
            if kill is None:
                results.print(
                    f"kill {number} ({moment}): missed, the process ended first with exit code "
                    f"{sweep.exit_codes[-1]}"
                )
                continue
            killed_runs += kill.running_runs
            cache = _cache_state(config, state)
            if cache.startswith("INVALID"):
                cache_problems.append(f"after kill {number}: {cache}")
            results.print(
                f"kill {number} ({moment}): SIGKILL {kill.after_s:5.1f} s after start | "
                f"{kill.seen} | runs left RUNNING: {len(kill.running_runs)} | cache: {cache}"
            )
        final_code = sweep.run_to_end()
        outcomes.append(final_code)
        # A kill is survived when the launch after it resumed: it ran until the next kill, or
        # to a clean end.
        survived = sum(
            this == "killed" and after in ("killed", 0)
            for this, after in zip(outcomes, outcomes[1:], strict=False)
        )
        results.print(
            f"final run: exit code {final_code}, {time.monotonic() - started:.0f} s in all"
        )

        result = audit(config, uri, state, killed_runs)
        result.problems += cache_problems
        results.print(result.line())
        for problem in result.problems:
            results.print(f"  problem: {problem}")
        results.print(
            f"kills survived: {survived}/{len(moments)}, duplicate runs: {result.duplicates}, "
            f"lost trials: {result.lost}"
        )
        ok = survived == len(moments) and not result.problems
        if not ok:
            results.print(
                f"sweep output: {work / 'sweep.log'}" if args.keep else _tail(work / "sweep.log")
            )
        return 0 if ok else 1


def distributed(sweep, config, uri: str, state: Path, rng, args, results: Results) -> int:
    targets = rng.sample(["worker", "worker", "worker", "chief", "chief"], 5)
    results.print(
        f"8-trial sweep, chief + {args.workers} workers, in {sweep.cwd}; kills (seed "
        f"{args.seed}): {', '.join(targets)}"
    )
    started = time.monotonic()
    kills = sweep.kill_processes(targets, rng)
    code = sweep.exit_codes[-1] if sweep.exit_codes else None
    results.print(f"sweep ended: exit code {code}, {time.monotonic() - started:.0f} s in all")
    # A killed worker's run must end KILLED (or FAILED). A killed chief's workers may still
    # finish theirs: over PostgreSQL they write the store directly, and the chief started again
    # takes the FINISHED run as the trial's result.
    killed_runs = [run for kill in kills if kill.moment == "worker" for run in kill.running_runs]
    result = audit(config, uri, state, killed_runs)
    result.problems += sweep.problems
    finished_trials = _finished_trials(config, uri)
    survived = 0
    for number, kill in enumerate(kills, 1):
        trials = sorted(_trial_of(uri, run) for run in kill.running_runs)
        ok = code == 0 and all(finished_trials.get(t) == 1 for t in trials)
        survived += ok
        results.print(
            f"kill {number} ({kill.moment}): SIGKILL {kill.after_s:5.1f} s after start | "
            f"trials hit: {', '.join(trials) or 'none'} | now: {kill.seen} | "
            f"{'survived' if ok else 'NOT survived'}"
        )
    results.print(result.line())
    for problem in result.problems:
        results.print(f"  problem: {problem}")
    results.print(
        f"kills survived: {survived}/{len(targets)}, duplicate runs: {result.duplicates}, "
        f"lost trials: {result.lost}"
    )
    ok = survived == len(targets) and not result.problems
    if not ok:
        results.print(f"sweep output: {sweep.log}" if args.keep else _tail(sweep.log))
    return 0 if ok else 1


def _finished_trials(config, uri: str) -> dict[str, int]:
    """Trial id -> how many FINISHED runs it has."""
    client = MlflowClient(Store(uri).uri)
    experiment = client.get_experiment_by_name(config.name)
    found = client.search_runs(
        [experiment.experiment_id], "tags.run_type = 'trial' and attributes.status = 'FINISHED'"
    )
    counts: dict[str, int] = {}
    for run in found:
        counts[run.data.tags["trial_id"]] = counts.get(run.data.tags["trial_id"], 0) + 1
    return counts


def _trial_of(uri: str, run_id: str) -> str:
    return Store(uri).get_run(run_id).tags["trial_id"]


def _cache_state(config, state: Path) -> str:
    """The feature cache right after a kill: absent (rebuilt on resume) or complete and
    valid; anything else under the final name is a bug."""
    folder = state / "features"
    if not folder.is_dir() or not list(folder.glob("*.npz")):
        partials = len(list(folder.glob(".*.partial"))) if folder.is_dir() else 0
        return "absent" + (f" ({partials} partial file left, never read)" if partials else "")
    problem = check_feature_cache(config, state)
    if problem and "folder holds" in problem and list(folder.glob(".*.partial")):
        return "complete and valid (a partial file beside it, never read)"
    return f"INVALID: {problem}" if problem else "complete and valid"


def _tail(log: Path, lines: int = 60) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


if __name__ == "__main__":
    sys.exit(main())
