"""Pruning policies over a score table (Sorscher et al. 2022): keep-hard, keep-easy or random, balanced.

`select` keeps `keep_fraction` of the rows, per cluster or class when balanced (the paper found balance
essential), and says why each dropped row was dropped. Quotas use largest-remainder apportionment: every
group keeps floor or ceil of `keep_fraction * n_group` rows and the total is `round(keep_fraction * n)`.
Order inside a group is (score, doc_id), so ties are broken by doc_id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl

from curate._validation import check_columns, check_interval, check_option
from curate.errors import InputError

Policy = Literal["keep_hard", "keep_easy", "random"]
Balance = Literal["none", "class", "cluster"]
POLICIES: tuple[Policy, ...] = ("keep_hard", "keep_easy", "random")
BALANCES: tuple[Balance, ...] = ("none", "class", "cluster")
GROUP_COLUMN = {"class": "label", "cluster": "cluster_id"}
# drop_reason codes: what the policy considered the dropped row to be
DROP_REASON: dict[Policy, str] = {"keep_hard": "too_easy", "keep_easy": "too_hard", "random": "random_drop"}
NO_SCORE = "no_score"  # the score is null or NaN: never kept, never counted in a quota
# recommend_policy heuristics, calibrated by bench/pruning_scaling.py (Wikipedia topics, MLP probe):
ABUNDANT_RATIO = 2.0  # at least this many candidates per budgeted example counts as abundant
HARD_MIN_BUDGET = 1000  # below this many kept examples keep-easy won there even when data were abundant


def _quotas(sizes: pl.DataFrame, group: str, keep_fraction: float) -> pl.DataFrame:
    """Largest-remainder quotas: floor(f * n_g) each, the rest by largest remainder (ties: group key)."""
    exact = sizes["n"].to_numpy() * keep_fraction
    base = np.floor(exact + 1e-9).astype(np.int64)
    extra = math.floor(keep_fraction * int(sizes["n"].sum()) + 0.5) - int(base.sum())
    order = np.lexsort((np.arange(len(exact)), -(exact - base)))  # sizes arrive sorted by group key
    base[order[:extra]] += 1
    return sizes.select(group).with_columns(quota=pl.Series(base))


def select(
    scores: pl.DataFrame,
    *,
    keep_fraction: float,
    policy: Policy,
    balance: Balance = "cluster",
    score: str = "proto_dist",
    seed: int = 0,
) -> pl.DataFrame:
    """One row per doc_id (sorted): `kept` and `drop_reason` (too_easy | too_hard | random_drop | no_score).

    keep_hard keeps the largest `score`, keep_easy the smallest; balance "cluster" needs a cluster_id
    column, "class" a label column. Raises ConfigError on bad options, SchemaError on missing columns.
    """
    check_interval("keep_fraction", keep_fraction, 0, 1, caller="select", closed="right")
    check_option("policy", policy, POLICIES, caller="select")
    check_option("balance", balance, BALANCES, caller="select")
    required: dict[str, object] = {"doc_id": pl.String}
    if policy != "random":
        required[score] = float
    group = GROUP_COLUMN.get(balance)
    if group is not None:
        required[group] = None
    check_columns(scores, required, what="select() scores")
    if scores["doc_id"].n_unique() != scores.height:
        raise InputError(
            f"select() scores must hold each doc_id once; got {scores.height} rows for "
            f"{scores['doc_id'].n_unique()} doc_ids."
        )
    df = scores.select("doc_id", *([group] if group else [])).sort("doc_id")
    if group is None:
        group = "_all"
        df = df.with_columns(pl.lit(0).alias(group))
    if policy == "random":
        key = pl.Series(np.random.default_rng(seed).random(df.height))
        usable = pl.Series(np.ones(df.height, dtype=bool))
    else:
        values = scores.select("doc_id", pl.col(score).cast(pl.Float64)).sort("doc_id")[score]
        usable = values.is_not_null() & ~values.fill_null(0.0).is_nan()
        key = values if policy == "keep_easy" else -values
    df = df.with_columns(_key=key, _usable=usable)
    pool = df.filter("_usable").sort(group, "_key", "doc_id", nulls_last=True)
    sizes = pool.group_by(group).len("n").sort(group, nulls_last=True)
    pool = pool.with_columns(_rank=pl.int_range(pl.len()).over(group)).join(
        _quotas(sizes, group, keep_fraction), on=group, how="left", nulls_equal=True
    )
    kept = pool.filter(pl.col("_rank") < pl.col("quota")).select("doc_id", kept=pl.lit(True))
    return (
        df.join(kept, on="doc_id", how="left")
        .select(
            "doc_id",
            kept=pl.col("kept").fill_null(False),
            drop_reason=pl.when(pl.col("kept").is_not_null())
            .then(pl.lit(None, dtype=pl.String))
            .when(pl.col("_usable"))
            .then(pl.lit(DROP_REASON[policy]))
            .otherwise(pl.lit(NO_SCORE)),
        )
        .sort("doc_id")
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class PolicyAdvice:
    """Which policy to prune with, how much to keep, and on what basis (ratio heuristic or a sweep)."""

    policy: Policy
    keep_fraction: float
    data_to_budget: float
    basis: Literal["ratio", "sweep"]
    reason: str


def recommend_policy(
    n_available: int,
    budget: int,
    *,
    sweep: pl.DataFrame | None = None,
    metric: str = "accuracy",
    higher_is_better: bool = True,
) -> PolicyAdvice:
    """Keep-hard when data are abundant, keep-easy when scarce (Sorscher et al. 2022, pruning theory).

    `budget` = examples one run trains on. Without a sweep: keep_hard iff n_available / budget >=
    ABUNDANT_RATIO and budget >= HARD_MIN_BUDGET (a small kept set learns more from typical examples).
    With a sweep (columns policy, keep_fraction, `metric`, optional n_initial), the policy with the best
    mean `metric` at the nearest n_initial and keep fraction wins.
    """
    check_interval("n_available", n_available, 1, None, caller="recommend_policy")
    check_interval("budget", budget, 1, None, caller="recommend_policy")
    ratio = n_available / budget
    keep = min(1.0, budget / n_available)
    if sweep is None:
        abundant = ratio >= ABUNDANT_RATIO
        policy: Policy = "keep_hard" if abundant and budget >= HARD_MIN_BUDGET else "keep_easy"
        why = (
            f"{n_available} candidates for a budget of {budget} ({ratio:.2g}x) counts as "
            f"{'abundant' if abundant else 'scarce'} (threshold {ABUNDANT_RATIO:g}x)"
        )
        if abundant and budget < HARD_MIN_BUDGET:
            why += f", but a budget under {HARD_MIN_BUDGET} examples favours typical ones"
        return PolicyAdvice(
            policy=policy,
            keep_fraction=keep,
            data_to_budget=ratio,
            basis="ratio",
            reason=f"{why}: {policy.replace('_', '-')}.",
        )
    check_columns(sweep, {"policy": pl.String, "keep_fraction": float, metric: float}, what="sweep")
    rows = sweep.filter(pl.col("policy").is_in(POLICIES) & pl.col(metric).is_not_null())
    if rows.is_empty():
        raise InputError(f"sweep holds no rows with a policy in {POLICIES} and a {metric} value.")
    if "n_initial" in rows.columns:
        log_gap = (pl.col("n_initial").cast(pl.Float64).log() - math.log(n_available)).abs()
        rows = rows.filter(log_gap == rows.select(log_gap.min()).item())
    gap = (pl.col("keep_fraction") - keep).abs()
    rows = rows.filter(gap == rows.select(gap.min()).item())
    means = (
        rows.group_by("policy")
        .agg(pl.col(metric).mean())
        .sort(metric, "policy", descending=[higher_is_better, False])
    )
    best = means.row(0, named=True)
    at = rows["keep_fraction"][0]
    table = ", ".join(f"{p} {m:.4g}" for p, m in means.iter_rows())
    return PolicyAdvice(
        policy=best["policy"],
        keep_fraction=keep,
        data_to_budget=ratio,
        basis="sweep",
        reason=f"sweep at keep_fraction {at:g}: mean {metric} {table}; best {best['policy']}.",
    )
