"""Checks of QQT decisions against measured runs: means and standard errors, regret among the pools measured
at a budget, buckets that measurably harm; all against numbers worked out by hand."""

from __future__ import annotations

import math

import polars as pl
import pytest

from scaling.qqt import fit_qqt
from scaling.qqt_check import decision_regret, harmful_buckets, observed_means
from tests.scaling.test_qqt import EPOCHS, SIZE, TRUTH, synthetic_curves


def runs(rows: dict[tuple[str, int], list[float]]) -> pl.DataFrame:
    """Curves with one row per (pool, samples_seen, seed)."""
    return pl.DataFrame(
        [
            {"pool": p, "seed": s, "samples_seen": n, "error": e}
            for (p, n), errors in rows.items()
            for s, e in enumerate(errors)
        ]
    )


def test_observed_means_are_mean_and_standard_error() -> None:
    """Mean over seeds and sd / sqrt(seeds), by hand."""
    means = observed_means(runs({("a", 10): [0.2, 0.4, 0.3]})).row(0, named=True)
    assert means["observed"] == pytest.approx(0.3)
    assert means["se"] == pytest.approx(0.1 / math.sqrt(3)) and means["seeds"] == 3


def test_regret_is_the_chosen_pools_excess_over_the_best_measured() -> None:
    """Where buckets and a union were measured together, the pool of least predicted error is compared with
    the best observed one; a budget with buckets alone is skipped."""
    fit = fit_qqt(
        synthetic_curves(TRUTH, n=EPOCHS * SIZE, noise=0.005), dict.fromkeys(TRUTH, SIZE), n_bootstrap=0
    )
    members = {"high": ["high"], "low": ["low"], "both": ["high", "low"]}
    curves = runs(
        {
            ("high", 20_000): [0.30, 0.32, 0.28],
            ("low", 20_000): [0.25, 0.26, 0.24],
            ("both", 20_000): [0.29, 0.27, 0.28],
            ("high", 5_000): [0.5, 0.5, 0.5],
            ("low", 5_000): [0.6, 0.6, 0.6],
        }
    )
    table = decision_regret(fit, members, observed_means(curves))
    assert table["budget"].to_list() == [20_000]
    row = table.row(0, named=True)
    predicted = {p: fit.predict(m, 20_000) for p, m in members.items()}
    chosen = min(predicted, key=predicted.__getitem__)
    observed = {"high": 0.30, "low": 0.25, "both": 0.28}
    se = {"high": 0.02 / math.sqrt(3), "low": 0.01 / math.sqrt(3), "both": 0.01 / math.sqrt(3)}
    assert (row["chosen"], row["best"], row["pools"]) == (chosen, "low", 3)
    assert row["regret"] == pytest.approx(observed[chosen] - 0.25)
    assert row["se"] == pytest.approx(math.hypot(se[chosen], se["low"]) if chosen != "low" else 0.0)
    assert row["within"] == (row["regret"] <= 2 * row["se"])


def test_a_bucket_is_harmful_only_if_adding_it_always_hurt() -> None:
    """b joins a and raises the error at both budgets: harmful; a joins b and lowers it: not; c was never
    added to anything measured: not judged."""
    errors = {("a", 10): 0.3, ("a", 20): 0.2, ("b", 10): 0.5, ("b", 20): 0.4, ("a+b", 10): 0.35,
              ("a+b", 20): 0.25, ("c", 10): 0.9}  # fmt: skip
    curves = runs({k: [v, v] for k, v in errors.items()})
    members = {"a": ["a"], "b": ["b"], "c": ["c"], "a+b": ["a", "b"]}
    assert harmful_buckets(members, observed_means(curves)) == ["b"]
    errors[("a+b", 20)] = 0.15  # b helps at one budget: no longer harmful
    curves = runs({k: [v, v] for k, v in errors.items()})
    assert harmful_buckets(members, observed_means(curves)) == []
