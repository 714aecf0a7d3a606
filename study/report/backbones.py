"""The backbones a question's seeds ran on: what a comparison over seeds covers (one backbone,
a random one per seed, or a few draws shared by several seeds), the draws' share of the
variance, and the draw x setting interaction."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from study.report import stats
from study.tracking.outcome import column

FEWEST_DRAWS = 5  # below this many random backbones, a claim stays with these backbones
BACKBONE_COLUMNS = [
    *("effect", "answers", "weights_source", "backbones", "seeds", "settings"),
    *("f_statistic", "df_effect", "df_residual", "p_value"),
    *("between_variance", "within_variance", "share", "share_low", "share_high", "note"),
]


@dataclass(frozen=True)
class BackboneScope:
    """Which backbones the seeds ran on, and so what a comparison over seeds covers."""

    answers: str  # "this backbone", "another random backbone" or "these D backbones"
    draws: pd.Series  # each run's backbone label, by run index
    count: int
    source: str

    @property
    def shared_draws(self) -> bool:
        return self.answers.startswith("these")


def backbone_scope(runs: pd.DataFrame) -> BackboneScope:
    """One backbone for every seed ("this backbone": ImageNet, a weights file, a pinned random
    init); a random backbone per seed ("another random backbone"); or D random draws shared by
    several seeds each ("these D backbones")."""
    draws = column(runs, "tags.weights").fillna("unknown").astype(str)
    source = " ".join(sorted(set(column(runs, "tags.weights_source").dropna().astype(str))))
    count = draws.nunique()
    seeds = runs["seed"].nunique()
    if count <= 1:
        answers = "this backbone"
    elif count >= seeds:
        answers = "another random backbone"
    else:
        answers = f"these {count} backbones"
    return BackboneScope(answers, draws, count, source)


def backbone_rows(every: pd.DataFrame, values: pd.DataFrame, scope: BackboneScope) -> pd.DataFrame:
    """Two rows: the draws' share of the variance of a seed's mean metric over the settings
    (one-way random-effects ANOVA, seeds nested in draws), and the draw x setting interaction:
    how much the settings' differences change from backbone to backbone (estimable only when
    several seeds share a draw)."""
    complete = values.dropna(axis=0, how="any")
    seed_draws = pd.DataFrame({"seed": every["seed"], "draw": scope.draws.loc[every.index]})
    nested = bool(seed_draws.groupby("seed")["draw"].nunique().le(1).all())
    draw_of_seed = seed_draws.drop_duplicates("seed").set_index("seed")["draw"]
    draws = draw_of_seed.reindex(complete.index)
    base = {
        "answers": scope.answers,
        "weights_source": scope.source,
        "backbones": scope.count,
        "seeds": len(complete),
        "settings": complete.shape[1],
    }
    main = stats.variance_share(
        complete.mean(axis=1).to_numpy() if nested else [], draws.to_numpy() if nested else []
    )
    rows = [
        base
        | {"effect": "backbone draw"}
        | _share_columns(main)
        | {"note": "" if nested else "some seed ran on two backbones: not nested, no test"}
    ]
    interaction = draw_interaction(complete, draws) if scope.shared_draws and nested else None
    note = {
        "this backbone": "one backbone for every seed: no draw x setting interaction to estimate",
        "another random backbone": "one seed per backbone: the draw x setting interaction is "
        "part of the per-seed differences the tests use",
    }.get(scope.answers, "")
    rows.append(
        base
        | {"effect": "backbone draw x setting"}
        | (_share_columns(interaction) if interaction else {})
        | {"note": note}
    )
    return pd.DataFrame(rows, columns=BACKBONE_COLUMNS)


def _share_columns(found: stats.VarianceShare) -> dict[str, float]:
    return {
        "f_statistic": found.f_statistic,
        "df_effect": found.df_groups,
        "df_residual": found.df_residual,
        "p_value": found.p_value,
        "between_variance": found.between,
        "within_variance": found.within,
        "share": found.share,
        "share_low": found.share_low,
        "share_high": found.share_high,
    }


def draw_interaction(table: pd.DataFrame, draws: pd.Series) -> stats.VarianceShare | None:
    """The draw x setting interaction of a (seed x setting) table with seeds nested in draws:
    after each seed's mean is removed, the settings' profile within each draw against the
    profile over all draws (mean square on (k - 1)(D - 1) df) and the seeds' scatter around
    their draw's profile (the residual, (k - 1)(S - D) df). F tests the interaction; its
    component (MS_int - MS_res) / (seeds per draw) and its share of the two, with the F-based
    interval (`stats.share_of_mean_squares`). None with fewer than two draws or no seed scatter."""
    labels = draws.to_numpy()
    names, group, counts = np.unique(labels, return_inverse=True, return_counts=True)
    seeds, settings = table.shape
    if len(names) < 2 or seeds <= len(names) or settings < 2:
        return None
    centred = table.to_numpy() - table.to_numpy().mean(axis=1, keepdims=True)
    profile = centred.mean(axis=0)
    by_draw = np.stack([centred[group == g].mean(axis=0) for g in range(len(names))])
    df_int = (settings - 1) * (len(names) - 1)
    df_res = (settings - 1) * (seeds - len(names))
    ms_int = float((counts[:, None] * (by_draw - profile) ** 2).sum()) / df_int
    ms_res = float(((centred - by_draw[group]) ** 2).sum()) / df_res
    if not ms_res > 0:
        return None
    n0 = (seeds - (counts**2).sum() / seeds) / (len(names) - 1)
    return stats.share_of_mean_squares(len(names), seeds, ms_int, ms_res, df_int, df_res, n0)
