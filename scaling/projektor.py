"""Projektor (Kang et al. 2023): predict a source mixture's performance from its OT distance to the target.

Stage 1, per pilot size N_k (least squares over the mixture grid, median of repeats):
    L̂(N_k, p) = Σ_i (b2_i p_i² + b1_i p_i + b0)·OT(p) + Σ_i (c2_i p_i² + c1_i p_i + c0).
Stage 2, the parameter-free projection to N from the two largest pilot sizes N_0 < N_1:
    L̂(N, p) = [ln(N/N_0)·L̂(N_1, p) − ln(N/N_1)·L̂(N_0, p)] / ln(N_1/N_0),
applied to ln L̂ when the metric is a loss. Stage 3: projected gradient on the simplex (Duchi et al. 2008)
with step η_t = η_0·0.9^t; ∂OT/∂p comes from the OT dual potentials (scaling.ot.MixtureDistance).

The `runs` frame has one row per proxy run: `n` (int, pilot training-set size), one float column per source
(its mixture weight; a row's weights sum to 1), `ot` (S_ε between that mixture and the target) and `metric`
(the proxy's target metric: eval loss, or accuracy). Rows sharing (n, p) are repeats; their median is fitted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import polars as pl
from ot.utils import proj_simplex

from curate._validation import check_columns, check_interval, check_option
from curate.errors import FitError, InputError
from curate.manifest import Prediction
from scaling.ot import MixtureDistance

MetricKind = Literal["loss", "accuracy"]
Z90 = 1.6448536269514722  # two-sided 90% normal quantile
WEIGHT_TOLERANCE = 1e-6


def stage1_features(p: np.ndarray, ot: np.ndarray) -> np.ndarray:
    """Design matrix of stage 1: [p_i²·OT, p_i·OT, OT, p_i², p_i, 1], shape (k, 4m + 2)."""
    p = np.atleast_2d(p)
    d = np.asarray(ot, dtype=np.float64).reshape(-1, 1)
    one = np.ones_like(d)
    return np.hstack([p**2 * d, p * d, d, p**2, p, one])


def stage1_gradient(coef: np.ndarray, p: np.ndarray, ot: float) -> tuple[np.ndarray, float]:
    """(∂L̂/∂p at fixed OT, ∂L̂/∂OT) of the stage-1 form at one mixture."""
    m = p.size
    b2, b1, b0 = coef[:m], coef[m : 2 * m], coef[2 * m]
    c2, c1 = coef[2 * m + 1 : 3 * m + 1], coef[3 * m + 1 : 4 * m + 1]
    return (2 * b2 * p + b1) * ot + 2 * c2 * p + c1, float(b2 @ p**2 + b1 @ p + b0)


@dataclass(frozen=True, slots=True)
class Stage1Fit:
    """Least-squares stage-1 coefficients at pilot size `n`, with the leave-one-out RMSE of the fit."""

    n: int
    coef: np.ndarray
    loo_rmse: float

    def predict(self, p: np.ndarray, ot: np.ndarray) -> np.ndarray:
        """L̂(n, p) for mixtures p (k, m) with OT values ot (k,)."""
        return stage1_features(p, ot) @ self.coef


def fit_stage1(n: int, p: np.ndarray, ot: np.ndarray, metric: np.ndarray) -> Stage1Fit:
    """Minimum-norm least squares of the stage-1 form; leave-one-out residuals via the hat matrix."""
    x = stage1_features(p, ot)
    coef, *_ = np.linalg.lstsq(x, metric, rcond=None)
    hat = np.diag(x @ np.linalg.pinv(x))
    resid = (metric - x @ coef) / np.maximum(1.0 - hat, 1e-3)
    return Stage1Fit(n=int(n), coef=coef, loo_rmse=float(np.sqrt(np.mean(resid**2))))


def project_to_size(
    n: float, *, n0: float, value0: float, n1: float, value1: float, log_space: bool
) -> float:
    """Stage 2 (Kang et al. 2023): [ln(N/N0)·L(N1) − ln(N/N1)·L(N0)] / ln(N1/N0), on ln L if `log_space`."""
    if not 0 < n0 < n1:
        raise FitError(f"project_to_size needs 0 < n0 < n1; got n0={n0}, n1={n1}.")
    w1, w0 = _stage2_weights(n, n0, n1)
    if log_space:
        if value0 <= 0 or value1 <= 0:
            raise FitError(f"a loss projected in log space must be > 0; got {value0} and {value1}.")
        return math.exp(w1 * math.log(value1) - w0 * math.log(value0))
    return w1 * value1 - w0 * value0


def _stage2_weights(n: float, n0: float, n1: float) -> tuple[float, float]:
    span = math.log(n1 / n0)
    return math.log(n / n0) / span, math.log(n / n1) / span


@dataclass(frozen=True, slots=True)
class OTSurrogate:
    """Scheffé quadratic OT(p) ≈ Σ q_i p_i + Σ_{i<j} q_ij p_i p_j fitted to the runs' (p, ot) pairs.

    Used by `Projektor` when no `MixtureDistance` is given (the runs frame alone then suffices).
    """

    coef: np.ndarray

    @staticmethod
    def _features(p: np.ndarray) -> np.ndarray:
        p = np.atleast_2d(p)
        i, j = np.triu_indices(p.shape[1], k=1)
        return np.hstack([p, p[:, i] * p[:, j]])

    @classmethod
    def fit(cls, p: np.ndarray, ot: np.ndarray) -> OTSurrogate:
        """Least squares on unique mixtures."""
        coef, *_ = np.linalg.lstsq(cls._features(p), ot, rcond=None)
        return cls(coef)

    def value_and_gradient(self, p: np.ndarray) -> tuple[float, np.ndarray]:
        """OT(p) and its Euclidean gradient in p."""
        m = p.size
        q, inter = self.coef[:m], np.zeros((m, m))
        i, j = np.triu_indices(m, k=1)
        inter[i, j] = inter[j, i] = self.coef[m:]
        return float((self._features(p) @ self.coef)[0]), q + inter @ p


@dataclass
class Projektor:
    """Fitted stage-1 models at the pilot sizes, the OT source, and the metric's orientation."""

    sources: tuple[str, ...]
    metric: MetricKind
    fits: tuple[Stage1Fit, ...]
    distance: MixtureDistance | OTSurrogate
    grid: np.ndarray = field(repr=False)  # the calibration mixtures (unique p), one row each
    grid_ot: np.ndarray = field(repr=False)  # their median OT from the runs

    def _ot(self, p: np.ndarray, *, gradient: bool) -> tuple[float, np.ndarray]:
        if isinstance(self.distance, OTSurrogate):
            return self.distance.value_and_gradient(p)
        if not gradient:
            return self.distance.value(p), np.zeros_like(p)
        value, directional = self.distance.value_and_gradient(p)
        # mean_{S_i} f − mean_rest f = (g_i − Σ_k p_k g_k)/(1 − p_i): the Euclidean gradient up to a constant
        return value, directional * (1.0 - p)

    def _mixture(self, p: Sequence[float] | dict[str, float]) -> np.ndarray:
        if isinstance(p, dict):
            unknown = sorted(set(p) - set(self.sources))
            if unknown:
                raise InputError(f"mixture names unknown source(s) {unknown}; sources: {list(self.sources)}.")
            p = [float(p.get(s, 0.0)) for s in self.sources]
        pv = np.asarray(p, dtype=np.float64)
        if pv.shape != (len(self.sources),) or (pv < 0).any() or abs(pv.sum() - 1) > WEIGHT_TOLERANCE:
            raise InputError(
                f"mixture p must be {len(self.sources)} non-negative weights summing to 1 over "
                f"{list(self.sources)}; got {pv.tolist()} (sum {pv.sum():.6g})."
            )
        return pv

    def _at(self, n: float, p: np.ndarray, ot: float) -> tuple[float, float]:
        """(L̂(N, p), its standard error on the projected scale: log for a loss)."""
        (f0, f1) = self.fits[-2:]
        l0, l1 = float(f0.predict(p, np.array([ot]))[0]), float(f1.predict(p, np.array([ot]))[0])
        w1, w0 = _stage2_weights(n, f0.n, f1.n)
        log_space = self.metric == "loss"
        value = project_to_size(n, n0=f0.n, value0=l0, n1=f1.n, value1=l1, log_space=log_space)
        s0, s1 = (f0.loo_rmse / l0, f1.loo_rmse / l1) if log_space else (f0.loo_rmse, f1.loo_rmse)
        return value, math.hypot(w1 * s1, w0 * s0)

    def predict(self, n: float, p: Sequence[float] | dict[str, float]) -> Prediction:
        """L̂(N, p) with a 90% interval from the stage-1 leave-one-out error propagated through stage 2."""
        check_interval("n", n, 1, None, caller="Projektor.predict")
        pv = self._mixture(p)
        ot, _ = self._ot(pv, gradient=False)
        value, se = self._at(n, pv, ot)
        if self.metric == "loss":
            lo, hi = value * math.exp(-Z90 * se), value * math.exp(Z90 * se)
        else:
            lo, hi = value - Z90 * se, value + Z90 * se
        return Prediction(metric=f"eval_{self.metric}", value=value, interval=(lo, hi), method="projektor")

    def _gradient(self, n: float, p: np.ndarray) -> tuple[float, np.ndarray]:
        ot, ot_grad = self._ot(p, gradient=True)
        w1, w0 = _stage2_weights(n, self.fits[-2].n, self.fits[-1].n)
        parts = []
        for fit in self.fits[-2:]:
            direct, d_ot = stage1_gradient(fit.coef, p, ot)
            parts.append((float(fit.predict(p, np.array([ot]))[0]), direct + d_ot * ot_grad))
        (l0, g0), (l1, g1) = parts
        value, _ = self._at(n, p, ot)
        grad = value * (w1 * g1 / l1 - w0 * g0 / l0) if self.metric == "loss" else w1 * g1 - w0 * g0
        return value, grad

    def optimize(self, n: float, *, steps: int = 30, eta0: float = 0.2) -> dict[str, float]:
        """p* = argbest_p L̂(N, p): projected gradient from the best grid mixture, η_t = η0·0.9^t."""
        check_interval("n", n, 1, None, caller="Projektor.optimize")
        check_interval("steps", steps, 0, None, caller="Projektor.optimize")
        check_interval("eta0", eta0, 0, None, caller="Projektor.optimize", closed="neither")
        sign = 1.0 if self.metric == "loss" else -1.0
        scores = [sign * self._at(n, g, d)[0] for g, d in zip(self.grid, self.grid_ot, strict=True)]
        p = self.grid[int(np.argmin(scores))].copy()
        best_p, best = p.copy(), min(scores)
        for t in range(steps):
            value, grad = self._gradient(n, p)
            if sign * value < best:
                best_p, best = p.copy(), sign * value
            d = grad - grad.mean()
            scale = float(np.abs(d).max())
            if scale == 0:
                break
            p = proj_simplex(p - sign * eta0 * 0.9**t * d / scale)
        value = self._at(n, p, self._ot(p, gradient=False)[0])[0]
        if sign * value < best:
            best_p = p
        return {s: float(w) for s, w in zip(self.sources, best_p, strict=True)}


def median_runs(runs: pl.DataFrame, *, sources: Sequence[str]) -> pl.DataFrame:
    """Validate a runs frame and collapse repeats: median ot and metric per (n, p), sorted."""
    if not sources:
        raise InputError("sources must name at least one source column of the runs frame; got none.")
    check_columns(
        runs, {"n": int, **dict.fromkeys(sources, float), "ot": float, "metric": float}, what="runs"
    )
    if runs.height == 0:
        raise InputError("runs frame is empty; run the calibration grid first.")
    cols = list(sources)
    total = runs.select(pl.sum_horizontal(cols)).to_series()
    bad = (total - 1.0).abs() > WEIGHT_TOLERANCE
    if bad.any():
        i = int(bad.arg_max() or 0)
        raise InputError(
            f"runs row {i} has mixture weights summing to {total[i]:.6g}, not 1 "
            f"({', '.join(f'{s}={runs[s][i]}' for s in cols)})."
        )
    if runs.select(pl.min_horizontal(cols)).to_series().min() < 0:  # type: ignore[operator]
        raise InputError("runs hold a negative mixture weight; weights must be >= 0.")
    unused = [s for s in cols if runs[s].max() == 0]
    if unused:
        raise InputError(
            f"source(s) {', '.join(unused)} have no pilot data: weight 0 in every run; add grid mixtures "
            "that use them or drop them from `sources`."
        )
    return (
        runs.group_by(["n", *cols]).agg(pl.col("ot").median(), pl.col("metric").median()).sort(["n", *cols])
    )


def fit_projektor(
    runs: pl.DataFrame,
    *,
    sources: Sequence[str],
    metric: MetricKind = "loss",
    distance: MixtureDistance | None = None,
) -> Projektor:
    """Fit stage 1 per pilot size on the median of repeats; `distance` supplies OT and its potentials.

    Without `distance`, OT(p) of new mixtures comes from a quadratic surrogate fitted to the runs.
    """
    check_option("metric", metric, ("loss", "accuracy"), caller="fit_projektor")
    med = median_runs(runs, sources=sources)
    sizes = sorted(med["n"].unique().to_list())
    if len(sizes) < 2:
        raise FitError(f"fit_projektor needs runs at >= 2 pilot sizes for stage 2; got sizes {sizes}.")
    if distance is not None and tuple(distance.sources) != tuple(sources):
        raise InputError(
            f"distance sources {list(distance.sources)} differ from `sources` {list(sources)} (same order)."
        )
    if metric == "loss" and med["metric"].min() <= 0:  # type: ignore[operator]
        raise FitError("a loss metric must be > 0 in every run to project it in log space.")
    fits = []
    for n in sizes:
        part = med.filter(pl.col("n") == n)
        fits.append(
            fit_stage1(n, part.select(sources).to_numpy(), part["ot"].to_numpy(), part["metric"].to_numpy())
        )
    grid = med.group_by(sources, maintain_order=True).agg(pl.col("ot").median())
    ot_source: MixtureDistance | OTSurrogate = distance or OTSurrogate.fit(
        med.select(sources).to_numpy(), med["ot"].to_numpy()
    )
    return Projektor(
        tuple(sources), metric, tuple(fits), ot_source, grid.select(sources).to_numpy(), grid["ot"].to_numpy()
    )
