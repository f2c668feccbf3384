"""Selection policies (keep-hard, keep-easy, random; balanced per cluster or class) and the policy advice."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from polars.testing import assert_frame_equal

from curate.errors import ConfigError, InputError, SchemaError
from pruning.policies import ABUNDANT_RATIO, HARD_MIN_BUDGET, recommend_policy, select


def score_frame(n: int, *, groups: int = 4, seed: int = 0) -> pl.DataFrame:
    """n rows with doc_id, cluster_id, label and a proto_dist in [0, 1)."""
    rng = np.random.default_rng(seed)
    return pl.DataFrame(
        {
            "doc_id": [f"d{i:04d}" for i in rng.permutation(n)],
            "cluster_id": rng.integers(0, groups, n).astype(np.int32),
            "label": rng.choice(["a", "b", "c"], n),
            "proto_dist": rng.random(n),
        }
    )


@given(
    n=st.integers(1, 120),
    groups=st.integers(1, 7),
    keep_fraction=st.floats(0.01, 1.0),
    policy=st.sampled_from(["keep_hard", "keep_easy", "random"]),
    balance=st.sampled_from(["class", "cluster"]),
    seed=st.integers(0, 3),
)
def test_balanced_selection_keeps_the_fraction_per_group_within_one_example(
    n: int, groups: int, keep_fraction: float, policy: str, balance: str, seed: int
) -> None:
    """Every cluster/class keeps floor or ceil of keep_fraction * its size; the total is round(f * n)."""
    scores = score_frame(n, groups=groups, seed=seed)
    out = select(scores, keep_fraction=keep_fraction, policy=policy, balance=balance, seed=seed)  # type: ignore[arg-type]
    column = "cluster_id" if balance == "cluster" else "label"
    per_group = out.join(scores, on="doc_id").group_by(column).agg(kept=pl.col("kept").sum(), n=pl.len())
    for kept, size in per_group.select("kept", "n").iter_rows():
        assert abs(kept - keep_fraction * size) < 1.0
    assert out["kept"].sum() == math.floor(keep_fraction * n + 0.5)
    assert out.height == n
    assert out["doc_id"].to_list() == sorted(scores["doc_id"].to_list())


@pytest.mark.parametrize(("policy", "reverse"), [("keep_hard", True), ("keep_easy", False)])
def test_keep_hard_and_easy_keep_the_extreme_scores_of_each_cluster(policy: str, reverse: bool) -> None:
    """Per cluster, the kept rows are the top (hard) or bottom (easy) quota by score, found by sorting."""
    scores = score_frame(97, groups=3)
    out = select(scores, keep_fraction=0.3, policy=policy, balance="cluster")  # type: ignore[arg-type]
    kept = set(out.filter("kept")["doc_id"])
    for _, group in scores.group_by("cluster_id"):
        quota = len(kept & set(group["doc_id"]))
        assert quota in (math.floor(0.3 * group.height), math.ceil(0.3 * group.height))
        ranked = sorted(group.iter_rows(named=True), key=lambda r: r["proto_dist"], reverse=reverse)
        assert {r["doc_id"] for r in ranked[:quota]} <= kept


def test_ties_are_broken_by_doc_id() -> None:
    """With equal scores, keep_hard keeps the smallest doc_ids."""
    scores = pl.DataFrame({"doc_id": ["e", "b", "d", "a", "c"], "proto_dist": [0.5] * 5})
    out = select(scores, keep_fraction=0.4, policy="keep_hard", balance="none")
    assert out.filter("kept")["doc_id"].to_list() == ["a", "b"]


def test_unbalanced_keep_hard_is_a_global_top_k() -> None:
    """balance="none" keeps the round(f * n) largest scores regardless of cluster."""
    scores = score_frame(50)
    out = select(scores, keep_fraction=0.2, policy="keep_hard", balance="none")
    top = scores.sort("proto_dist", descending=True).head(10)["doc_id"].sort()
    assert out.filter("kept")["doc_id"].to_list() == top.to_list()


def test_random_policy_is_seeded_and_ignores_row_order() -> None:
    """Same seed, same selection (even with shuffled input rows); another seed, another selection."""
    scores = score_frame(200)
    a = select(scores, keep_fraction=0.5, policy="random", balance="none", seed=1)
    b = select(
        scores.sample(fraction=1.0, shuffle=True, seed=9),
        keep_fraction=0.5,
        policy="random",
        balance="none",
        seed=1,
    )
    c = select(scores, keep_fraction=0.5, policy="random", balance="none", seed=2)
    assert_frame_equal(a, b)
    assert not a["kept"].equals(c["kept"])


@pytest.mark.parametrize(
    ("policy", "reason"), [("keep_hard", "too_easy"), ("keep_easy", "too_hard"), ("random", "random_drop")]
)
def test_drop_reasons_and_unscored_rows(policy: str, reason: str) -> None:
    """Dropped rows carry the policy's reason; a null or NaN score is never kept (no_score) unless random."""
    scores = score_frame(20).with_columns(
        proto_dist=pl.when(pl.col("doc_id").is_in(["d0003", "d0004"]))
        .then(pl.lit(None) if policy != "keep_easy" else pl.lit(float("nan")))
        .otherwise("proto_dist")
    )
    out = select(scores, keep_fraction=0.5, policy=policy, balance="none")  # type: ignore[arg-type]
    reasons = dict(out.group_by("drop_reason").len().iter_rows())
    if policy == "random":
        assert reasons == {None: 10, "random_drop": 10}
    else:
        assert reasons == {None: 9, reason: 9, "no_score": 2}
        assert not out.filter(pl.col("doc_id").is_in(["d0003", "d0004"]))["kept"].any()


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        (
            {"keep_fraction": 0.0},
            ConfigError,
            r"'keep_fraction' parameter of select\(\) must be a number in \(0, 1\]",
        ),
        ({"keep_fraction": 1.5}, ConfigError, r"Got 1.5 instead"),
        ({"policy": "hardest"}, ConfigError, r"'policy' parameter of select\(\) must be one of"),
        ({"balance": "source"}, ConfigError, r"'balance' parameter of select\(\) must be one of"),
        ({"score": "difficulty"}, SchemaError, r"select\(\) scores lacks column\(s\) difficulty"),
        ({"balance": "class", "drop": "label"}, SchemaError, r"lacks column\(s\) label"),
        ({"duplicate": True}, InputError, r"each doc_id once; got 6 rows for 5 doc_ids"),
    ],
)
def test_select_rejects_bad_params(kwargs: dict[str, object], exc: type, match: str) -> None:
    """select() names the bad parameter or column, what is allowed and what came."""
    scores = score_frame(5)
    if kwargs.pop("duplicate", False):
        scores = pl.concat([scores, scores.head(1)])
    drop = kwargs.pop("drop", None)
    if drop:
        scores = scores.drop(str(drop))
    options: dict[str, object] = {"keep_fraction": 0.5, "policy": "keep_hard", **kwargs}
    with pytest.raises(exc, match=match):
        select(scores, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("n", "budget", "policy", "keep"),
    [
        (10_000, 1_000, "keep_hard", 0.1),  # abundant and a large budget
        (1_000, 800, "keep_easy", 0.8),  # scarce: little to prune
        (2_000, 200, "keep_easy", 0.1),  # abundant, but a small kept set favours typical examples
        (500, 1_000, "keep_easy", 1.0),  # fewer candidates than the budget: keep everything
    ],
)
def test_recommend_policy_from_the_data_to_budget_ratio(
    n: int, budget: int, policy: str, keep: float
) -> None:
    """keep-hard iff >= ABUNDANT_RATIO candidates per budgeted example and budget >= HARD_MIN_BUDGET."""
    advice = recommend_policy(n, budget)
    assert (advice.policy, advice.keep_fraction, advice.basis) == (policy, pytest.approx(keep), "ratio")
    hard = advice.data_to_budget >= ABUNDANT_RATIO and budget >= HARD_MIN_BUDGET
    assert hard == (policy == "keep_hard")


def test_recommend_policy_follows_a_sweep_at_the_nearest_size_and_fraction() -> None:
    """With a sweep, the best mean accuracy at the nearest n_initial and keep_fraction decides."""
    sweep = pl.DataFrame(
        {
            "n_initial": [1000, 1000, 1000, 1000, 100_000, 100_000],
            "policy": ["keep_hard", "keep_easy", "keep_easy", "keep_hard", "keep_hard", "keep_easy"],
            "keep_fraction": [0.5, 0.5, 0.5, 0.9, 0.5, 0.5],
            "accuracy": [0.60, 0.70, 0.66, 0.99, 0.80, 0.75],
        }
    )
    small = recommend_policy(1200, 600, sweep=sweep)
    large = recommend_policy(90_000, 45_000, sweep=sweep)
    assert (small.policy, small.basis) == ("keep_easy", "sweep")
    assert large.policy == "keep_hard"
    assert "keep_easy 0.68" in small.reason
    with pytest.raises(SchemaError, match=r"sweep lacks column\(s\) accuracy"):
        recommend_policy(10, 5, sweep=sweep.drop("accuracy"))
