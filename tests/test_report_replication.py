"""One study over several data sets: the random-effects pool of the declared comparisons (against
statsmodels and by hand), its wording, the data sets' configs, and the replication report."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.meta_analysis import combine_effects

from study import cli
from study import config as study_config
from study.errors import ConfigError
from study.report import ReportError
from study.report.build import build_replication_report
from study.report.replication import check_same_question, meta_analysis
from study.report.sections.replication import agreement
from study.tracking.store import Store
from study.tuning.replicate import data_set_configs
from study.tuning.summary import SweepSummary
from study.tuning.sweep import Sweep

from .conftest import REPO, run_study
from .test_report_build import populate
from .test_report_tables import activation_sweep

SMOKE = REPO / "search_spaces" / "smoke.yaml"


def family(rows: list[tuple]) -> pd.DataFrame:
    """A `family` table from (setting, against, difference, std, pairs, grade) rows, with the
    t interval over seeds as the report computes it."""
    frame = pd.DataFrame(
        rows, columns=["setting", "against", "difference_pct", "difference_std", "pairs", "grade"]
    )
    half = (
        scipy_stats.t.ppf(0.975, frame["pairs"] - 1)
        * frame["difference_std"]
        / np.sqrt(frame["pairs"])
    )
    frame["difference_ci_low"] = frame["difference_pct"] - half
    frame["difference_ci_high"] = frame["difference_pct"] + half
    frame["p_holm"] = 0.5
    return frame


# Three data sets: tanh - elu of 1.0, 2.5 and -0.5 points, standard errors 0.5, 0.707 and 0.6.
THREE = {
    "neu": family([("tanh", "elu", 1.0, 0.5 * math.sqrt(20), 20, "detectable")]),
    "elpv": family([("tanh", "elu", 2.5, math.sqrt(0.5) * math.sqrt(20), 20, "none")]),
    "gc10": family([("tanh", "elu", -0.5, 0.6 * math.sqrt(20), 20, "none")]),
}


def pooled(table: pd.DataFrame) -> pd.Series:
    return table[table["role"] == "pooled"].iloc[0]


def test_dersimonian_laird_tau2_and_i2_by_hand():
    y = np.array([1.0, 2.5, -0.5])
    v = np.array([0.25, 0.5, 0.36])
    w = 1 / v
    mean_fixed = (w * y).sum() / w.sum()
    q = (w * (y - mean_fixed) ** 2).sum()
    c = w.sum() - (w**2).sum() / w.sum()
    tau2 = max(0.0, (q - 2) / c)
    i2 = max(0.0, (q - 2) / q)
    w_star = 1 / (v + tau2)
    estimate = (w_star * y).sum() / w_star.sum()
    se = math.sqrt(1 / w_star.sum())

    found = pooled(meta_analysis(THREE))
    assert found["tau2"] == pytest.approx(tau2, rel=1e-9)
    assert found["i2"] == pytest.approx(i2, rel=1e-9)
    assert found["q"] == pytest.approx(q, rel=1e-9)
    assert found["estimate"] == pytest.approx(estimate, rel=1e-9)
    assert found["se"] == pytest.approx(se, rel=1e-9)
    assert found["ci_low"] == pytest.approx(estimate - 1.959964 * se, rel=1e-6)
    # a new data set: t with k - 2 = 1 df over tau2 + se^2
    half = scipy_stats.t.ppf(0.975, 1) * math.sqrt(tau2 + se**2)
    assert found["prediction_low"] == pytest.approx(estimate - half, rel=1e-9)
    assert found["prediction_high"] == pytest.approx(estimate + half, rel=1e-9)
    assert found["k"] == 3 and found["method"] == "DerSimonian-Laird"


def test_tau2_below_zero_is_truncated_to_the_fixed_effect_pool():
    """Q = 0.02 < k - 1: DerSimonian-Laird's tau2 is 0 (statsmodels would give -0.99), I2 0,
    and the pool is the inverse-variance mean."""
    three = {
        name: family([("tanh", "elu", value, math.sqrt(20), 20, "none")])
        for name, value in (("neu", 1.0), ("elpv", 1.1), ("gc10", 0.9))
    }
    found = pooled(meta_analysis(three))
    assert found["tau2"] == 0 and found["i2"] == 0
    assert found["q"] == pytest.approx(0.02)
    assert found["estimate"] == pytest.approx(1.0)
    assert found["se"] == pytest.approx(math.sqrt(1 / 3))


@pytest.mark.parametrize("method", ["dl", "pm"])
def test_the_pool_is_statsmodels_combine_effects(method):
    table = meta_analysis(THREE, method=method)
    expected = combine_effects(
        np.array([1.0, 2.5, -0.5]), np.array([0.25, 0.5, 0.36]), method_re=method
    )
    frame = expected.summary_frame()
    random = frame.loc["random effect"]
    found = pooled(table)
    assert found["estimate"] == pytest.approx(random["eff"], rel=1e-9)
    assert found["se"] == pytest.approx(random["sd_eff"], rel=1e-9)
    assert (found["ci_low"], found["ci_high"]) == pytest.approx(
        (random["ci_low"], random["ci_upp"]), rel=1e-9
    )
    assert found["tau2"] == pytest.approx(expected.tau2, rel=1e-9)
    assert found["i2"] == pytest.approx(expected.i2, rel=1e-9)
    sets = table[table["role"] == "data set"]
    assert list(sets["data_set"]) == ["neu", "elpv", "gc10"]
    assert sets["weight"].to_numpy() == pytest.approx(frame["w_re"].iloc[:3].to_numpy())
    assert sets["se"].to_numpy() == pytest.approx([0.5, math.sqrt(0.5), 0.6])


def test_two_data_sets_pool_without_a_prediction_interval():
    found = pooled(meta_analysis({name: THREE[name] for name in ("neu", "elpv")}))
    assert found["k"] == 2 and not math.isnan(found["tau2"])
    assert math.isnan(found["prediction_low"]) and math.isnan(found["prediction_high"])
    assert "no prediction interval" in found["note"]


def test_a_comparison_made_the_other_way_round_is_turned_round():
    """Family "best" with another best on the second data set: elu - relu there."""
    table = meta_analysis(
        {
            "neu": family([("relu", "elu", 2.0, 1.0, 4, "none")]),
            "elpv": family([("elu", "relu", 1.0, 1.0, 4, "none")]),
        }
    )
    assert set(table["comparison"]) == {"relu vs elu"}
    sets = table[table["role"] == "data set"].set_index("data_set")
    assert sets.loc["elpv", "estimate"] == pytest.approx(-1.0)
    assert sets.loc["elpv", "ci_low"] < -1.0 < sets.loc["elpv", "ci_high"]
    assert "turned round" in sets.loc["elpv", "note"]
    assert pooled(table)["same_sign"] == 1


def test_a_data_set_without_a_standard_error_is_left_out_of_the_pool():
    table = meta_analysis(
        {
            "neu": family([("relu", "elu", 2.0, 1.0, 4, "none")]),
            "elpv": family([("relu", "elu", 1.0, 0.0, 4, "none")]),
        }
    )
    assert "left out of the pool" in table.loc[1, "note"]
    found = pooled(table)
    assert found["k"] == 1 and math.isnan(found["estimate"]) and math.isnan(found["tau2"])


def test_sign_consistency_in_words():
    three = {
        "neu": family([("tanh", "elu", 1.0, 2.0, 20, "detectable")]),
        "elpv": family([("tanh", "elu", 2.5, 3.0, 20, "none")]),
        "gc10": family([("tanh", "elu", -0.5, 2.0, 20, "none")]),
    }
    text = agreement(pooled(meta_analysis(three)))
    assert text.startswith("tanh vs elu: elu beats tanh on 2 of 3 data sets, detectably on 1.")
    assert "prediction" in text


def test_different_questions_are_refused_with_both_names():
    asked = {"compare": "activation", "family": "reference", "reference": "elu"}
    first = pd.DataFrame([asked | {"metric": "balanced_error_rate", "alpha": 0.05}])
    second = pd.DataFrame([asked | {"metric": "error_rate", "alpha": 0.05}])
    check_same_question({"a": first, "b": first.copy()})
    with pytest.raises(ReportError, match="'a' and 'b' declared different questions"):
        check_same_question({"a": first, "b": second})


# The data sets' configs


def test_each_data_set_is_the_study_on_its_root_as_its_own_experiment(tmp_path):
    study = study_config.load(SMOKE)
    configs = data_set_configs(study, [str(tmp_path / "neu"), str(tmp_path / "elpv") + "/"])
    assert [c.name for c in configs] == ["smoke-neu", "smoke-elpv"]
    assert configs[1].data.root == str(tmp_path / "elpv") + "/"
    assert all(c.question == study.question and not c.replicate for c in configs)


def test_the_replicate_list_carries_each_data_set_s_own_settings(tmp_path):
    yaml = tmp_path / "study.yaml"
    yaml.write_text(
        SMOKE.read_text() + "replicate:\n"
        "  - {root: null}\n"
        "  - root: /data/elpv\n"
        "    name: smoke-elpv\n"
        "    set: {data.labels: labels.csv, 'data.label_columns': {file: 0, class: 1}}\n"
    )
    study = study_config.load(yaml)
    first, second = data_set_configs(study, [])
    assert (first.name, first.data.root) == ("smoke-sample", None)
    assert (second.name, second.data.labels) == ("smoke-elpv", "labels.csv")
    assert second.data.label_columns == {"file": 0, "class": 1}
    assert "replicate" not in study.to_yaml()  # each data set's sweep is an ordinary one
    assert [c.name for c in data_set_configs(study, ["/x/gc10"])] == ["smoke-gc10"]


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([], "names no data sets"),
        (["{root: /a/neu}", "{root: /b/neu}"], "both be experiment 'smoke-neu'"),
        (["{root: /a, set: {question.metric: macro_f1}}"], "the study's one question"),
        (["{root: /a, set: {data.root: /b}}"], "entry's own `root:`"),
        (["{root: /a, set: {data.image_size: 8}}"], "replicate data set /a: data.image_size"),
    ],
)
def test_bad_replicate_lists_name_the_problem(tmp_path, entries, message):
    yaml = tmp_path / "study.yaml"
    body = "".join(f"  - {entry}\n" for entry in entries)
    yaml.write_text(SMOKE.read_text() + ("replicate:\n" + body if entries else ""))
    with pytest.raises(ConfigError, match=message):
        data_set_configs(study_config.load(yaml), [])


# The report


@pytest.fixture(scope="module")
def two_data_sets(tmp_path_factory) -> Store:
    """The activation study logged as two experiments, the second with other errors."""
    folder = tmp_path_factory.mktemp("replication")
    store = Store(f"sqlite:///{folder}/m.db")
    populate(store, "act-neu", activation_sweep(seeds=(0, 1, 2, 3)))
    shifted = activation_sweep(seeds=(0, 1, 2, 3))
    for spec in shifted:
        spec["metrics"]["test_error_rate"] += 0.01 * spec["params"]["seed"]
    populate(store, "act-elpv", shifted)
    return store


def test_the_replication_report_pools_the_data_sets(two_data_sets, tmp_path):
    folder = build_replication_report(["act-neu", "act-elpv"], two_data_sets, tmp_path)
    assert folder == tmp_path / "act-neu+act-elpv"
    table = pd.read_csv(folder / "replication.csv")
    comparisons = table["comparison"].unique()
    assert len(comparisons) == 3  # every configuration against the best (the default question)
    for comparison in comparisons:
        rows = table[table["comparison"] == comparison]
        assert list(rows["data_set"]) == ["act-neu", "act-elpv", "pooled"]
        assert rows["tau2"].notna().sum() == rows["i2"].notna().sum() == 1
    for name in ("act-neu", "act-elpv"):
        for file in ("runs.csv", "comparisons.csv", "outcomes.csv.gz"):
            assert (folder / f"{name}_{file}").is_file()
    report = (folder / "report.md").read_text()
    assert "What two data sets can and cannot show" in report
    assert "forest_1.png" in report and (folder / "forest_1.png").is_file()
    first = {path.name: path.read_bytes() for path in folder.iterdir()}
    build_replication_report(["act-neu", "act-elpv"], two_data_sets, tmp_path)
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == first


def test_the_report_command_takes_several_experiments_and_refuses_other_questions(
    two_data_sets, tmp_path
):
    uri = two_data_sets.uri
    parent = populate(two_data_sets, "act-other", activation_sweep(seeds=(0, 1)))
    two_data_sets.log(
        parent,
        params={
            "question.compare": "activation",
            "question.family": "reference",
            "question.reference": "elu",
            "question.metric": "balanced_error_rate",
            "question.alpha": 0.05,
        },
    )
    out = tmp_path / "out"
    done = run_study(
        "report", "act-neu", "act-elpv", "--tracking-uri", uri, "--out", str(out), cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert (out / "act-neu+act-elpv" / "replication.csv").is_file()
    refused = run_study(
        "report",
        "act-neu",
        "act-other",
        "--tracking-uri",
        uri,
        "--out",
        str(tmp_path / "no"),
        cwd=tmp_path,
    )
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "declared different questions" in refused.stderr
    assert not (tmp_path / "no").exists()


def test_replicate_runs_each_data_set_s_sweep_then_reports(tmp_path, monkeypatch):
    swept = []

    def sweep(self, fresh=False, **options):
        swept.append((self.config.name, self.config.data.root, fresh))
        populate(self.store, self.config.name, activation_sweep(seeds=(0, 1, 2)))
        return SweepSummary("", "", pd.DataFrame())

    monkeypatch.setattr(Sweep, "run", sweep)
    out = tmp_path / "reports"
    code = cli.main(
        [
            "replicate",
            str(SMOKE),
            "--data",
            str(tmp_path / "neu"),
            "--data",
            str(tmp_path / "elpv"),
            "--tracking-uri",
            f"sqlite:///{tmp_path}/r.db",
            "--out",
            str(out),
            "--quiet",
        ]
    )
    assert code == 0
    assert swept == [
        ("smoke-neu", str(tmp_path / "neu"), False),
        ("smoke-elpv", str(tmp_path / "elpv"), False),
    ]
    assert (out / "smoke-neu+smoke-elpv" / "replication.csv").is_file()
