"""Ridge with a leave-one-out penalty, against brute-force refits."""

from __future__ import annotations

import numpy as np
import pytest

from curate.errors import FitError
from scaling.ridge import LAMBDAS, fit_ridge


def _refit(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, float]:
    """Ridge by its normal equations on standardised columns, intercept unpenalised (independent of SVD)."""
    mean, scale = x.mean(axis=0), x.std(axis=0)
    xs = (x - mean) / scale
    beta = np.linalg.solve(xs.T @ xs + lam * len(x) * np.eye(x.shape[1]), xs.T @ (y - y.mean())) / scale
    return beta, float(y.mean() - mean @ beta)


def test_loo_residuals_and_penalty_match_brute_force_refits() -> None:
    """The LOO residuals equal n refits without each row (at the penalty the leave-one-out rows saw), and
    the chosen penalty is the one whose brute-force LOO error is least."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(25, 6))
    y = x @ np.array([1.0, -2.0, 0.5, 0.0, 0.0, 3.0]) + rng.normal(0, 0.5, 25)
    fit = fit_ridge(x, y)
    beta, b0 = _refit(x, y, fit.lam)
    np.testing.assert_allclose(fit.coef, beta, rtol=1e-8)
    assert fit.intercept == pytest.approx(b0, rel=1e-8)

    def loo(lam: float) -> np.ndarray:
        out = np.empty(len(y))
        for i in range(len(y)):
            keep = np.arange(len(y)) != i
            # the full-data standardisation, as the hat-matrix identity assumes
            mean, scale = x.mean(axis=0), x.std(axis=0)
            xs = (x - mean) / scale
            xk, yk = xs[keep], y[keep]
            a = np.hstack([np.ones((len(yk), 1)), xk])
            pen = np.diag([0.0] + [lam * len(y)] * x.shape[1])
            w = np.linalg.solve(a.T @ a + pen, a.T @ yk)
            out[i] = y[i] - (w[0] + xs[i] @ w[1:])
        return out

    np.testing.assert_allclose(fit.loo, loo(fit.lam), rtol=1e-6)
    errors = [np.mean(loo(lam) ** 2) for lam in LAMBDAS]
    assert fit.lam == pytest.approx(LAMBDAS[int(np.argmin(errors))])


def test_exact_linear_data_get_a_tiny_penalty() -> None:
    """Noise-free linear data are recovered with the smallest penalty of the grid."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(30, 3))
    y = 2.0 + x @ np.array([0.3, -1.2, 4.0])
    fit = fit_ridge(x, y)
    assert fit.lam == LAMBDAS[0]
    np.testing.assert_allclose(fit.predict(x), y, atol=1e-3)


def test_fit_ridge_rejects_too_few_rows() -> None:
    """Fewer than 3 rows is a FitError naming what came."""
    with pytest.raises(FitError, match=r"needs >= 3 finite rows"):
        fit_ridge(np.ones((2, 2)), np.ones(2))
