"""`study report` after a real smoke sweep: the activation table equals what MLflow holds."""

import mlflow
import numpy as np
import pandas as pd
import pytest

from study.tracking.store import NOTE_TAG, REPORT_NOTE

from .conftest import REPO, run_study

SMOKE = str(REPO / "search_spaces" / "smoke.yaml")


def test_report_of_the_smoke_sweep_matches_the_logged_runs(tmp_path):
    uri = f"sqlite:///{tmp_path}/m.db"
    swept = run_study(
        "sweep",
        SMOKE,
        "--tracking-uri",
        uri,
        "--quiet",
        "--set",
        "data.image_size=32",
        "--set",
        "seeds=[0, 1, 2]",
        cwd=tmp_path,
    )
    assert swept.returncode == 0, swept.stderr
    out = tmp_path / "reports"
    reported = run_study("report", "smoke", "--tracking-uri", uri, "--out", str(out), cwd=tmp_path)
    assert reported.returncode == 0, reported.stderr

    folder = out / "smoke"
    for name in (
        "report.md",
        "report.html",
        "table6_activation_error.csv",
        "activation_error.png",
        "table3_before_fine_tuning.csv",
        "runs.csv",
        "sweep.png",
        "confusion_matrix.png",
    ):
        assert (folder / name).is_file(), name
    html = (folder / "report.html").read_text()
    assert "data:image/png;base64," in html and 'src="activation_error.png"' not in html

    mlflow.set_tracking_uri(uri)
    runs = mlflow.search_runs(experiment_names=["smoke"])
    trials = runs[(runs["tags.run_type"] == "trial") & (runs["status"] == "FINISHED")]
    expected = trials.groupby("params.model.activation")["metrics.test_error_rate"].agg(
        lambda errors: (100 * errors.mean(), 100 * errors.std(ddof=1), len(errors))
    )
    table = pd.read_csv(folder / "table6_activation_error.csv").set_index("activation")
    assert set(expected.index) == {"elu", "relu"}
    assert list(table.index) == ["elu", "relu", "tanh", "sigmoid"]  # the paper's rows, always
    assert table.loc[["tanh", "sigmoid"], "n"].eq(0).all()  # not swept: no numbers invented
    assert table.loc[["tanh", "sigmoid"], "error_pct_mean"].isna().all()
    for activation, (mean, std, n) in expected.items():
        row = table.loc[activation]
        assert row["error_pct_mean"] == pytest.approx(mean, abs=1e-9)
        assert row["error_pct_std"] == pytest.approx(std, abs=1e-9)
        assert row["n"] == n == 3
    # the paired test against ELU is over the seeds both activations share
    elu = trials[trials["params.model.activation"] == "elu"].set_index("params.seed")
    relu = trials[trials["params.model.activation"] == "relu"].set_index("params.seed")
    difference = 100 * (relu["metrics.test_error_rate"] - elu["metrics.test_error_rate"])
    assert table.loc["relu", "difference_pct"] == pytest.approx(difference.mean(), abs=1e-9)
    assert not np.isnan(table.loc["elu", "error_pct_mean"])
    assert not np.isnan(table.loc["relu", "new_images_ci_low"])
    assert not np.isnan(table.loc["relu", "p_holm"])
    assert 0 <= table.loc["elu", "error_pct_ci_low"] <= table.loc["elu", "error_pct_ci_high"] <= 100

    # one test split for every seed, and no seed trains or validates on a test image
    splits = [
        pd.read_csv(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="split.csv"))
        for run_id in trials["run_id"]
    ]
    tests = [set(split.loc[split["split"] == "test", "file"]) for split in splits]
    assert tests[0] and all(test == tests[0] for test in tests)
    for split in splits:
        assert not set(split.loc[split["split"] != "test", "file"]) & tests[0]
    assert len({tuple(split.loc[split["split"] == "val", "file"]) for split in splits}) == 3

    # a second build gives the same files, byte for byte
    again = run_study(
        "report", "smoke", "--tracking-uri", uri, "--out", str(tmp_path / "again"), cwd=tmp_path
    )
    assert again.returncode == 0, again.stderr
    for path in sorted(folder.iterdir()):
        assert (tmp_path / "again" / "smoke" / path.name).read_bytes() == path.read_bytes(), (
            path.name
        )

    # the sweep's description names the report last built, once
    parent = runs[runs["tags.run_type"] == "sweep"].iloc[0]
    note = mlflow.MlflowClient(uri).get_run(parent["run_id"]).data.tags[NOTE_TAG]
    report = [part for part in note.split("\n\n") if part.startswith(REPORT_NOTE)]
    assert report == [
        f"{REPORT_NOTE}{tmp_path / 'again' / 'smoke' / 'report.html'} (and report.md beside it), "
        f"also in this run's artifacts under report/; `study report smoke --sweep "
        f"{parent['run_id']}` rebuilds it."
    ]
