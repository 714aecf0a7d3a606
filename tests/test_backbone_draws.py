"""Random backbones vary with the seed: by default each seed trains on its own random backbone,
or on draw s mod `model.backbone_draws`, each draw with its own feature cache, and the report
says which backbones the seeds ran on, what its comparisons cover, and how much of the
run-to-run variance the draw accounts for."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from mlflow import MlflowClient
from statsmodels.stats.anova import anova_lm

from study import config
from study.caches.inputs import CacheInputs
from study.errors import ConfigError
from study.model.nasnet import resolve_weights
from study.report import stats
from study.runs import session, tracked
from study.tracking.store import Store

from .test_report_tables import activation_sweep, report_text


def study_config(**model) -> config.StudyConfig:
    return config.validate(
        {
            "name": "draws",
            "data": {"image_size": 32},
            "model": {"weights": "none", **model},
            "frozen": {"epochs": 1, "batch_size": 16},
            "fine_tune": {"epochs": 0},
            "features": {"views": 1},
            "tracking": {"system_metrics": False},
            "seeds": [0, 1, 2],
        }
    )


def test_the_seed_picks_the_draw_unless_init_seed_pins_one_backbone():
    own = study_config().model  # the default: each seed its own backbone
    assert [own.backbone_draw(seed) for seed in (0, 3, 4, 9)] == [0, 3, 4, 9]
    drawn = study_config(backbone_draws=4).model
    assert [drawn.backbone_draw(seed) for seed in (0, 3, 4, 9)] == [0, 3, 0, 1]
    assert [drawn.backbone_init_seed(seed) for seed in (0, 3, 4, 9)] == [0, 3, 0, 1]
    pinned = study_config(init_seed=7).model
    assert pinned.backbone_draw(9) is None and pinned.backbone_init_seed(9) == 7
    imagenet = config.validate({"name": "i"}).model
    assert imagenet.init_seed is None and imagenet.backbone_draw(5) is None

    prepared = session.Prepared(None, resolve_weights("none", 0), None)
    seed_five = study_config(backbone_draws=4).with_values({"seed": 5})
    assert prepared.weights_for(seed_five) == resolve_weights("none", 1)
    pinned_five = study_config(init_seed=0).with_values({"seed": 5})
    assert prepared.weights_for(pinned_five) == prepared.weights

    with pytest.raises(ConfigError, match="model.backbone_draws"):
        study_config(backbone_draws=0)
    swept = {"model.backbone_draws": {"type": "choice", "values": [1, 2]}}
    with pytest.raises(ConfigError, match="cannot vary"):
        config.validate({"name": "s", "hyperparameters": swept})


def test_a_run_trains_and_logs_its_seeds_backbone_draw_on_that_draws_cache(tmp_path):
    study = study_config(backbone_draws=2)
    store = Store(f"sqlite:///{tmp_path}/m.db")
    state = tmp_path / "state"
    prepared = session.prepare(study, store, state, progress=False)  # the first seed's draw, 0
    assert prepared.weights == resolve_weights("none", 0)
    experiment = store.experiment(study.name)
    seed_one = study.with_values({"seed": 1})
    tracked.execute(seed_one, prepared, store, experiment, "s1")

    (run,) = MlflowClient(store.uri).search_runs([experiment])
    assert run.data.tags["backbone_draw"] == "1"
    assert run.data.tags["weights"] == resolve_weights("none", 1).label
    # Draw 1's cache is the one `model.init_seed: 1` pins, and it holds other features.
    one = CacheInputs.for_features(study).key(prepared.dataset, resolve_weights("none", 1))
    assert run.data.tags["feature_cache"] == one
    assert prepared.features_for(study.with_values({"seed": 2})) is prepared.features
    caches = sorted((state / "features").glob("*.npz"))
    assert [path.stem for path in caches] == sorted({prepared.features.key, one})
    assert not np.allclose(prepared.features_for(seed_one).clean, prepared.features.clean)


def variance_runs(draws: int, error_by_seed) -> list[dict]:
    """An activation sweep over 8 seeds whose seed s ran on draw s mod `draws`, with the
    test error rate of seed s set to error_by_seed(s) plus the activation's offset."""
    specs = activation_sweep(seeds=tuple(range(8)))
    for spec in specs:
        seed = int(spec["tags"]["seed"])
        draw = seed % draws
        spec["tags"] |= {"weights": resolve_weights("none", draw).label, "weights_source": "none"}
        offset = 0.01 * len(spec["params"]["model.activation"])
        spec["metrics"]["test_error_rate"] = error_by_seed(seed) + offset
    return specs


def backbone_rows(specs: list[dict]) -> tuple[str, pd.DataFrame]:
    text, analysis = report_text(specs)
    return text, analysis.tables["backbone"].set_index("effect")


def test_the_report_gives_a_known_draw_effect_most_of_the_variance():
    noise = np.random.default_rng(3).normal(0, 0.002, 8)
    text, rows = backbone_rows(variance_runs(2, lambda s: 0.05 + 0.03 * (s % 2) + noise[s]))
    row = rows.loc["backbone draw"]
    assert row["backbones"] == 2 and row["seeds"] == 8
    assert row["share"] > 0.9 and row["p_value"] < 0.001
    assert row["share_low"] <= row["share"] <= row["share_high"]
    assert "holds for these 2 backbones only" in text
    assert f"The draw accounts for {row['share']:.0%} (95% interval" in text


def test_draws_with_the_same_seed_values_account_for_none_of_the_variance():
    # Seeds 2i and 2i + 1 score alike and fall on draws 0 and 1: the draws' means are equal.
    noise = np.random.default_rng(3).normal(0, 0.01, 4)
    _, rows = backbone_rows(variance_runs(2, lambda s: 0.05 + noise[s // 2]))
    row = rows.loc["backbone draw"]
    assert row["backbones"] == 2 and row["seeds"] == 8
    assert row["between_variance"] == 0 and row["share"] == 0 and row["share_low"] == 0
    assert row["f_statistic"] == pytest.approx(0, abs=1e-9)
    assert row["p_value"] == pytest.approx(1)


def test_one_backbone_or_one_seed_per_draw_says_what_the_answer_covers():
    text, rows = backbone_rows(variance_runs(1, lambda s: 0.05 + 0.001 * s))
    assert rows.loc["backbone draw", "backbones"] == 1
    assert np.isnan(rows.loc["backbone draw", "share"])
    assert "It holds for this one random backbone" in text
    text, rows = backbone_rows(variance_runs(8, lambda s: 0.05 + 0.001 * s))
    assert np.isnan(rows.loc["backbone draw", "share"])
    assert "one seed per backbone" in rows.loc["backbone draw x setting", "note"]
    assert "it holds for another random backbone and new seeds" in text


def test_variance_share_is_the_one_way_random_effects_anova():
    values = np.array([5.0, 6.0, 5.5, 8.0, 9.0, 7.5, 8.5, 4.0, 4.5])
    groups = np.array([0, 0, 0, 1, 1, 1, 1, 2, 2])  # unbalanced
    found = stats.variance_share(values, groups)
    table = anova_lm(smf.ols("y ~ C(g)", pd.DataFrame({"y": values, "g": groups})).fit())
    assert found.f_statistic == pytest.approx(table["F"].iloc[0])
    assert found.p_value == pytest.approx(table["PR(>F)"].iloc[0])
    assert (found.df_groups, found.df_residual) == (2, 6)
    within = table["mean_sq"].iloc[1]
    n0 = (9 - (3**2 + 4**2 + 2**2) / 9) / 2
    between = (table["mean_sq"].iloc[0] - within) / n0
    assert (found.within, found.between) == pytest.approx((within, between))
    assert found.share == pytest.approx(between / (between + within))
    assert np.isnan(stats.variance_share([1.0, 2.0], [0, 1]).share)  # no group of two


def test_seeds_on_two_backbones_leave_the_draw_share_out():
    specs = variance_runs(2, lambda s: 0.05 + 0.001 * s)
    specs[0]["tags"]["weights"] = resolve_weights("none", 5).label  # seed 0, elu, another draw
    _, rows = backbone_rows(specs)
    row = rows.loc["backbone draw"]
    assert row["backbones"] == 3 and np.isnan(row["share"]) and "not nested" in row["note"]
