"""Mixture laws (fit_mixture_law): recovery of known laws, interior optima, repeats, the choice by
cross-validation and its identification rule, against hand values and brute force."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from curate.errors import ConfigError, FitError, FitWarning, InputError
from scaling.mixture import check_mixtures, fit_mixture_law, mixture_counts
from scaling.simplex import minimize_on_simplex, mixture_design, simplex_grid


@given(
    st.lists(st.floats(0.0, 1.0), min_size=1, max_size=5).filter(lambda w: sum(w) > 0), st.integers(0, 5000)
)
def test_mixture_counts_sum_to_n_and_round_n_p(weights: list[float], n: int) -> None:
    """Counts sum to n and each is within 1 of n·p."""
    p = np.asarray(weights) / sum(weights)
    counts = mixture_counts(p, n)
    assert counts.sum() == n
    assert (np.abs(counts - n * p) < 1.0 + 1e-9).all()


def test_dml_recovers_parameters_and_its_vertex_optimum() -> None:
    """Exact data from L = 1.2 + 0.4·exp(0.5 p0 − p1) give back c, k, t (t of the last source fixed at 0);
    one exponential is monotone in t·p, so its optimum is the vertex of the smallest t."""
    grid = simplex_grid(3, divisions=4)
    y = 1.2 + 0.4 * np.exp(grid @ np.array([0.5, -1.0, 0.0]))
    law = fit_mixture_law(grid, y, method="dml", sources=["a", "b", "c"])
    assert law.params() == pytest.approx({"c": 1.2, "k": 0.4, "t.a": 0.5, "t.b": -1.0}, abs=1e-5)
    np.testing.assert_allclose(law.predict([[0.2, 0.3, 0.5]]), [1.2 + 0.4 * np.exp(0.1 - 0.3)], rtol=1e-6)
    np.testing.assert_allclose(law.optimum(), [0.0, 1.0, 0.0], atol=1e-9)


def test_dml_over_two_target_domains_has_the_brute_force_interior_optimum() -> None:
    """Two target domains, each best served by its own source: the summed laws' optimum is interior and
    matches the argmin of the true sum over a dense lattice."""
    grid = simplex_grid(3, divisions=6)  # 28 mixtures for 2 x 4 parameters

    def truth(p: np.ndarray) -> np.ndarray:
        return np.column_stack([1.0 + 2.0 * np.exp(-3.0 * p[:, 0]), 0.8 + 1.5 * np.exp(-2.0 * p[:, 1])])

    law = fit_mixture_law(grid, truth(grid), method="dml")
    dense = simplex_grid(3, divisions=200)
    want = dense[np.argmin(truth(dense).sum(axis=1))]
    got = law.optimum()
    assert 0.2 < got[0] < 0.8 and 0.2 < got[1] < 0.8
    np.testing.assert_allclose(got, want, atol=0.01)


def test_quadratic_recovers_a_scheffe_polynomial() -> None:
    """A quadratic mixture model is recovered exactly and predicts unseen mixtures."""
    grid = simplex_grid(4, divisions=5)  # 56 mixtures, 10 parameters

    def truth(p: np.ndarray) -> np.ndarray:
        return 3.0 * p[:, 0] + 2.0 * p[:, 1] + 2.5 * p[:, 2] + 4.0 * p[:, 3] - 3.0 * p[:, 0] * p[:, 1]

    law = fit_mixture_law(grid, truth(grid), method="quadratic")
    new = np.random.default_rng(0).dirichlet(np.ones(4), 20)
    np.testing.assert_allclose(law.predict(new), truth(new), atol=1e-4)
    assert law.cv_error < 1e-4


def _stage1_data(j: int = 60) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mixtures of 3 sources, an OT that is not a function of p alone (sample noise), and a loss in the
    Projektor stage-1 family of p and OT."""
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.ones(3), j)
    ot = 0.5 + (p**2) @ np.array([0.3, 0.1, 0.6]) + rng.normal(0, 0.05, j)
    y = 2.0 + p @ np.array([0.5, -0.2, 0.0]) + (p**2 * ot[:, None]) @ np.array([1.0, 2.0, 0.5]) + 1.5 * ot
    return p, ot, y


def test_projektor_law_uses_each_runs_ot() -> None:
    """The stage-1 form with the runs' OT values is recovered exactly: unseen mixtures with their OT are
    predicted to 1e-4, and a law on p alone (quadratic) cannot do as well."""
    p, ot, y = _stage1_data()
    law = fit_mixture_law(p[:50], y[:50], ot=ot[:50], method="projektor")
    np.testing.assert_allclose(law.predict(p[50:], ot=ot[50:]), y[50:], atol=1e-4)
    quad = fit_mixture_law(p[:50], y[:50], method="quadratic")
    assert (
        np.abs(quad.predict(p[50:]) - y[50:]).mean()
        > 10 * np.abs(law.predict(p[50:], ot[50:]) - y[50:]).mean()
    )


def test_auto_picks_the_least_cross_validated_error_and_reports_every_method() -> None:
    """'auto' scores every method identified on 60 mixtures (3 a parameter); the generating family
    (Projektor's, given OT) has the least out-of-fold MAE by far more than its standard error, so it wins."""
    p, ot, y = _stage1_data()
    law = fit_mixture_law(p, y, ot=ot)
    scores = {m: s.mae for m, s in law.cv.items()}
    assert set(law.cv) == {"dml", "dml2", "dml3", "logsum", "quadratic", "regression", "projektor"}
    assert law.method == min(scores, key=scores.__getitem__) == "projektor"
    assert law.cv_error == scores["projektor"]


def test_repeats_are_averaged_and_their_spread_is_the_noise() -> None:
    """Two repeats per mixture at ±d around the law: the fit equals the fit of the means, and the noise is
    the pooled standard deviation sqrt(Σ dev² / (runs − mixtures)) = d·sqrt(2)."""
    grid = simplex_grid(3, divisions=4)
    y = 1.0 + 0.5 * np.exp(grid @ np.array([1.0, -0.5, 0.0]))
    d = 0.01
    law = fit_mixture_law(np.vstack([grid, grid]), np.concatenate([y + d, y - d]), method="dml")
    assert law.noise == pytest.approx(d * np.sqrt(2), rel=1e-9)
    assert law.n_mixtures == len(grid)
    np.testing.assert_allclose(law.predict(grid), y, atol=1e-6)


def test_a_chosen_law_with_too_few_mixtures_per_parameter_warns() -> None:
    """Projektor's 12 parameters on 30 mixtures (< 36) warn when named; 'auto' tries only the laws with 3
    mixtures a parameter (the one-term DML from 2 more than its parameters), so it never picks projektor
    there, and on 8 mixtures only the DML is left (warned: 4 parameters, < 12 mixtures)."""
    p, ot, y = _stage1_data(j=30)
    too_few = r"'projektor' has 12 parameters but only 30 distinct mixtures \(< 36\)"
    with pytest.warns(FitWarning, match=too_few):
        fit_mixture_law(p, y, ot=ot, method="projektor")
    law = fit_mixture_law(p, y, ot=ot)  # no warning: every law tried is identified
    assert set(law.cv) == {"dml", "dml2", "dml3", "logsum", "quadratic"}
    small = fit_mixture_law(p[:8], y[:8], method="regression")
    assert set(small.cv) == {"regression"}
    with pytest.warns(FitWarning, match="poorly identified"):
        tried = fit_mixture_law(p[:8], y[:8], ot=ot[:8]).cv
    assert set(tried) == {"dml"}  # logsum (5: 15), quadratic (6: 18), ...: > 8; trees: < 50


def test_dml_with_three_terms_recovers_a_three_domain_target() -> None:
    """A loss summed over three target domains, each served by one source (positive terms), is recovered by
    'dml3' to 1e-4 on unseen mixtures while one term cannot; 'auto' picks it."""
    grid = simplex_grid(4, divisions=5)  # 56 mixtures, 13 parameters

    def truth(p: np.ndarray) -> np.ndarray:
        return 2.0 + np.exp(0.5 - 3.0 * p[:, 0]) + np.exp(0.2 - 4.0 * p[:, 1]) + np.exp(-2.0 * p[:, 2])

    new = np.random.default_rng(4).dirichlet(np.ones(4), 30)
    law = fit_mixture_law(grid, truth(grid))
    assert law.method == "dml3"
    np.testing.assert_allclose(law.predict(new), truth(new), atol=1e-4)
    one = fit_mixture_law(grid, truth(grid), method="dml")
    assert np.abs(one.predict(new) - truth(new)).mean() > 0.01


def test_minimize_on_simplex_finds_the_brute_force_minimum() -> None:
    """A smooth bowl centred inside the simplex: its argmin, to the SLSQP tolerance."""
    centre = np.array([0.1, 0.5, 0.15, 0.25])

    def f(q: np.ndarray) -> np.ndarray:
        return ((q - centre) ** 2 * np.array([1.0, 2.0, 3.0, 4.0])).sum(axis=1)

    np.testing.assert_allclose(minimize_on_simplex(f, 4, smooth=True), centre, atol=1e-4)


def test_regression_ranks_many_runs() -> None:
    """Boosted trees on 300 runs of 6 sources keep the rank order of a smooth law on held-out folds."""
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(6), 300)
    y = 3.0 + np.sin(3 * p[:, 0]) - 2 * p[:, 1] * p[:, 2] + rng.normal(0, 0.01, 300)
    law = fit_mixture_law(p, y, method="regression")
    assert law.cv["regression"].spearman > 0.9


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"method": "lasso"}, ConfigError, r"'method' parameter of fit_mixture_law\(\) must be one of"),
        ({"p": [[0.5, 0.6], [1.0, 0.0], [0.0, 1.0]]}, InputError, r"p row 0 is not on the simplex"),
        ({"metric": [1.0, 2.0]}, InputError, r"metric must be 3 finite losses"),
        ({"method": "projektor"}, InputError, r"method 'projektor' needs ot"),
        ({"ot": [1.0, np.nan, 2.0]}, InputError, r"ot must be 3 finite numbers"),
        ({"sources": ["a"]}, InputError, r"sources must name the 2 columns of p"),
        ({"p": [[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]]}, FitError, r"needs >= 3 distinct mixtures; got 2"),
    ],
)
def test_fit_mixture_law_rejects_bad_input(kwargs: dict, exc: type[Exception], match: str) -> None:
    """Bad method, p off the simplex, wrong metric or OT length, missing OT, bad names, too few mixtures."""
    args = {"p": [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]], "metric": [1.0, 2.0, 3.0]} | kwargs
    with pytest.raises(exc, match=match):
        fit_mixture_law(**args)


def test_weights_rounded_to_three_decimals_are_renormalised_with_a_warning() -> None:
    """A published table of 4-source weights rounded to 3 decimals (row sums 0.998 to 1.002) fits as its
    rows normalised by hand do; one FitWarning gives how many rows were off and the largest deviation."""
    rng = np.random.default_rng(7)
    exact = np.vstack([rng.dirichlet(np.ones(4), 40), [[1 / 3, 1 / 3, 1 / 6, 1 / 6]]])
    y = 1.2 + 0.4 * np.exp(exact @ np.array([0.5, -1.0, 0.3, 0.0]))
    table = np.round(exact, 3)
    table[-1] = [0.333, 0.333, 0.166, 0.166]  # sums to 0.998
    sums = table.sum(axis=1)
    off = np.abs(sums - 1.0)
    n_off = int((off > 1e-6).sum())
    assert 0 < n_off < len(table) and off.max() == pytest.approx(0.002)
    with pytest.warns(
        FitWarning, match=rf"^runs p: {n_off} of 41 rows do not sum to 1 \(largest deviation 0\.002,"
    ):
        law = fit_mixture_law(table, y, method="dml", sources=["a", "b", "c", "d"])
    by_hand = fit_mixture_law(table / sums[:, None], y, method="dml", sources=["a", "b", "c", "d"])
    assert law.params() == pytest.approx(by_hand.params(), rel=1e-6)
    q = rng.dirichlet(np.ones(4), 5)
    np.testing.assert_allclose(law.predict(q), by_hand.predict(q), rtol=1e-9)
    with pytest.warns(FitWarning, match=r"^p: 1 of 1 rows do not sum to 1 \(largest deviation 0\.002,"):
        np.testing.assert_allclose(law.predict(table[-1:]), law.predict(table[-1:] / 0.998), rtol=1e-12)


@pytest.mark.parametrize(
    ("p", "match"),
    [
        # 2 sources round by at most 1e-3: a row summing to 0.998 is not rounding
        (
            [[1.0, 0.0], [0.499, 0.499], [0.0, 1.0]],
            r"runs p row 1 is not on the simplex \(its weights sum to 0\.998\)",
        ),
        # 4 sources round by at most 2e-3
        ([[1, 0, 0, 0], [0.25, 0.25, 0.25, 0.247], [0, 0, 0, 1]], r"row 1 .*\(its weights sum to 0\.997\)"),
        ([[1.0, 0.0], [0.5, 0.5], [1.01, -0.01]], r"row 2 is not on the simplex \(a weight is negative"),
        ([[1.0, 0.0], [0.5, 0.6], [0.0, 0.9]], r"row 1 .*: \[0\.5, 0\.6\]; 2 of 3 rows are off"),
    ],
)
def test_weights_off_by_more_than_rounding_name_the_row_and_the_fix(p: list[list[float]], match: str) -> None:
    """Beyond rounding (or with a negative weight) the error names the first bad row, its sum and the fix."""
    with pytest.raises(InputError, match=match) as info:
        fit_mixture_law(np.asarray(p), np.array([1.0, 2.0, 3.0]))
    assert "normalise each row first, p / p.sum(axis=1, keepdims=True)" in str(info.value)


def test_the_rounding_bound_grows_with_the_sources() -> None:
    """m weights rounded to 3 decimals move a row sum by up to m·5e-4 (at least 1e-3 is allowed): with 2
    sources 0.999 is renormalised, with 4 sources 0.998 is."""
    with pytest.warns(FitWarning, match=r"^p: 1 of 1 rows .*deviation 0\.001, within 0\.001:"):
        np.testing.assert_allclose(
            check_mixtures([[0.4995, 0.4995]], m=2, what="p"), [[0.5, 0.5]], rtol=1e-15
        )
    table = np.array([[0.25, 0.25, 0.25, 0.25], [0.25, 0.25, 0.25, 0.248]])
    with pytest.warns(FitWarning, match=r"^p: 1 of 2 rows .*deviation 0\.002, within 0\.002:"):
        got = check_mixtures(table, m=4, what="p")
    np.testing.assert_allclose(got, [table[0], table[1] / 0.998], rtol=1e-15)


def test_auto_takes_the_simplest_law_within_one_standard_error() -> None:
    """A more complex law must beat the best by more than its standard error: hand scores."""
    from scaling.mixture import CVScore, _simplest_within_noise

    cv = {
        "dml": CVScore(0.11, 0.9, 4, 0.50, 0.03),
        "quadratic": CVScore(0.10, 0.9, 6, 0.48, 0.02),
        "projektor": CVScore(0.05, 0.9, 12, 0.30, 0.02),
    }
    assert _simplest_within_noise(["dml", "quadratic"], cv) == "dml"  # 0.50 <= 0.48 + 0.02
    assert _simplest_within_noise(["dml", "quadratic", "projektor"], cv) == "projektor"  # wins by > noise
    cv["dml"] = CVScore(0.11, 0.9, 4, 0.51, 0.03)
    assert _simplest_within_noise(["dml", "quadratic"], cv) == "quadratic"


def test_logsum_recovers_its_coefficients_and_an_interior_optimum() -> None:
    """Noise-free L = 2 + 0.3 -log(p1 + 0.01) + 0.1 -log(p2 + 0.01) on a 4-source design: the fit gives back
    a, c and eps, and the optimum splits the weight about 3:1 between the two helpful sources (brute force).
    """

    p = mixture_design(4, per_source=8, seed=2)
    a = np.array([0.3, 0.1, 0.0, 0.0])
    y = 2.0 - np.log(p + 0.01) @ a
    law = fit_mixture_law(p, y, method="logsum")
    got = law.params()
    assert got["eps"] == 0.01 and got["c"] == pytest.approx(2.0, abs=1e-6)
    np.testing.assert_allclose([got["p0"], got["p1"], got["p2"], got["p3"]], a, atol=1e-6)
    dense = simplex_grid(4, divisions=40)
    brute = dense[np.argmin(2.0 - np.log(dense + 0.01) @ a)]
    np.testing.assert_allclose(law.optimum(), brute, atol=0.03)
    assert law.optimum()[0] == pytest.approx(0.75, abs=0.03)
