"""`study sweep` without --workers: the rule that chooses its local worker processes, and a
sweep run by that default surviving kill -9 of its whole process group."""

import random

import mlflow
import pytest

from study import config as study_config
from study.caches import features
from study.tracking.store import Store
from study.tuning.sweep import Sweep
from study.tuning.workers import (
    DEFAULT_WORKERS,
    MIN_TRIAL_IMAGE_EPOCHS,
    WORKER_MEMORY_GB,
    default_workers,
)

from .conftest import REPO
from .kill_harness import SweepUnderTest, audit

SMOKE = REPO / "search_spaces" / "smoke.yaml"
SAMPLE_IMAGES = 60  # the package's NEU sample
# The 4 smoke trials at up to 400 frozen epochs x 60 images, enough for 2 workers by default;
# early stopping ends each after a few epochs, and a cache of one view is quick to build.
KILLED_SWEEP = [
    "data.image_size=32",
    "features.views=1",
    "frozen.epochs=400",
    "frozen.batch_size=64",
    "frozen.early_stopping.patience=2",
]


def smoke(*overrides: str):
    return study_config.load(SMOKE, list(overrides))


def test_two_workers_only_for_long_frozen_trials_on_cached_features_with_two_left():
    long_enough = f"frozen.epochs={MIN_TRIAL_IMAGE_EPOCHS // SAMPLE_IMAGES + 1}"
    config = smoke(long_enough)
    assert default_workers(config, SAMPLE_IMAGES, 4, cores=2)[0] == 2
    assert default_workers(config, SAMPLE_IMAGES, 4, cores=8)[0] == 2  # at most 2
    assert default_workers(config, SAMPLE_IMAGES, None, cores=2)[0] == 2  # unknown (Hyperband)
    assert default_workers(config, SAMPLE_IMAGES, 1, cores=2) == (0, "1 trial left")
    assert default_workers(config, SAMPLE_IMAGES, 4, cores=1) == (0, "1 usable core")
    # the smoke study as shipped: 10 epochs x 60 images, too short to repay starting workers
    count, reason = default_workers(smoke(), SAMPLE_IMAGES, 4, cores=2)
    assert count == 0 and reason.startswith("short trials: 10 frozen epochs x 60 images")
    # trials that may fine-tune, or that train without the feature cache
    may_fine_tune = "hyperparameters.fine_tune.epochs={type: choice, values: [0, 1]}"
    for overrides in ([may_fine_tune], ["features.cache=false"]):
        count, reason = default_workers(smoke(long_enough, *overrides), SAMPLE_IMAGES, 4, 2)
        assert (count, reason) == (0, "the trials fine-tune or do not run on cached features")


def test_two_workers_for_fine_tuning_on_cached_activations_where_memory_allows():
    epochs = "hyperparameters.fine_tune.epochs={type: fixed, value: 2}"
    cut = [epochs, "fine_tune.trainable={from: normal_12}"]
    config = smoke(*cut)
    count, reason = default_workers(config, SAMPLE_IMAGES, 4, cores=2, memory_gb=20)
    assert count == 2 and reason.startswith("fine-tuning trials on cached activations")
    needed = DEFAULT_WORKERS * WORKER_MEMORY_GB
    count, reason = default_workers(config, SAMPLE_IMAGES, 4, cores=2, memory_gb=needed - 0.5)
    assert count == 0 and reason.startswith(f"{needed - 0.5:.1f} GB of memory available")
    assert default_workers(config, SAMPLE_IMAGES, 1, cores=2, memory_gb=20) == (0, "1 trial left")
    # the whole backbone fine-tuned on images: one trial at a time
    whole = smoke(epochs, "fine_tune.trainable=all")
    assert default_workers(whole, SAMPLE_IMAGES, 4, cores=2, memory_gb=20)[0] == 0


def test_kill_9_of_a_default_workers_sweep_then_resume_logs_each_trial_once(tmp_path):
    """The 4 smoke trials, long enough for 2 workers by default: SIGKILL the whole process
    group (chief, workers, tracking server) just after a trial's run turned FINISHED, run the
    same command again, and every trial ends with exactly one FINISHED run, none RUNNING."""
    uri, state = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}", tmp_path / "state"
    command = ["sweep", str(SMOKE), "--tracking-uri", uri]
    command += ["--state-dir", str(state)]
    for item in KILLED_SWEEP:
        command += ["--set", item]
    sweep = SweepUnderTest(command, tmp_path, uri, state, tmp_path / "sweep.log")

    kill = sweep.kill_at("between", random.Random(0), timeout_s=400)
    assert kill is not None, f"the sweep ended before any kill: {sweep.log}"
    # read through MLflow: the killed tracking server can leave a journal only a writer replays
    assert 1 <= len(finished_runs(uri)) < 4, kill.seen
    assert sweep.run_to_end(timeout_s=400) == 0, sweep.log.read_text()[-3000:]

    log = sweep.log.read_text()
    assert log.count("2 local workers by default") == 2, log  # the kill's launch and the resume
    result = audit(smoke(*KILLED_SWEEP), uri, state, kill.running_runs)
    assert result.problems == [], result.problems
    assert (result.finished, result.duplicates, result.lost) == (4, 0, 0)
    finished = finished_runs(uri)
    assert sorted(finished["tags.trial_id"]) == ["0", "1", "2", "3"]
    assert set(finished["tags.worker"]) <= {"worker1", "worker2"}


def finished_runs(uri: str):
    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["smoke"])
    return runs[(runs["tags.run_type"] == "trial") & (runs["status"] == "FINISHED")]


class CacheReached(Exception):
    pass


def test_the_workers_tracking_server_starts_while_the_feature_cache_is_built(tmp_path, monkeypatch):
    """A sweep of a SQLite store that will run its trials in local workers launches the
    server they log through once its data is loaded, before it builds the cache; the smoke
    study as shipped, whose trials run in the sweep's process, launches none. A failure before
    the workers start stops the server."""
    found = {}

    def cache_reached(*args, **kwargs):
        tracking = sweep.tracking
        found["server"] = tracking and (tracking.process, tracking.process.poll())
        raise CacheReached

    monkeypatch.setattr(features, "load_or_build", cache_reached)
    for name, overrides in (("workers", KILLED_SWEEP), ("in process", [])):
        uri = f"sqlite:///{tmp_path / name / 'mlflow.db'}"
        sweep = Sweep(smoke(*overrides), Store(uri), tmp_path / name / "state", progress=False)
        with pytest.raises(CacheReached):
            sweep.run(workers=None)
        if name == "workers":
            process, exit_code = found["server"]
            assert exit_code is None and "server" in process.args  # running at the cache
            assert process.poll() is not None  # and stopped by the failure
        else:
            assert found["server"] is None
