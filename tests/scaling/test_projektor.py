"""Projektor stages 1-3 and the simplex projection, against hand values and brute-force computations."""

from __future__ import annotations

import itertools
import math

import numpy as np
import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from ot.utils import proj_simplex

from curate.errors import FitError, InputError, SchemaError
from scaling.projektor import fit_projektor, project_to_size
from scaling.simplex import simplex_grid

SOURCES = ("a", "b", "c")
ALPHA = 0.3


def _brute_projection(v: np.ndarray) -> np.ndarray:
    """Closest point of the simplex: best feasible KKT candidate over every support set."""
    best, best_d = None, math.inf
    for k in range(1, v.size + 1):
        for support in itertools.combinations(range(v.size), k):
            s = list(support)
            w = np.zeros_like(v)
            w[s] = v[s] - (v[s].sum() - 1.0) / k
            if (w >= -1e-12).all() and np.linalg.norm(w - v) < best_d:
                best, best_d = w, float(np.linalg.norm(w - v))
    assert best is not None
    return best


@given(arrays(np.float64, st.integers(1, 6), elements=st.floats(-3, 3)))
def test_simplex_projection_matches_brute_force(v: np.ndarray) -> None:
    """POT's proj_simplex (Projektor's gradient steps) equals the best candidate over all supports."""
    np.testing.assert_allclose(proj_simplex(v), _brute_projection(v), atol=1e-9)


def test_simplex_grid_is_the_lattice() -> None:
    """simplex_grid(3, divisions=4) lists the C(6, 2) = 15 distinct mixtures on quarters, summing to 1."""
    grid = simplex_grid(3, divisions=4)
    assert grid.shape == (15, 3)
    np.testing.assert_allclose(grid.sum(axis=1), 1.0)
    assert len({tuple(r) for r in grid}) == 15
    np.testing.assert_allclose((grid * 4) % 1, 0.0)


def test_stage2_closed_form_hand_values() -> None:
    """N0=1000, N1=1500, N=10000: 5.679·L(N1) − 4.679·L(N0) (accuracy), the same on ln L for a loss."""
    w1, w0 = math.log(10) / math.log(1.5), math.log(10000 / 1500) / math.log(1.5)
    assert (round(w1, 3), round(w0, 3)) == (5.679, 4.679)
    got = project_to_size(10_000, n0=1000, value0=0.62, n1=1500, value1=0.66, log_space=False)
    assert got == pytest.approx(5.679 * 0.66 - 4.679 * 0.62, abs=2e-3)
    got = project_to_size(10_000, n0=1000, value0=1.30, n1=1500, value1=1.21, log_space=True)
    assert got == pytest.approx(math.exp(5.679 * math.log(1.21) - 4.679 * math.log(1.30)), rel=2e-3)


def _truth(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A loss in the stage-1 family, OT quadratic in p: (ot, c(p)) with L(n, p) = c(p)·n^-alpha."""
    ot = 0.4 * p[:, 0] + 0.9 * p[:, 1] + 0.6 * p[:, 2] - 0.5 * p[:, 0] * p[:, 1]
    c = 2.0 + 1.5 * ot + (0.8 * p**2 - 0.9 * p).sum(axis=1) + 1.2 * p[:, 0] * ot
    return ot, c


def _runs(sizes: tuple[int, ...] = (1000, 1500), repeats: int = 1) -> pl.DataFrame:
    grid = simplex_grid(3, divisions=5)
    ot, c = _truth(grid)
    rows = [
        {"n": n, **dict(zip(SOURCES, p, strict=True)), "ot": d, "metric": cc * n**-ALPHA + 1e-3 * r}
        for n in sizes
        for p, d, cc in zip(grid, ot, c, strict=True)
        for r in range(repeats)
    ]
    return pl.DataFrame(rows)


def test_projektor_recovers_a_power_law_and_its_optimum() -> None:
    """For L = c(p)·n^-α in the stage-1 family, stage 2 on ln L is exact at N; optimize finds argmin c."""
    model = fit_projektor(_runs(repeats=3), sources=SOURCES)
    p = np.array([0.2, 0.5, 0.3])
    _, c = _truth(p[None, :])
    pred = model.predict(20_000, p)
    want = float(c[0] * 20_000**-ALPHA + 1e-3)  # the median of repeats adds 1e-3
    assert pred.value == pytest.approx(want, rel=2e-3)
    assert pred.interval[0] <= pred.value <= pred.interval[1]
    best = model.optimize(20_000, steps=60)
    dense = simplex_grid(3, divisions=100)
    brute = dense[np.argmin(_truth(dense)[1])]
    assert _truth(np.array([list(best.values())]))[1][0] <= _truth(brute[None, :])[1][0] + 1e-3
    assert sum(best.values()) == pytest.approx(1.0)


def test_projektor_accuracy_is_projected_linearly() -> None:
    """With metric='accuracy' stage 2 is linear in the metric and optimize maximises it."""
    runs = _runs().with_columns(metric=1.0 - pl.col("metric"))
    model = fit_projektor(runs, sources=SOURCES, metric="accuracy")
    p = [0.3, 0.3, 0.4]
    l0 = float(1 - (_truth(np.array([p]))[1][0] * 1000**-ALPHA))
    l1 = float(1 - (_truth(np.array([p]))[1][0] * 1500**-ALPHA))
    want = project_to_size(9000, n0=1000, value0=l0, n1=1500, value1=l1, log_space=False)
    assert model.predict(9000, p).value == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize(
    ("change", "exc", "match"),
    [
        (
            lambda r: r.with_columns(pl.lit(0.0).alias("c"), a=pl.col("a") + pl.col("c")),
            InputError,
            r"source\(s\) c have no pilot data",
        ),
        (
            lambda r: r.with_columns(a=pl.col("a") + 0.1),
            InputError,
            r"runs row 0 has mixture weights summing to 1.1",
        ),
        (lambda r: r.drop("ot"), SchemaError, r"runs lacks column\(s\) ot"),
        (lambda r: r.filter(pl.col("n") == 1000), FitError, r"needs runs at >= 2 pilot sizes"),
        (lambda r: r.with_columns(metric=-pl.col("metric")), FitError, r"must be > 0 in every run"),
    ],
)
def test_fit_projektor_rejects_bad_runs(change, exc: type[Exception], match: str) -> None:  # type: ignore[no-untyped-def]
    """A source without pilot data, weights not summing to 1, a missing column, one size: clear errors."""
    with pytest.raises(exc, match=match):
        fit_projektor(change(_runs()), sources=SOURCES)


def test_predict_rejects_bad_mixture() -> None:
    """predict() names the sources and the sum when p is not on the simplex, and unknown source names."""
    model = fit_projektor(_runs(), sources=SOURCES)
    with pytest.raises(InputError, match=r"summing to 1 over \['a', 'b', 'c'\]; got \[0.5, 0.5, 0.5\]"):
        model.predict(5000, [0.5, 0.5, 0.5])
    with pytest.raises(InputError, match=r"unknown source\(s\) \['z'\]"):
        model.predict(5000, {"z": 1.0})
