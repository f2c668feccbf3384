"""Ridge regression with its penalty chosen by exact leave-one-out error (Hastie et al. 2009, eq. 7.52).

Columns are centred (the intercept is never penalised) and scaled to unit variance; for every penalty λ of a
log grid the hat matrix H = 1/n + X_c (X_cᵀX_c + λI)⁻¹ X_cᵀ comes from one SVD, the leave-one-out residual of
row i is r_i / (1 − H_ii), and the λ with the least mean squared LOO residual wins. Coefficients are
returned in the caller's units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from curate.errors import FitError

LAMBDAS = np.logspace(-6, 4, 41)  # penalties tried, relative to the number of rows (standardised columns)


@dataclass(frozen=True, slots=True)
class RidgeFit:
    """y ≈ x @ coef + intercept; `lam` the chosen penalty, `loo` the leave-one-out residuals at it."""

    coef: np.ndarray
    intercept: float
    lam: float
    loo: np.ndarray

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Predictions for the rows of `x` (same columns as the fit)."""
        return np.atleast_2d(x) @ self.coef + self.intercept


def fit_ridge(x: np.ndarray, y: np.ndarray) -> RidgeFit:
    """Ridge on standardised columns with an unpenalised intercept; λ by exact leave-one-out error."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n = x.shape[0]
    if n < 3 or y.shape != (n,) or not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise FitError(
            f"fit_ridge needs >= 3 finite rows with one target each; got x {x.shape}, y {y.shape}."
        )
    mean, scale = x.mean(axis=0), x.std(axis=0)
    scale = np.where(scale > 1e-12, scale, 1.0)
    xc = (x - mean) / scale
    yc = y - y.mean()
    u, s, vt = np.linalg.svd(xc, full_matrices=False)
    uty = u.T @ yc
    lams = LAMBDAS * n
    shrink = s[None, :] ** 2 / (s[None, :] ** 2 + lams[:, None])  # (penalties, components)
    fitted = (shrink * uty) @ u.T
    hat = 1.0 / n + shrink @ (u**2).T
    loo = (yc - fitted) / np.maximum(1.0 - hat, 1e-9)
    k = int(np.argmin(np.mean(loo**2, axis=1)))  # the first (smallest) λ among ties
    lam = float(lams[k])
    beta = vt.T @ (s / (s**2 + lam) * uty) / scale
    return RidgeFit(coef=beta, intercept=float(y.mean() - mean @ beta), lam=lam / n, loo=loo[k])
