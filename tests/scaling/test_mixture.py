"""Mixture draws, the Data Mixing Law baseline and the one-call planner, against hand-checked values."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from curate.errors import ConfigError, InputError
from scaling.mixture import (
    compare_mixtures,
    fit_data_mixing_law,
    mixture_counts,
    plan_weights,
    sample_mixture,
)
from scaling.simplex import simplex_grid

SOURCES = ("a", "b", "c")


@given(
    st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5).filter(lambda w: sum(w) > 0), st.integers(0, 5000)
)
def test_mixture_counts_sum_to_n_and_round_n_p(weights: list[float], n: int) -> None:
    """Counts sum to n and each is within 1 of n·p."""
    p = np.asarray(weights) / sum(weights)
    counts = mixture_counts(p, n)
    assert counts.sum() == n
    assert (np.abs(counts - n * p) < 1.0 + 1e-9).all()


def test_sample_mixture_draws_without_replacement_and_is_seeded() -> None:
    """Each source gives its count of distinct rows; the same seed gives the same rows; too few rows raise."""
    rows = sample_mixture([50, 80, 10], [0.5, 0.3, 0.2], 40, seed=7)
    assert [len(r) for r in rows] == [20, 12, 8]
    assert all(
        len(set(r.tolist())) == len(r) and r.max() < s for r, s in zip(rows, [50, 80, 10], strict=True)
    )
    assert all(
        (a == b).all()
        for a, b in zip(rows, sample_mixture([50, 80, 10], [0.5, 0.3, 0.2], 40, seed=7), strict=True)
    )
    with pytest.raises(InputError, match=r"needs 40 rows from source #2 but its pool holds 10"):
        sample_mixture([50, 80, 10], [0.0, 0.0, 1.0], 40)


def test_data_mixing_law_recovers_parameters_and_vertex_optimum() -> None:
    """Exact data from L = c + k·exp(t·p) give back (c, k, t); the loss optimum is the smallest-t vertex."""
    grid = simplex_grid(3, divisions=4)
    t = np.array([0.5, -1.0, 1.5])
    y = 1.2 + 0.4 * np.exp(grid @ t)
    law = fit_data_mixing_law(grid, y)
    np.testing.assert_allclose(law.predict(grid), y, rtol=1e-6)
    np.testing.assert_array_equal(law.optimum(metric="loss"), [0.0, 1.0, 0.0])
    np.testing.assert_array_equal(law.optimum(metric="accuracy"), [0.0, 0.0, 1.0])


def _runs() -> pl.DataFrame:
    """Two pilot sizes, a loss that is lowest near p = (0.6, 0.3, 0.1), OT a quadratic in p, two repeats."""
    grid = simplex_grid(3, divisions=5)
    target = np.array([0.6, 0.3, 0.1])
    ot = 0.5 + ((grid - target) ** 2).sum(axis=1)
    rows = [
        {
            "n": n,
            **dict(zip(SOURCES, p, strict=True)),
            "ot": d,
            "metric": (1 + 2 * (d - 0.5)) * n**-0.2 + 1e-4 * r,
        }
        for n in (200, 300)
        for p, d in zip(grid, ot, strict=True)
        for r in range(2)
    ]
    return pl.DataFrame(rows)


def test_plan_weights_baselines_and_projektor() -> None:
    """uniform = 1/m, proportional = sizes/total, best_grid = the grid argmin, projektor beats uniform."""
    runs, n = _runs(), 3000
    sizes = {"a": 100, "b": 300, "c": 600}
    uni = plan_weights(runs, sources=SOURCES, n=n, method="uniform")
    assert uni.weights == pytest.approx(dict.fromkeys(SOURCES, 1 / 3))
    prop = plan_weights(runs, sources=SOURCES, n=n, method="proportional", source_sizes=sizes)
    assert prop.weights == pytest.approx({"a": 0.1, "b": 0.3, "c": 0.6})
    grid = plan_weights(runs, sources=SOURCES, n=n, method="best_grid")
    assert grid.weights == pytest.approx({"a": 0.6, "b": 0.4, "c": 0.0}) or grid.weights == pytest.approx(
        {"a": 0.6, "b": 0.2, "c": 0.2}
    )
    star = plan_weights(runs, sources=SOURCES, n=n)
    assert star.prediction.value <= uni.prediction.value
    np.testing.assert_allclose(list(star.weights.values()), [0.6, 0.3, 0.1], atol=0.02)
    table = compare_mixtures(runs, sources=SOURCES, n=n, source_sizes=sizes)
    assert table["method"].to_list() == ["projektor", "uniform", "proportional", "dml", "best_grid"]
    assert table["predicted"].min() == pytest.approx(star.prediction.value)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"method": "best"}, ConfigError, r"'method' parameter of plan_weights\(\) must be one of"),
        ({"method": "proportional"}, InputError, r"method 'proportional' needs source_sizes"),
        ({"n": 0}, ConfigError, r"'n' parameter of plan_weights\(\) must be a number in \[1, inf\]"),
    ],
)
def test_plan_weights_rejects_bad_params(kwargs: dict, exc: type[Exception], match: str) -> None:
    """Bad method, missing sizes for 'proportional', a size below 1: errors naming the parameter."""
    args = {"sources": SOURCES, "n": 3000} | kwargs
    with pytest.raises(exc, match=match):
        plan_weights(_runs(), **args)
