"""Projektor (Kang et al. 2023) with a saturating stage 2: a mixture's loss at N documents from pilot runs.

Stage 1, per pilot size N_k: a mixture law L̂_k(p) (`scaling.mixture.fit_mixture_law`), one method for every
size, chosen at the largest pilot (Projektor's OT form competes when each run's OT, measured on its own
training sample, is given).
Stage 2, per calibration mixture j: L(N, p_j) = E_j + A_j·N^-α, one α shared by every mixture, fitted by
weighted least squares over >= 3 pilot sizes spanning >= 10x (for a fixed α, E_j and A_j are linear:
variable projection over α). An unseen p gets the same fit of its stage-1 values:
L̂(N, p) = Σ_k w_k(N)·L̂_k(p), w(N) = [1, N^-α]·(ZᵀWZ)⁻¹ZᵀW, Z = [1, N_k^-α], W = diag(1/σ_k²) from the
repeat spread at each size; the weights sum to 1.
Stage 3: p* = argmin_p L̂(N, p) on the simplex (`scaling.mixture.minimize_on_simplex`).

The `runs` frame has one row per proxy run: `n` (int, pilot size in documents), one float column per source
(weights summing to 1), `metric` (target loss, lower is better) and optionally `ot` (S_ε of the run's own
training sample against the target). Rows sharing (n, p) are repeats.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import polars as pl
from scipy.optimize import minimize_scalar

from curate._validation import check_columns, check_interval, check_option
from curate.errors import FitError, FitWarning, InputError
from curate.manifest import Prediction
from scaling.mixture import LawMethod, MixtureLaw, check_mixtures, fit_mixture_law, minimize_on_simplex

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
    """Stage 2: L(N) = E_j + A_j·N^-α per mixture j (rows of the fitted values), α shared."""

    alpha: float
    sizes: np.ndarray
    sigma: np.ndarray  # noise per size (the weights are 1/σ²)
    e: np.ndarray
    a: np.ndarray
    rmse: float  # residual RMSE over every (mixture, size), metric units

    def weights(self, n: float) -> np.ndarray:
        """w(N): L̂(N) = Σ_k w_k·L(N_k) for any mixture's values at the pilot sizes; sums to 1."""
        z = np.column_stack([np.ones(len(self.sizes)), self.sizes**-self.alpha])
        w = 1.0 / self.sigma**2
        return np.array([1.0, n**-self.alpha]) @ np.linalg.solve(z.T @ (w[:, None] * z), z.T * w)

    def predict(self, n: float) -> np.ndarray:
        """E_j + A_j·N^-α for every fitted mixture."""
        return self.e + self.a * n**-self.alpha


def fit_size_law(
    sizes: Sequence[float], values: np.ndarray, *, sigma: np.ndarray | None = None, min_span: float = MIN_SPAN
) -> SizeLaw:
    """Weighted least squares of E_j + A_j·N^-α to values (mixtures, sizes), α in ALPHA_RANGE shared."""
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

    def solve(log_alpha: float) -> tuple[float, np.ndarray]:
        z = np.column_stack([np.ones(len(n)), n ** -math.exp(log_alpha)]) * sw[:, None]
        coef, *_ = np.linalg.lstsq(z, (y * sw).T, rcond=None)
        return float(((z @ coef - (y * sw).T) ** 2).sum()), coef

    grid = np.linspace(math.log(ALPHA_RANGE[0]), math.log(ALPHA_RANGE[1]), 48)
    k = int(np.argmin([solve(g)[0] for g in grid]))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    best = minimize_scalar(lambda g: solve(g)[0], bounds=(lo, hi), method="bounded").x
    log_alpha = float(best) if solve(best)[0] <= solve(grid[k])[0] else float(grid[k])
    _, coef = solve(log_alpha)
    alpha = math.exp(log_alpha)
    fitted = coef[0][:, None] + coef[1][:, None] * n**-alpha
    return SizeLaw(alpha, n, s, coef[0], coef[1], float(np.sqrt(np.mean((fitted - y) ** 2))))


@dataclass(frozen=True)
class Projektor:
    """Stage-1 mixture laws at the pilot sizes and the stage-2 size law that projects them to N."""

    sources: tuple[str, ...]
    sizes: tuple[int, ...]
    laws: tuple[MixtureLaw, ...]
    size_law: SizeLaw
    grid: np.ndarray = field(repr=False)  # calibration mixtures measured at every size
    values: np.ndarray = field(repr=False)  # their mean metric (mixtures, sizes)
    max_projection: float = 5.0

    def backtest(self) -> np.ndarray | None:
        """Signed errors per grid mixture of stage 2 refitted without the largest pilot and projected to it
        (predicted − measured); None below 4 pilot sizes."""
        if len(self.sizes) < MIN_SIZES + 1:
            return None
        law = fit_size_law(self.sizes[:-1], self.values[:, :-1], sigma=self.size_law.sigma[:-1], min_span=1.0)
        return self.values[:, :-1] @ law.weights(self.sizes[-1]) - self.values[:, -1]

    def _weights(self, n: float, caller: str) -> np.ndarray:
        check_interval("n", n, 1, None, caller=caller)
        ratio = n / self.sizes[-1]
        if ratio > self.max_projection:
            warnings.warn(
                f"{caller}: N = {n:g} is {ratio:.1f}x the largest pilot ({self.sizes[-1]}), beyond "
                f"max_projection = {self.max_projection:g}x; the projection is an extrapolation.",
                FitWarning,
                stacklevel=3,
            )
        return self.size_law.weights(n)

    def _value(self, w: np.ndarray, p: np.ndarray) -> np.ndarray:
        return sum(
            (wk * law.model.predict(p, None) for wk, law in zip(w, self.laws, strict=True)), np.zeros(len(p))
        )

    def predict(self, n: float, p: np.ndarray) -> np.ndarray:
        """L̂(N, p) for each row of p (mixtures x sources), OT from each size's model of it."""
        return self._value(
            self._weights(n, "Projektor.predict"), check_mixtures(p, m=len(self.sources), what="p")
        )

    def prediction(self, n: float, p: Mapping[str, float] | Sequence[float]) -> Prediction:
        """L̂(N, p) with a 90% interval: the stage-1 cross-validated error carried through w(N), plus the
        stage-2 residual."""
        pv = self._mixture(p)
        w = self._weights(n, "Projektor.prediction")
        value = float(self._value(w, pv[None, :])[0])
        stage1 = sum(
            abs(wk) * law.cv_error * math.sqrt(math.pi / 2) for wk, law in zip(w, self.laws, strict=True)
        )
        se = math.hypot(float(np.nan_to_num(stage1)), self.size_law.rmse)
        return Prediction(
            metric="eval_loss", value=value, interval=(value - Z90 * se, value + Z90 * se), method="projektor"
        )

    def optimize(self, n: float, *, seed: int = 0) -> dict[str, float]:
        """p* = argmin_p L̂(N, p) on the simplex."""
        w = self._weights(n, "Projektor.optimize")
        smooth = all(law.model.smooth for law in self.laws)
        best = minimize_on_simplex(lambda q: self._value(w, q), len(self.sources), smooth=smooth,
                                   extra=self.grid, seed=seed)  # fmt: skip
        return {s: float(v) for s, v in zip(self.sources, best, strict=True)}

    def _mixture(self, p: Mapping[str, float] | Sequence[float]) -> np.ndarray:
        if isinstance(p, Mapping):
            unknown = sorted(set(p) - set(self.sources))
            if unknown:
                raise InputError(f"mixture names unknown source(s) {unknown}; sources: {list(self.sources)}.")
            p = [float(p.get(s, 0.0)) for s in self.sources]
        return check_mixtures([list(p)], m=len(self.sources), what=f"mixture over {list(self.sources)}")[0]


def check_runs(runs: pl.DataFrame, *, sources: Sequence[str]) -> pl.DataFrame:
    """Validate a runs frame (columns n, sources, metric, optional ot); returns it sorted by n."""
    if not sources:
        raise InputError("sources must name at least one source column of the runs frame; got none.")
    check_columns(runs, {"n": int, **dict.fromkeys(sources, float), "metric": float}, what="runs")
    if runs.height == 0:
        raise InputError("runs frame is empty; run the calibration grid first.")
    check_mixtures(runs.select(sources).to_numpy(), m=len(sources), what="runs (mixture weights)")
    unused = [s for s in sources if runs[s].max() == 0]
    if unused:
        raise InputError(
            f"source(s) {', '.join(unused)} have no pilot data: weight 0 in every run; add grid mixtures "
            "that use them or drop them from `sources`."
        )
    return runs.sort("n")


def _at_size(
    runs: pl.DataFrame, sources: Sequence[str], n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    part = runs.filter(pl.col("n") == n)
    ot = part["ot"].to_numpy() if "ot" in part.columns else None
    return part.select(sources).to_numpy(), part["metric"].to_numpy(), ot


def fit_projektor(
    runs: pl.DataFrame,
    *,
    sources: Sequence[str],
    method: LawMethod = "auto",
    max_projection: float = 5.0,
    seed: int = 0,
) -> Projektor:
    """Stage-1 laws per pilot size (method chosen at the largest) and the stage-2 size law on the grid."""
    runs = check_runs(runs, sources=sources)
    sizes = sorted(int(s) for s in runs["n"].unique())
    p, y, ot = _at_size(runs, sources, sizes[-1])
    top = fit_mixture_law(p, y, ot=ot, method=method, sources=sources, seed=seed)
    laws = []
    for n in sizes[:-1]:
        with warnings.catch_warnings():  # the largest pilot's fit has warned about these mixtures already
            warnings.simplefilter("ignore", FitWarning)
            laws.append(fit_mixture_law(*_at_size(runs, sources, n)[:2], ot=_at_size(runs, sources, n)[2],
                                        method=top.method, sources=sources, seed=seed))  # fmt: skip
    laws.append(top)
    mean = (
        runs.group_by("n", *sources).agg(pl.col("metric").mean())
        .pivot(on="n", index=list(sources), values="metric").drop_nulls()
    )  # fmt: skip
    grid = mean.select(sources).to_numpy()
    values = mean.select([str(n) for n in sizes]).to_numpy()
    if len(grid) == 0:
        raise InputError(f"no mixture of the runs was measured at every pilot size {sizes}.")
    sigma = np.array([law.noise for law in laws])
    size_law = fit_size_law(sizes, values, sigma=None if np.isnan(sigma).any() else sigma)
    return Projektor(tuple(sources), tuple(sizes), tuple(laws), size_law, grid, values, max_projection)


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
    n: int,
    method: PlanMethod = "projektor",
    source_sizes: Mapping[str, int] | None = None,
    seed: int = 0,
) -> MixturePlan:
    """Weights by `method` (Projektor's optimum at n, or a baseline on the largest pilot's runs) and
    Projektor's prediction for them at n."""
    check_option("method", method, PLAN_METHODS, caller="plan_weights")
    check_interval("n", n, 1, None, caller="plan_weights")
    sources = model.sources
    m = len(sources)
    if method == "projektor":
        weights = model.optimize(n, seed=seed)
        return MixturePlan(method, weights, model.prediction(n, weights))
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
        p, y, _ = _at_size(check_runs(runs, sources=sources), sources, model.sizes[-1])
        if method == "best_grid":
            means = (
                pl.DataFrame(p, schema=list(sources)).with_columns(metric=y)
                .group_by(sources).agg(pl.col("metric").mean()).sort("metric", *sources)
            )  # fmt: skip
            pv = means.select(sources).to_numpy()[0]
        else:
            pv = fit_mixture_law(p, y, method=method, sources=sources, seed=seed).optimum(seed=seed)
    weights = {s: float(w) for s, w in zip(sources, pv, strict=True)}
    return MixturePlan(method, weights, model.prediction(n, weights))


def compare_mixtures(
    model: Projektor,
    runs: pl.DataFrame,
    *,
    n: int,
    source_sizes: Mapping[str, int] | None = None,
    seed: int = 0,
) -> pl.DataFrame:
    """One row per plan method: method, weight per source, Projektor's predicted value, lo, hi."""
    rows = []
    for method in PLAN_METHODS:
        if method == "proportional" and source_sizes is None:
            continue
        plan = plan_weights(model, runs, n=n, method=method, source_sizes=source_sizes, seed=seed)
        lo, hi = plan.prediction.interval
        rows.append(
            {"method": method, **plan.weights, "predicted": plan.prediction.value, "lo": lo, "hi": hi}
        )
    return pl.DataFrame(rows)
