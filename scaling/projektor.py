"""Projektor (Kang et al. 2023) with a saturating stage 2: a mixture's loss at N documents from pilot runs.

Stage 2, per pilot curve (a calibration mixture's nested samples of one repeat at every pilot size N_k):
L(N) = E + A·(N + N0)^-α, with α and the offset N0 (in [0, smallest pilot]; N0 = 0 is the plain power law)
shared by every curve, fitted by weighted least squares over >= 3 pilot sizes spanning >= 10x (for fixed α
and N0, E and A are linear: variable projection). Every curve then projects linearly to N:
L̂(N) = Σ_k w_k(N)·L(N_k), w(N) = [1, (N + N0)^-α]·(ZᵀWZ)⁻¹ZᵀW, Z = [1, (N_k + N0)^-α], W = diag(1/σ_k²)
from the repeat spread at each size; the weights sum to 1.
Stage 1 at N: a mixture law (`scaling.mixture.fit_mixture_law`) fitted to the projected curves, "auto"
ranking the laws by cross-validation on the projections and on every pilot size; with each run's OT
(measured on its own sample, at the largest pilot) the Projektor form competes. For
the linear laws this equals fitting a law per pilot size and projecting its predictions; fitting once on
the projected values keeps the nonlinear laws (DML) and their optimum in one fit.
Stage 3: p* = argmin_p L̂(N, p) on the simplex (`scaling.simplex.minimize_on_simplex`).

The `runs` frame has one row per proxy run: `n` (int, pilot size in documents), one float column per source
(weights summing to 1), `metric` (target loss, lower is better) and optionally `repeat` (int: which nested
sample; rows sharing (n, p) are otherwise paired in order) and `ot` (S_ε of the run's own training sample).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import polars as pl
from scipy.optimize import minimize

from curate._validation import check_columns, check_interval, check_option
from curate.errors import FitError, FitWarning, InputError
from curate.manifest import Prediction
from scaling.mixture import LawMethod, MixtureLaw, check_mixtures, fit_mixture_law

Z90 = 1.6448536269514722  # two-sided 90% normal quantile
MIN_SIZES, MIN_SPAN = 3, 10.0
ALPHA_RANGE = (0.01, 3.0)
PlanMethod = Literal["projektor", "uniform", "proportional", "dml", "regression", "best_grid"]
PLAN_METHODS: tuple[PlanMethod, ...] = (
    "projektor",
    "uniform",
    "proportional",
    "dml",
    "regression",
    "best_grid",
)


@dataclass(frozen=True, slots=True)
class SizeLaw:
    """Stage 2: L(N) = E_j + A_j·(N + N0)^-α per curve j (rows of the fitted values), α and N0 shared."""

    alpha: float
    n0: float
    sizes: np.ndarray
    sigma: np.ndarray  # noise per size (the weights are 1/σ²)
    e: np.ndarray
    a: np.ndarray
    rmse: float  # residual RMSE over every (curve, size), metric units

    def weights(self, n: float) -> np.ndarray:
        """w(N): L̂(N) = Σ_k w_k·L(N_k) for any curve's values at the pilot sizes; sums to 1."""
        z = np.column_stack([np.ones(len(self.sizes)), (self.sizes + self.n0) ** -self.alpha])
        w = 1.0 / self.sigma**2
        return np.array([1.0, (n + self.n0) ** -self.alpha]) @ np.linalg.solve(
            z.T @ (w[:, None] * z), z.T * w
        )

    def predict(self, n: float) -> np.ndarray:
        """E_j + A_j·(N + N0)^-α for every fitted curve."""
        return self.e + self.a * (n + self.n0) ** -self.alpha


def fit_size_law(
    sizes: Sequence[float],
    values: np.ndarray,
    *,
    sigma: np.ndarray | None = None,
    offset: bool = True,
    min_span: float = MIN_SPAN,
) -> SizeLaw:
    """Weighted least squares of E_j + A_j·(N + N0)^-α to values (curves, sizes): α in ALPHA_RANGE and N0 in
    [0, smallest size] (0 without `offset`) shared, from a grid refined by L-BFGS-B."""
    n = np.asarray(sizes, dtype=np.float64)
    y = np.atleast_2d(np.asarray(values, dtype=np.float64))
    if len(n) < MIN_SIZES or (np.diff(n) <= 0).any() or n[0] <= 0 or n[-1] / n[0] < min_span:
        raise FitError(
            f"stage 2 needs >= {MIN_SIZES} increasing pilot sizes spanning >= {min_span:g}x; "
            f"got sizes {n.tolist()}."
        )
    if y.shape[1] != len(n) or not np.isfinite(y).all():
        raise InputError(f"values must be finite, one column per pilot size ({len(n)}); got shape {y.shape}.")
    s = np.ones(len(n)) if sigma is None else np.asarray(sigma, dtype=np.float64)
    s = np.maximum(s, 0.1 * float(np.median(s)) + 1e-12)
    sw = 1.0 / s

    def solve(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = np.column_stack([np.ones(len(n)), (n + theta[1]) ** -math.exp(theta[0])]) * sw[:, None]
        coef, *_ = np.linalg.lstsq(z, (y * sw).T, rcond=None)
        return float(((z @ coef - (y * sw).T) ** 2).sum()), coef

    lo, hi = math.log(ALPHA_RANGE[0]), math.log(ALPHA_RANGE[1])
    offsets = [0.0, *(n[0] * f for f in (0.0625, 0.25, 1.0))] if offset else [0.0]
    grid = [np.array([g, o]) for g in np.linspace(lo, hi, 25) for o in offsets]
    starts = sorted(grid, key=lambda t: solve(t)[0])[:3]
    bounds = [(lo, hi), (0.0, float(n[0]) if offset else 0.0)]
    fits = [minimize(lambda t: solve(t)[0], x0, method="L-BFGS-B", bounds=bounds) for x0 in starts]
    theta = min([np.asarray(f.x) for f in fits] + starts, key=lambda t: solve(t)[0])
    _, coef = solve(theta)
    alpha, n0 = math.exp(theta[0]), float(theta[1])
    fitted = coef[0][:, None] + coef[1][:, None] * (n + n0) ** -alpha
    return SizeLaw(alpha, n0, n, s, coef[0], coef[1], float(np.sqrt(np.mean((fitted - y) ** 2))))


@dataclass(frozen=True)
class Projektor:
    """The mixture law at N fitted to the pilot curves projected by the size law."""

    sources: tuple[str, ...]
    n: int
    sizes: tuple[int, ...]
    size_law: SizeLaw
    law: MixtureLaw
    curves: np.ndarray = field(repr=False)  # (curves, sizes): pilot metric of each (mixture, repeat)
    curve_p: np.ndarray = field(repr=False)  # (curves, sources): their mixtures

    def predict(self, p: np.ndarray) -> np.ndarray:
        """L̂(N, p) for each row of p (mixtures x sources)."""
        return self.law.predict(p)

    def prediction(self, p: Mapping[str, float] | Sequence[float]) -> Prediction:
        """L̂(N, p) with a 90% interval from the law's cross-validated error on the projected curves
        (normal: sd = MAE·sqrt(π/2)) and the stage-2 backtest."""
        pv = self._mixture(p)
        value = float(self.law.predict(pv[None, :])[0])
        back = self.backtest()
        stage2 = 0.0 if back is None else float(np.sqrt(np.mean(back**2)))
        se = math.hypot(float(np.nan_to_num(self.law.cv_error)) * math.sqrt(math.pi / 2), stage2)
        return Prediction(
            metric="eval_loss", value=value, interval=(value - Z90 * se, value + Z90 * se), method="projektor"
        )

    def optimize(self, *, seed: int = 0) -> dict[str, float]:
        """p* = argmin_p L̂(N, p) on the simplex."""
        best = self.law.optimum(seed=seed)
        return {s: float(v) for s, v in zip(self.sources, best, strict=True)}

    def backtest(self) -> np.ndarray | None:
        """Signed errors per curve of stage 2 refitted without the largest pilot and projected to it
        (predicted − measured); None below 4 pilot sizes."""
        if len(self.sizes) < MIN_SIZES + 1:
            return None
        law = fit_size_law(self.sizes[:-1], self.curves[:, :-1], sigma=self.size_law.sigma[:-1], min_span=1.0)
        return self.curves[:, :-1] @ law.weights(self.sizes[-1]) - self.curves[:, -1]

    def _mixture(self, p: Mapping[str, float] | Sequence[float]) -> np.ndarray:
        if isinstance(p, Mapping):
            unknown = sorted(set(p) - set(self.sources))
            if unknown:
                raise InputError(f"mixture names unknown source(s) {unknown}; sources: {list(self.sources)}.")
            p = [float(p.get(s, 0.0)) for s in self.sources]
        return check_mixtures([list(p)], m=len(self.sources), what=f"mixture over {list(self.sources)}")[0]


def check_runs(runs: pl.DataFrame, *, sources: Sequence[str]) -> pl.DataFrame:
    """Validate a runs frame (columns n, sources, metric, optional ot); returns it sorted by n (rounded
    weights renormalised)."""
    if not sources:
        raise InputError("sources must name at least one source column of the runs frame; got none.")
    check_columns(runs, {"n": int, **dict.fromkeys(sources, float), "metric": float}, what="runs")
    if runs.height == 0:
        raise InputError("runs frame is empty; run the calibration grid first.")
    given = runs.select(sources).to_numpy()
    weights = check_mixtures(given, m=len(sources), what="runs (mixture weights)")
    if not np.array_equal(weights, given):  # rounded weights renormalised (with a FitWarning)
        runs = runs.with_columns(pl.Series(s, weights[:, j]) for j, s in enumerate(sources))
    unused = [s for s in sources if runs[s].max() == 0]
    if unused:
        raise InputError(
            f"source(s) {', '.join(unused)} have no pilot data: weight 0 in every run; add grid mixtures "
            "that use them or drop them from `sources`."
        )
    return runs.sort("n", maintain_order=True)


def _at_size(runs: pl.DataFrame, sources: Sequence[str], n: int) -> tuple[np.ndarray, np.ndarray]:
    part = runs.filter(pl.col("n") == n)
    return part.select(sources).to_numpy(), part["metric"].to_numpy()


def pilot_curves(runs: pl.DataFrame, *, sources: Sequence[str]) -> pl.DataFrame:
    """One row per (mixture, repeat) measured at every pilot size: the sources, `repeat`, one metric column
    per size (named by the size) and `ot` at the largest size when the runs have it; sorted."""
    runs = check_runs(runs, sources=sources)
    if "repeat" not in runs.columns:
        runs = runs.with_columns(repeat=pl.int_range(pl.len()).over("n", *sources))
    sizes = sorted(int(s) for s in runs["n"].unique())
    keys = [*sources, "repeat"]
    wide = runs.pivot(on="n", index=keys, values="metric", aggregate_function="mean").drop_nulls()
    if "ot" in runs.columns:
        top = runs.filter(pl.col("n") == sizes[-1]).group_by(keys).agg(pl.col("ot").mean())
        wide = wide.join(top, on=keys, how="left")
    if wide.height == 0:
        raise InputError(f"no (mixture, repeat) of the runs was measured at every pilot size {sizes}.")
    return wide.select(*keys, *(str(s) for s in sizes), *(["ot"] if "ot" in wide.columns else [])).sort(keys)


def fit_projektor(
    runs: pl.DataFrame,
    *,
    sources: Sequence[str],
    n: int,
    method: LawMethod = "auto",
    max_projection: float = 5.0,
    seed: int = 0,
) -> Projektor:
    """Stage 2 on every pilot curve, projected to `n` documents; stage 1 (the mixture law) on the projections.
    Warns (FitWarning) when n is more than `max_projection` times the largest pilot."""
    check_interval("n", n, 1, None, caller="fit_projektor")
    runs = check_runs(runs, sources=sources)  # once: rounded weights renormalised for every use below
    curves = pilot_curves(runs, sources=sources)
    sizes = sorted(int(c) for c in curves.columns if c.isdigit())
    values = curves.select(str(s) for s in sizes).to_numpy()
    sd = runs.group_by("n", *sources).agg(pl.col("metric").var(), pl.len()).filter(pl.col("len") > 1)
    sigma = None
    if sd.n_unique("n") == len(sizes):
        sigma = np.sqrt(sd.group_by("n").agg(pl.col("metric").mean()).sort("n")["metric"].to_numpy())
    size_law = fit_size_law(sizes, values, sigma=sigma)
    if n / sizes[-1] > max_projection:
        warnings.warn(
            f"fit_projektor: N = {n:g} is {n / sizes[-1]:.1f}x the largest pilot ({sizes[-1]}), beyond "
            f"max_projection = {max_projection:g}x; the projection is an extrapolation.",
            FitWarning,
            stacklevel=2,
        )
    p = curves.select(sources).to_numpy()
    ot = curves["ot"].to_numpy() if "ot" in curves.columns else None
    also = []  # the pilots themselves: "auto" ranks the laws on every size, not on the projection alone
    for size in sizes:
        part = runs.filter(pl.col("n") == size)
        has_ot = "ot" in part.columns and part["ot"].null_count() == 0
        also.append(
            (
                part.select(sources).to_numpy(),
                part["metric"].to_numpy(),
                part["ot"].to_numpy() if has_ot else None,
            )
        )
    projected = values @ size_law.weights(n)
    law = fit_mixture_law(p, projected, ot=ot, method=method, sources=sources, also=also, seed=seed)
    return Projektor(tuple(sources), int(n), tuple(sizes), size_law, law, values, p)


@dataclass(frozen=True, slots=True)
class MixturePlan:
    """Chosen source weights (sum to 1) and Projektor's prediction for them at size n."""

    method: PlanMethod
    weights: dict[str, float]
    prediction: Prediction


def plan_weights(
    model: Projektor,
    runs: pl.DataFrame,
    *,
    method: PlanMethod = "projektor",
    source_sizes: Mapping[str, int] | None = None,
    seed: int = 0,
) -> MixturePlan:
    """Weights by `method` (Projektor's optimum at its N, or a baseline on the largest pilot's runs) and
    Projektor's prediction for them."""
    check_option("method", method, PLAN_METHODS, caller="plan_weights")
    sources = model.sources
    m = len(sources)
    if method == "projektor":
        weights = model.optimize(seed=seed)
        return MixturePlan(method, weights, model.prediction(weights))
    if method == "uniform":
        pv = np.full(m, 1.0 / m)
    elif method == "proportional":
        if source_sizes is None or sorted(source_sizes) != sorted(sources):
            got = None if source_sizes is None else sorted(source_sizes)
            raise InputError(f"method 'proportional' needs source_sizes for {sorted(sources)}; got {got}.")
        sizes = np.array([source_sizes[s] for s in sources], dtype=np.float64)
        if (sizes <= 0).any():
            raise InputError(f"source_sizes must be > 0; got {dict(source_sizes)}.")
        pv = sizes / sizes.sum()
    else:
        p, y = _at_size(check_runs(runs, sources=sources), sources, model.sizes[-1])
        if method == "best_grid":
            means = (
                pl.DataFrame(p, schema=list(sources)).with_columns(metric=y)
                .group_by(sources).agg(pl.col("metric").mean()).sort("metric", *sources)
            )  # fmt: skip
            pv = means.select(sources).to_numpy()[0]
        else:
            pv = fit_mixture_law(p, y, method=method, sources=sources, seed=seed).optimum(seed=seed)
    weights = {s: float(w) for s, w in zip(sources, pv, strict=True)}
    return MixturePlan(method, weights, model.prediction(weights))


def compare_mixtures(
    model: Projektor,
    runs: pl.DataFrame,
    *,
    source_sizes: Mapping[str, int] | None = None,
    seed: int = 0,
) -> pl.DataFrame:
    """One row per plan method: method, weight per source, Projektor's predicted value, lo, hi."""
    rows = []
    for method in PLAN_METHODS:
        if method == "proportional" and source_sizes is None:
            continue
        plan = plan_weights(model, runs, method=method, source_sizes=source_sizes, seed=seed)
        lo, hi = plan.prediction.interval
        rows.append(
            {"method": method, **plan.weights, "predicted": plan.prediction.value, "lo": lo, "hi": hi}
        )
    return pl.DataFrame(rows)
