"""Projektor: the saturating stage-2 size law, the fit over pilot sizes, stage 3 and the plans, against hand
values, brute force and recovery of known parameters."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from curate.errors import ConfigError, FitError, FitWarning, InputError, SchemaError
from scaling.projektor import compare_mixtures, fit_projektor, fit_size_law, plan_weights
from scaling.simplex import simplex_grid

SOURCES = ("a", "b", "c")
ALPHA = 0.3
SIZES = (100, 200, 400, 800, 1600)


def _truth(p: np.ndarray, n: float) -> np.ndarray:
    """L(N, p) = E(p) + A(p)·N^-α with E and A quadratic in p: the lowest E lies inside the simplex."""
    e = 2.0 + ((p - np.array([0.5, 0.3, 0.2])) ** 2).sum(axis=1)
    a = 6.0 + 3.0 * p[:, 2] - 2.0 * p[:, 0] * p[:, 1]
    return e + a * n**-ALPHA


def test_size_law_recovers_shared_alpha_and_projects_exactly() -> None:
    """Exact curves E_j + A_j·N^-0.3 of 15 mixtures: α, E and A come back; w(N) sums to 1 and projects any
    mixture's pilot values to its value at N = 20,000."""
    grid = simplex_grid(3, divisions=4)
    values = np.column_stack([_truth(grid, n) for n in SIZES])
    law = fit_size_law(SIZES, values)
    assert law.alpha == pytest.approx(ALPHA, rel=1e-5)
    np.testing.assert_allclose(law.e, 2.0 + ((grid - [0.5, 0.3, 0.2]) ** 2).sum(axis=1), atol=1e-5)
    w = law.weights(20_000)
    assert w.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(values @ w, _truth(grid, 20_000), rtol=1e-6)


def test_size_law_hand_weights_at_fixed_alpha() -> None:
    """With α = 1 recovered from exact 1/N curves at N = 1, 2, 10 (x = 1, 1/2, 1/10; no offset), w(N) solves
    the unweighted line fit in x: at x = 0 (N → ∞) it is the intercept of the least-squares line."""
    sizes = (1.0, 2.0, 10.0)
    values = np.array([[3.0 + 2.0 / n for n in sizes], [1.0 + 5.0 / n for n in sizes]])
    law = fit_size_law(sizes, values, offset=False)
    assert law.alpha == pytest.approx(1.0, rel=1e-4)
    x = np.array([1.0, 0.5, 0.1])
    xc = x - x.mean()
    want = 1 / 3 - x.mean() * xc / (xc @ xc)  # intercept weights of ordinary least squares in x
    np.testing.assert_allclose(law.weights(1e12), want, atol=1e-4)


@pytest.mark.parametrize(
    ("sizes", "match"),
    [((100, 1000), r">= 3 increasing pilot sizes"), ((100, 200, 400), r"spanning >= 10x; got sizes")],
)
def test_size_law_needs_three_sizes_over_ten_x(sizes: tuple[int, ...], match: str) -> None:
    """Two sizes, or three spanning less than 10x, cannot pin a saturating law: FitError."""
    with pytest.raises(FitError, match=match):
        fit_size_law(sizes, np.ones((2, len(sizes))))


def _runs(repeats: int = 2, sizes: tuple[int, ...] = SIZES) -> pl.DataFrame:
    grid = simplex_grid(3, divisions=6)  # 28 mixtures
    rows = [
        {
            "n": n,
            "repeat": r,
            **dict(zip(SOURCES, p, strict=True)),
            "metric": float(_truth(p[None, :], n)[0]) + 1e-3 * (2 * r - 1),
        }
        for n in sizes
        for p in grid
        for r in range(repeats)
    ]
    return pl.DataFrame(rows)


def test_projektor_predicts_and_optimises_at_n() -> None:
    """Projected curves and a quadratic law at N: the prediction at 5x the largest pilot is the truth, p* is
    the brute-force argmin of L(N, ·), and the backtest is exact (the size law has no offset to find)."""
    n = 8000
    model = fit_projektor(_runs(), sources=SOURCES, n=n, method="quadratic")
    assert model.size_law.alpha == pytest.approx(ALPHA, rel=1e-3) and model.size_law.n0 < 1e-3
    p = np.array([[0.2, 0.5, 0.3], [0.6, 0.2, 0.2]])
    np.testing.assert_allclose(model.predict(p), _truth(p, n), atol=1e-3)
    pred = model.prediction({"a": 0.2, "b": 0.5, "c": 0.3})
    assert pred.interval[0] <= pred.value <= pred.interval[1]
    best = np.array(list(model.optimize().values()))
    dense = simplex_grid(3, divisions=200)
    assert _truth(best[None, :], n)[0] <= _truth(dense, n).min() + 1e-4
    back = model.backtest()
    assert back is not None and np.abs(back).max() < 1e-3


def test_size_law_finds_an_offset() -> None:
    """Curves E + A·(N + 40)^-0.5 give back N0 = 40 and α = 0.5; without the offset the fit cannot."""
    sizes = (50, 100, 200, 400, 800, 1600)
    e, a = np.array([[2.0], [3.0], [2.5]]), np.array([[20.0], [30.0], [10.0]])
    values = e + a * (np.array(sizes) + 40.0) ** -0.5
    law = fit_size_law(sizes, values)
    assert (law.alpha, law.n0) == pytest.approx((0.5, 40.0), rel=1e-3)
    np.testing.assert_allclose(values @ law.weights(10_000), (e + a * 10_040**-0.5).ravel(), rtol=1e-6)
    assert fit_size_law(sizes, values, offset=False).rmse > 100 * law.rmse


def test_projection_past_max_projection_warns() -> None:
    """N beyond max_projection x the largest pilot is an extrapolation: FitWarning naming the ratio."""
    with pytest.warns(
        FitWarning, match=r"N = 8000 is 5\.0x the largest pilot \(1600\), beyond max_projection"
    ):
        fit_projektor(_runs(), sources=SOURCES, n=8000, method="quadratic", max_projection=3)


def test_plans_baselines_and_projektor() -> None:
    """uniform = 1/m, proportional = sizes/total, best_grid = the grid argmin at the largest pilot, dml and
    regression on the simplex, and p* predicted no worse than any of them."""
    runs = _runs()
    model = fit_projektor(runs, sources=SOURCES, n=6000, method="quadratic")
    sizes = {"a": 100, "b": 300, "c": 600}
    uniform = plan_weights(model, runs, method="uniform")
    assert uniform.weights == pytest.approx(dict.fromkeys(SOURCES, 1 / 3))
    prop = plan_weights(model, runs, method="proportional", source_sizes=sizes)
    assert prop.weights == pytest.approx({"a": 0.1, "b": 0.3, "c": 0.6})
    grid = simplex_grid(3, divisions=6)
    want = grid[np.argmin(_truth(grid, SIZES[-1]))]
    assert list(plan_weights(model, runs, method="best_grid").weights.values()) == pytest.approx(want)
    table = compare_mixtures(model, runs, source_sizes=sizes)
    assert table["method"].to_list() == [
        "projektor",
        "uniform",
        "proportional",
        "dml",
        "regression",
        "best_grid",
    ]
    np.testing.assert_allclose(table.select(SOURCES).sum_horizontal(), 1.0, atol=1e-9)
    assert table["predicted"][0] == pytest.approx(table["predicted"].min(), abs=1e-9)


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
            r"runs \(mixture weights\) row 0 is not on",
        ),
        (lambda r: r.drop("metric"), SchemaError, r"runs lacks column\(s\) metric"),
        (lambda r: r.filter(pl.col("n") <= 200), FitError, r">= 3 increasing pilot sizes"),
        (lambda r: r.filter(pl.col("n") <= 400), FitError, r"spanning >= 10x"),
    ],
)
def test_fit_projektor_rejects_bad_runs(change, exc: type[Exception], match: str) -> None:  # type: ignore[no-untyped-def]
    """A source without pilot data, weights off the simplex, a missing column, too few or too close sizes."""
    with pytest.raises(exc, match=match):
        fit_projektor(change(_runs(repeats=1)), sources=SOURCES, n=5000, method="quadratic")


def test_runs_with_rounded_weights_fit_as_normalised_runs() -> None:
    """Runs whose weights were rounded to 3 decimals (sixths: row sums up to 1.001) warn once and give the
    model of the same runs normalised by hand."""
    runs = _runs(repeats=1).with_columns(pl.col(s).round(3) for s in SOURCES)
    total = pl.sum_horizontal(*SOURCES)
    by_hand = runs.with_columns(pl.col(s) / total for s in SOURCES)
    n_off = runs.filter((total - 1).abs() > 1e-6).height
    assert n_off > 0
    with pytest.warns(FitWarning, match=rf"^runs \(mixture weights\): {n_off} of {runs.height} rows do not"):
        model = fit_projektor(runs, sources=SOURCES, n=5000, method="quadratic")
    want = fit_projektor(by_hand, sources=SOURCES, n=5000, method="quadratic")
    p = np.array([[0.2, 0.5, 0.3], [0.6, 0.2, 0.2]])
    np.testing.assert_allclose(model.predict(p), want.predict(p), rtol=1e-9)


def test_predict_and_plans_reject_bad_input() -> None:
    """A mixture off the simplex, an unknown source name, an unknown plan method: errors naming them."""
    model = fit_projektor(_runs(repeats=1), sources=SOURCES, n=5000, method="quadratic")
    with pytest.raises(InputError, match=r"row 0 is not on the simplex .*: \[0.5, 0.5, 0.5\]"):
        model.prediction([0.5, 0.5, 0.5])
    with pytest.raises(InputError, match=r"unknown source\(s\) \['z'\]"):
        model.prediction({"z": 1.0})
    with pytest.raises(ConfigError, match=r"'method' parameter of plan_weights\(\) must be one of"):
        plan_weights(model, _runs(repeats=1), method="best")  # type: ignore[arg-type]
    with pytest.raises(InputError, match=r"method 'proportional' needs source_sizes"):
        plan_weights(model, _runs(repeats=1), method="proportional")
