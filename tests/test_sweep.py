"""`study sweep`: Keras Tuner searches logged as MLflow parent and child runs, resumable."""

import random

import mlflow
import numpy as np
import pytest

from study import config as study_config
from study.caches import features
from study.runs import tracked
from study.tracking.store import Store
from study.training import train as training
from study.tuning.sweep import Sweep

from .conftest import REPO, run_study
from .kill_harness import SweepUnderTest, audit

SMOKE = str(REPO / "search_spaces" / "smoke.yaml")


def children(uri: str, experiment: str):
    mlflow.set_tracking_uri(uri)
    found = mlflow.search_runs(experiment_names=[experiment])
    return found[found["tags.run_type"] == "trial"], found[found["tags.run_type"] == "sweep"]


def test_smoke_sweep_then_rerun_adds_no_run(tmp_path):
    uri = f"sqlite:///{tmp_path}/m.db"
    asked = ("question.compare=activation", "question.family=reference", "question.reference=elu")
    declared = [part for item in asked for part in ("--set", item)]
    args = ("sweep", SMOKE, "--set", "data.image_size=32", *declared, "--tracking-uri", uri)
    first = run_study(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "[  4/4]" in first.stdout and "ETA" in first.stdout

    trials, parents = children(uri, "smoke")
    assert len(parents) == 1 and len(trials) == 4
    # the declared question, on the parent run before any trial
    parent = parents.iloc[0]
    assert (parent["params.question.compare"], parent["params.question.reference"]) == (
        "activation",
        "elu",
    )
    assert parent["params.question.metric"] == "error_rate"
    assert (
        "params.question.compare" not in trials.columns
        or trials["params.question.compare"].isna().all()
    )  # the question is the sweep's, not a run's
    assert set(trials["status"]) == {"FINISHED"}
    assert sorted(trials["tags.trial_id"]) == ["0", "1", "2", "3"]
    assert set(trials["tags.mlflow.parentRunId"]) == {parents.iloc[0]["run_id"]}
    pairs = set(zip(trials["params.model.activation"], trials["tags.seed"], strict=True))
    assert pairs == {("elu", "0"), ("elu", "1"), ("relu", "0"), ("relu", "1")}
    assert (trials["params.seed"] == trials["tags.seed"]).all()
    assert (
        trials["metrics.val_accuracy"].notna().all()
        and trials["metrics.test_accuracy"].notna().all()
    )
    assert (trials["params.fine_tune.epochs"] == "0").all()

    best = tmp_path / "mlruns" / "tuner" / "smoke" / "best_config.yaml"
    assert best.is_file() and f"study train {best.relative_to(tmp_path)}" in first.stdout
    assert study_config.load(best).name == "smoke-best"

    again = run_study(*args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    trials_after, parents_after = children(uri, "smoke")
    assert len(trials_after) == 4 and len(parents_after) == 1


def test_sigkill_at_four_moments_then_resume_logs_every_trial_once(tmp_path):
    """kill -9 while the feature cache is built, while the store and the parent run are
    created, while a trial logs its results and just after a trial finished; each time the
    same command resumes. The 8 trials end with one FINISHED run each, the runs that were
    RUNNING at a kill end KILLED, and MLflow, Keras Tuner and the feature cache agree
    (benchmarks/kill_resume.py does the same with more kills)."""
    overrides = [
        "data.image_size=32",
        "frozen.epochs=5",
        "hyperparameters.model.activation.values=[elu, relu, tanh, sigmoid]",
    ]
    uri, state = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}", tmp_path / "state"
    command = ["sweep", SMOKE, "--tracking-uri", uri, "-q"]
    command += ["--state-dir", str(state)]
    for item in overrides:
        command += ["--set", item]
    sweep = SweepUnderTest(command, tmp_path, uri, state, tmp_path / "sweep.log")
    rng = random.Random(0)
    for moment in ("cache", "store", "logging", "between"):
        kill = sweep.kill_at(moment, rng, timeout_s=300)
        assert kill is not None, f"the sweep ended before the {moment} kill: {sweep.log}"
    assert sweep.exit_codes == []  # every launch ran until it was killed
    cache_kill, _, logging_kill, _ = sweep.kills
    assert cache_kill.seen == "feature cache being built (no .npz yet)"
    assert logging_kill.running_runs, logging_kill.seen

    assert sweep.run_to_end() == 0, (tmp_path / "sweep.log").read_text()[-3000:]
    killed = [run for kill in sweep.kills for run in kill.running_runs]
    config = study_config.load(SMOKE, overrides)
    result = audit(config, uri, state, killed)
    assert result.problems == [], result.problems
    assert (result.finished, result.duplicates, result.lost) == (8, 0, 0)


def test_failing_trials_are_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch):
    """One trial's features hold NaN, one raises, one runs out of time; the rest finish."""
    real_train = training.train

    def faulty_train(config, dataset, split, weights, cache, **kwargs):
        activation = config.model.activation
        if activation == "tanh":
            cache = features.FeatureCache(
                cache.key, cache.path, cache.clean, cache.views * np.nan, 1
            )
        if activation == "sigmoid":
            raise RuntimeError("a deliberate crash")
        if activation == "relu":
            kwargs["time_budget_s"] = 1e-9
        return real_train(config, dataset, split, weights, cache, **kwargs)

    monkeypatch.setattr(tracked.training, "train", faulty_train)
    config = study_config.load(
        SMOKE,
        [
            "data.image_size=32",
            "seeds=[0]",
            "hyperparameters.model.activation.values=[elu, relu, tanh, sigmoid, gelu]",
        ],
    )
    store = Store(f"sqlite:///{tmp_path}/m.db")
    summary = Sweep(config, store, tmp_path / "state", say=lambda _: None, progress=False).run()
    assert summary.completed == 2 and summary.failed == 3

    trials, parents = children(store.uri, "smoke")
    status = dict(zip(trials["params.model.activation"], trials["status"], strict=True))
    assert status == {
        "elu": "FINISHED",
        "gelu": "FINISHED",
        "relu": "FAILED",
        "tanh": "FAILED",
        "sigmoid": "FAILED",
    }
    errors = dict(zip(trials["params.model.activation"], trials["tags.error"], strict=True))
    assert "loss became nan" in errors["tanh"]
    assert "a deliberate crash" in errors["sigmoid"]
    assert "time budget ran out" in errors["relu"]
    assert parents.iloc[0]["status"] == "FINISHED"


def test_a_sweep_whose_trials_all_fail_exits_non_zero(tmp_path):
    uri = f"sqlite:///{tmp_path}/m.db"
    done = run_study(
        "sweep",
        SMOKE,
        "--tracking-uri",
        uri,
        "--set",
        "data.image_size=32",
        "--set",
        "tuner.trial_timeout_s=0.000001",
        cwd=tmp_path,
    )
    assert done.returncode == 1
    assert "0 trials completed, 4 failed" in done.stdout
    trials, parents = children(uri, "smoke")
    assert set(trials["status"]) == {"FAILED"} and parents.iloc[0]["status"] == "FAILED"


def test_changing_the_config_under_a_sweep_is_refused(tmp_path):
    uri = f"sqlite:///{tmp_path}/m.db"
    base = (
        "sweep",
        SMOKE,
        "--tracking-uri",
        uri,
        "--set",
        "data.image_size=32",
        "--set",
        "seeds=[0]",
        "--set",
        "features.views=1",
        "--set",
        "frozen.epochs=2",
    )
    assert run_study(*base, cwd=tmp_path).returncode == 0
    changed = run_study(*base, "--set", "model.dropout=0.5", cwd=tmp_path)
    assert changed.returncode == 2
    assert "belongs to another config" in changed.stderr and "--fresh" in changed.stderr
    fresh = run_study(*base, "--set", "model.dropout=0.5", "--fresh", cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    trials, parents = children(uri, "smoke")
    assert len(parents) == 2 and len(trials) == 4


@pytest.mark.parametrize("oracle", ["random", "bayesian"])
def test_model_based_oracles_repeat_each_configuration_over_the_seeds(tmp_path, oracle):
    config = study_config.load(
        SMOKE,
        [
            "data.image_size=32",
            f"tuner.oracle={oracle}",
            "tuner.max_configs=3",
            "seeds=[3, 4]",
            "fine_tune.epochs=0",
            "frozen.epochs=3",
            "hyperparameters={model.dropout: {type: float, min: 0.0, max: 0.5}}",
            *(["tuner.num_initial_points=1"] if oracle == "bayesian" else []),
        ],
    )
    store = Store(f"sqlite:///{tmp_path}/m.db")
    summary = Sweep(config, store, tmp_path / "state", say=lambda _: None, progress=False).run()
    assert summary.completed == 6 and summary.stop_reason is None  # bayesian: 2 modelled
    trials, _ = children(store.uri, "smoke")
    by_dropout = trials.groupby("params.model.dropout")["tags.seed"].apply(sorted)
    assert len(by_dropout) == 3 and all(seeds == ["3", "4"] for seeds in by_dropout)
