"""`study sweep`: Keras Tuner searches logged as MLflow parent and child runs, resumable."""

import os
import signal
import subprocess
import sys
import time

import mlflow
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from study import config as study_config
from study import features, runs, training
from study.sweep import Sweep
from study.tracking import Store

from .conftest import REPO, run_study

SMOKE = str(REPO / "search_spaces" / "smoke.yaml")


def children(uri: str, experiment: str):
    mlflow.set_tracking_uri(uri)
    found = mlflow.search_runs(experiment_names=[experiment])
    return found[found["tags.run_type"] == "trial"], found[found["tags.run_type"] == "sweep"]


def test_smoke_sweep_then_rerun_adds_no_run(tmp_path):
    uri = f"sqlite:///{tmp_path}/m.db"
    args = ("sweep", SMOKE, "--set", "data.image_size=32", "--tracking-uri", uri)
    first = run_study(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "[  4/4]" in first.stdout and "ETA" in first.stdout

    trials, parents = children(uri, "smoke")
    assert len(parents) == 1 and len(trials) == 4
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


def test_sigkill_midway_then_resume_runs_every_trial_once(tmp_path):
    uri = f"sqlite:///{tmp_path}/m.db"
    args = [
        "sweep",
        SMOKE,
        "--tracking-uri",
        uri,
        "-q",
        "--set",
        "data.image_size=32",
        "--set",
        "frozen.epochs=40",
        "--set",
        "hyperparameters.model.activation.values=[elu, relu, tanh, sigmoid]",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "study.cli", *args],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    client = MlflowClient(uri)
    deadline = time.monotonic() + 300
    killed_run = None
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.5)
        try:
            experiment = client.get_experiment_by_name("smoke")
            found = (
                client.search_runs([experiment.experiment_id], "tags.run_type = 'trial'")
                if experiment
                else []
            )
        except Exception:  # the store is being created
            continue
        running = [r for r in found if r.info.status == "RUNNING"]
        if len(found) >= 3 and running:
            os.killpg(process.pid, signal.SIGKILL)
            killed_run = running[0].info.run_id
            break
    process.wait()
    assert killed_run is not None, "the sweep ended before it could be killed"
    assert client.get_run(killed_run).info.status == "RUNNING"

    resumed = run_study(*args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    trials, parents = children(uri, "smoke")
    finished = trials[trials["status"] == "FINISHED"]
    assert len(finished) == 8
    assert finished["tags.trial_id"].is_unique
    assert client.get_run(killed_run).info.status == "KILLED"
    assert set(trials["status"]) <= {"FINISHED", "KILLED"} and len(trials) == 9
    assert len(parents) == 1 and parents.iloc[0]["status"] == "FINISHED"


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

    monkeypatch.setattr(runs.training, "train", faulty_train)
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
            "tuner.max_configs=2",
            "seeds=[3, 4]",
            "fine_tune.epochs=0",
            "hyperparameters={model.dropout: {type: float, min: 0.0, max: 0.5}}",
        ],
    )
    store = Store(f"sqlite:///{tmp_path}/m.db")
    summary = Sweep(config, store, tmp_path / "state", say=lambda _: None, progress=False).run()
    assert summary.completed == 4
    trials, _ = children(store.uri, "smoke")
    by_dropout = trials.groupby("params.model.dropout")["tags.seed"].apply(sorted)
    assert len(by_dropout) == 2 and all(seeds == ["3", "4"] for seeds in by_dropout)
