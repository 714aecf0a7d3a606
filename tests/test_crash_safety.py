"""A process killed at the worst moment leaves nothing that a later run trips over: not a
half-created MLflow store, not a half-written feature or activation cache, not a parent run
stuck RUNNING.
(The kill -9 test of a whole sweep is in test_sweep.py.)"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest
from mlflow.tracking import MlflowClient

from study import config as study_config
from study.caches import activations, features
from study.caches.inputs import CacheInputs
from study.config import Augmentation
from study.data import dataset as data
from study.model import nasnet as model
from study.tracking.store import Store
from study.tuning import state as sweep_state
from study.tuning import sweep as study_sweep

from .conftest import REPO, copy_slice

SMOKE = str(REPO / "search_spaces" / "smoke.yaml")


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


def test_a_store_whose_creation_was_killed_is_created_again(tmp_path):
    """MLflow creates a SQLite store's tables, then migrates them; killed in between, the file
    could never be opened again. Here the process kills itself right there."""
    database = tmp_path / "store" / "mlflow.db"
    killed = run_python(
        f"""
        import os, signal
        import mlflow.store.db.utils as utils
        from study.tracking.store import Store

        def die(engine):
            os.kill(os.getpid(), signal.SIGKILL)  # the tables exist, the migrations have not run

        utils._upgrade_db = die
        Store("sqlite:///{database}").initialize()
        """
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not database.exists()
    assert len(list(database.parent.glob(".mlflow.db.*.partial"))) == 1

    store = Store(f"sqlite:///{database}")
    experiment = store.experiment("after-the-kill")
    with store.run(experiment, "works", {"run_type": "train"}) as run_id:
        store.log(run_id, params={"a": 1})
    assert MlflowClient(store.uri).get_run(run_id).info.status == "FINISHED"
    assert sorted(p.name for p in database.parent.iterdir()) == ["mlflow.db"]


def test_a_cache_writer_killed_mid_write_leaves_nothing_that_is_read(tmp_path):
    dataset = data.load(copy_slice(tmp_path / "neu", per_class=2), 32)
    weights = model.resolve_weights("none")
    folder = tmp_path / "cache"
    folder.mkdir()
    inputs = CacheInputs(32, Augmentation(), 2, 0)
    key = inputs.key(dataset, weights)
    final = folder / f"{key}.npz"
    killed = run_python(
        f"""
        import os, signal
        from study.files import atomic_file

        with atomic_file("{final}") as handle:
            handle.write(b"PK" + bytes(100_000))  # the start of a zip, and then the kill
            handle.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert not final.exists()
    (partial,) = folder.glob(f".{final.name}.*.partial")
    assert partial.stat().st_size > 100_000

    cache = features.load_or_build(dataset, weights, inputs, folder, False)
    assert cache.path == final and cache.clean.shape == (12, model.FEATURE_WIDTH)
    assert sorted(p.name for p in folder.iterdir()) == [f"{key}.lock", final.name]


def test_an_activation_cache_builder_killed_mid_write_leaves_nothing_that_is_read(tmp_path):
    root = copy_slice(tmp_path / "neu", per_class=2)
    folder = tmp_path / "activations"
    arguments = f"data.load({str(root)!r}, 32), model.resolve_weights('none'), "
    arguments += f"CacheInputs(32, Augmentation(), 1, 0, cut='normal_12'), {str(folder)!r}, False"
    killed = run_python(
        f"""
        import os, signal
        from study.caches import activations
        from study.caches.inputs import CacheInputs
        from study.data import dataset as data
        from study.model import nasnet as model
        from study.config import Augmentation

        def first_batch_then_killed(dataset, *args):
            yield data.to_model_input(dataset.images[:4])
            os.kill(os.getpid(), signal.SIGKILL)

        activations.model_inputs = first_batch_then_killed
        activations.load_or_build({arguments})
        """
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (partial,) = folder.glob(".*.partial")
    assert not list(folder.glob("*.npy")) and partial.stat().st_size > 0

    cache = activations.load_or_build(
        data.load(root, 32),
        model.resolve_weights("none"),
        CacheInputs(32, Augmentation(), 1, 0, cut="normal_12"),
        folder,
        False,
    )
    assert cache.records.shape == (2, 12)
    assert sorted(p.name for p in folder.iterdir()) == [f"{cache.key}.lock", f"{cache.key}.npy"]


def test_a_parent_run_left_without_sweep_state_is_closed_as_killed(tmp_path, monkeypatch):
    """Killed between creating the sweep's parent run and saving sweep.json, a sweep would
    leave that run RUNNING for ever beside the new one that the next start creates."""
    config = study_config.load(
        SMOKE,
        [
            "data.image_size=32",
            "frozen.epochs=1",
            "seeds=[0]",
            "hyperparameters.model.activation.values=[elu]",
        ],
    )
    store = Store(f"sqlite:///{tmp_path}/m.db")
    real_write = sweep_state.atomic_write_text

    def dies_before_saving_the_state(path, text):
        if str(path).endswith(sweep_state.STATE_FILE):
            raise SystemExit("killed")  # nothing catches it: the parent run stays RUNNING
        real_write(path, text)

    monkeypatch.setattr(sweep_state, "atomic_write_text", dies_before_saving_the_state)
    with pytest.raises(SystemExit):
        study_sweep.Sweep(config, store, tmp_path / "state", say=lambda _: None).run()
    client = MlflowClient(store.uri)
    (orphan,) = client.search_runs(["1"], "tags.run_type = 'sweep'")
    assert orphan.info.status == "RUNNING"

    monkeypatch.setattr(sweep_state, "atomic_write_text", real_write)
    summary = study_sweep.Sweep(config, store, tmp_path / "state", say=lambda _: None).run()
    assert summary.completed == 1
    sweeps = {r.info.run_id: r for r in client.search_runs(["1"], "tags.run_type = 'sweep'")}
    assert sweeps[summary.parent_run_id].info.status == "FINISHED"
    closed = sweeps[orphan.info.run_id]
    assert closed.info.status == "KILLED"
    assert summary.parent_run_id in closed.data.tags["error"]
    (trial,) = client.search_runs(["1"], "tags.run_type = 'trial'")
    assert trial.data.tags["mlflow.parentRunId"] == summary.parent_run_id
