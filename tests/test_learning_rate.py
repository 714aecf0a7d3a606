"""The decay schedule lr = a (1 - b)^epoch, as `study train` logs it, in both phases."""

import pytest
from mlflow.tracking import MlflowClient

from .conftest import REPO, run_study

SMOKE = str(REPO / "search_spaces" / "smoke.yaml")
SCHEDULES = {"frozen": (0.01, 0.3, 3), "fine_tune": (0.002, 0.2, 2)}  # a, b, epochs


def test_logged_learning_rate_is_a_times_one_minus_b_to_the_epoch(tmp_path):
    uri = f"sqlite:///{tmp_path}/m.db"
    overrides = ["data.image_size=32", "features.views=1"]
    for phase, (a, b, epochs) in SCHEDULES.items():
        overrides += [
            f"{phase}.learning_rate={a}",
            f"{phase}.decay_rate={b}",
            f"{phase}.epochs={epochs}",
            f"{phase}.early_stopping.patience={epochs}",  # every epoch runs
        ]
    args = [part for key in overrides for part in ("--set", key)]
    done = run_study(
        "train", SMOKE, *args, "--tracking-uri", uri, "--state-dir", str(tmp_path), cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr

    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("smoke").experiment_id])
    for phase, (a, b, epochs) in SCHEDULES.items():
        history = client.get_metric_history(run.info.run_id, f"{phase}/learning_rate")
        logged = [m.value for m in sorted(history, key=lambda m: m.step)]
        assert [m.step for m in history] == list(range(epochs))
        expected = [a * (1 - b) ** epoch for epoch in range(epochs)]
        assert logged == pytest.approx(expected, rel=1e-6), phase
