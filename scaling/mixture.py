"""Source mixtures: drawing a training set for a mixture, the baselines, and one call that plans weights.

Baselines (compared in the same code path as Projektor): uniform, proportional to source size, the Data
Mixing Law L = c + k·exp(Σ_j t_j p_j) (Ye et al. 2024, eq. 1) fitted on the same runs at the largest pilot
size, and the best grid mixture of the calibration runs. Every plan's prediction at N comes from Projektor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import polars as pl
from scipy.optimize import least_squares

from curate._validation import check_interval, check_option
from curate.errors import FitError, InputError
from curate.manifest import Prediction
from scaling.ot import MixtureDistance
from scaling.projektor import MetricKind, Projektor, fit_projektor, median_runs

Method = Literal["projektor", "uniform", "proportional", "dml", "best_grid"]
METHODS: tuple[Method, ...] = ("projektor", "uniform", "proportional", "dml", "best_grid")


def mixture_counts(p: Sequence[float], n: int) -> np.ndarray:
    """Integer per-source counts summing to `n`, closest to n·p (largest remainder, ties to the first)."""
    pv = np.asarray(p, dtype=np.float64)
    raw = pv * n
    counts = np.floor(raw).astype(np.int64)
    short = n - int(counts.sum())
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[:short]] += 1
    return counts


def sample_mixture(
    pool_sizes: Sequence[int], p: Sequence[float], n: int, *, seed: int = 0
) -> list[np.ndarray]:
    """Row indices per source pool (drawn without replacement) for an n-example training set of mixture p."""
    counts = mixture_counts(p, n)
    too_big = [(i, int(c), int(s)) for i, (c, s) in enumerate(zip(counts, pool_sizes, strict=True)) if c > s]
    if too_big:
        i, c, s = too_big[0]
        raise InputError(f"mixture needs {c} rows from source #{i} but its pool holds {s}; lower n or p.")
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(counts))]
    return [
        np.sort(r.choice(s, size=int(c), replace=False))
        for r, s, c in zip(rngs, pool_sizes, counts, strict=True)
    ]


@dataclass(frozen=True, slots=True)
class DataMixingLaw:
    """L(p) = c + k·exp(Σ_j t_j p_j) fitted by least squares (Ye et al. 2024, eq. 1)."""

    c: float
    k: float
    t: np.ndarray

    def predict(self, p: np.ndarray) -> np.ndarray:
        """L for mixtures p of shape (k, m)."""
        return self.c + self.k * np.exp(np.atleast_2d(p) @ self.t)

    def optimum(self, *, metric: MetricKind) -> np.ndarray:
        """Best mixture on the simplex: the law is monotone in t·p, so a vertex."""
        lower_is_better = metric == "loss"
        increasing = self.k > 0
        j = int(np.argmin(self.t) if lower_is_better == increasing else np.argmax(self.t))
        return np.eye(self.t.size)[j]


def fit_data_mixing_law(p: np.ndarray, metric: np.ndarray, *, seed: int = 0) -> DataMixingLaw:
    """Nonlinear least squares from a few seeded starts; FitError with fewer points than parameters."""
    k, m = p.shape
    if k < m + 2:
        raise FitError(f"the Data Mixing Law needs >= {m + 2} mixtures for {m + 2} parameters; got {k}.")
    rng = np.random.default_rng(seed)
    spread = float(metric.max() - metric.min()) or 1.0

    def resid(theta: np.ndarray) -> np.ndarray:
        return theta[0] + theta[1] * np.exp(np.clip(p @ theta[2:], -50, 50)) - metric

    starts = [
        np.concatenate([[metric.min() - sign * 0.1 * spread, sign * spread], rng.normal(0, 1, m)])
        for sign in (1.0, -1.0)
        for _ in range(4)
    ]
    best = min((least_squares(resid, x0, method="lm", max_nfev=2000) for x0 in starts), key=lambda r: r.cost)
    return DataMixingLaw(float(best.x[0]), float(best.x[1]), best.x[2:].copy())


@dataclass(frozen=True, slots=True)
class MixturePlan:
    """Chosen source weights (sum to 1) and Projektor's prediction for them at size n."""

    method: Method
    weights: dict[str, float]
    prediction: Prediction


def _baseline(
    method: Method,
    med: pl.DataFrame,
    *,
    sources: Sequence[str],
    source_sizes: Mapping[str, int] | None,
    metric: MetricKind,
    seed: int,
) -> np.ndarray:
    m = len(sources)
    if method == "uniform":
        return np.full(m, 1.0 / m)
    if method == "proportional":
        if source_sizes is None or sorted(source_sizes) != sorted(sources):
            got = None if source_sizes is None else sorted(source_sizes)
            raise InputError(f"method 'proportional' needs source_sizes for {sorted(sources)}; got {got}.")
        sizes = np.array([source_sizes[s] for s in sources], dtype=np.float64)
        if (sizes <= 0).any():
            raise InputError(f"source_sizes must be > 0; got {dict(source_sizes)}.")
        return sizes / sizes.sum()
    top = med.filter(pl.col("n") == med["n"].max())
    p, y = top.select(sources).to_numpy(), top["metric"].to_numpy()
    if method == "dml":
        return fit_data_mixing_law(p, y, seed=seed).optimum(metric=metric)
    return p[int(np.argmin(y) if metric == "loss" else np.argmax(y))]


def plan_weights(
    runs: pl.DataFrame,
    *,
    sources: Sequence[str],
    n: int,
    method: Method = "projektor",
    source_sizes: Mapping[str, int] | None = None,
    metric: MetricKind = "loss",
    distance: MixtureDistance | None = None,
    projektor: Projektor | None = None,
    seed: int = 0,
) -> MixturePlan:
    """Weights by `method` and Projektor's prediction for them at training-set size `n`."""
    check_option("method", method, METHODS, caller="plan_weights")
    check_interval("n", n, 1, None, caller="plan_weights")
    model = projektor or fit_projektor(runs, sources=sources, metric=metric, distance=distance)
    if method == "projektor":
        weights = model.optimize(n)
    else:
        med = median_runs(runs, sources=sources)
        p = _baseline(method, med, sources=sources, source_sizes=source_sizes, metric=metric, seed=seed)
        weights = {s: float(w) for s, w in zip(sources, p, strict=True)}
    return MixturePlan(method, weights, model.predict(n, weights))


def compare_mixtures(
    runs: pl.DataFrame,
    *,
    sources: Sequence[str],
    n: int,
    source_sizes: Mapping[str, int] | None = None,
    metric: MetricKind = "loss",
    distance: MixtureDistance | None = None,
    seed: int = 0,
) -> pl.DataFrame:
    """One row per method (projektor, baselines): method, weight per source, predicted value, lo, hi."""
    model = fit_projektor(runs, sources=sources, metric=metric, distance=distance)
    methods = [m for m in METHODS if m != "proportional" or source_sizes is not None]
    rows = []
    for method in methods:
        plan = plan_weights(
            runs,
            sources=sources,
            n=n,
            method=method,
            source_sizes=source_sizes,
            metric=metric,
            projektor=model,
            seed=seed,
        )
        lo, hi = plan.prediction.interval
        rows.append(
            {"method": method, **plan.weights, "predicted": plan.prediction.value, "lo": lo, "hi": hi}
        )
    return pl.DataFrame(rows)
