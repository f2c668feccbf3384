"""The search behind `scaling.qqt.fit_qqt`: mean curves per pool, the single-pool design of the QQT law, the
(a, d) grid with per-pool (b, tau) grids inside, the joint L-BFGS polish and the d identifiability check.

For one pool and a fixed (a, tau), log(y - d) = b X with X = log(a n_1 / 1e5) + sum_j 2^{-(j-1)/tau}
log(n_j / n_{j-1}), so the inner grids are cheap array operations; unions are predicted in `scaling.qqt`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl
import scipy.optimize
from threadpoolctl import threadpool_limits

from scaling.laws import QQT_NORMALIZER, EffectiveData

PRIOR_TAU = EffectiveData().half_life  # Muennighoff et al. 2023: tau = R_D* ln 2 ~ 10.7

_B_GRID = np.linspace(-2.0, 0.5, 126)
_TAU_GRID = np.geomspace(0.2, 200.0, 31)
_D_FRACTIONS = (0.0, 0.3, 0.5, 0.7, 0.85, 0.95)
_A_STEPS = np.linspace(0.0, 6.0, 25)  # log10 a above the least a that keeps a n / 1e5 >= 1 at every point


@dataclass(frozen=True)
class Pools:
    """Mean curves of the fitted pools: per pool its points (samples_seen, error) and its proxy size."""

    names: tuple[str, ...]
    n: tuple[np.ndarray, ...]
    y: tuple[np.ndarray, ...]
    size: tuple[int, ...]

    def epochs_past_one(self, i: int) -> int:
        """Distinct curve points of pool i after its first epoch (what identifies tau)."""
        return int((self.n[i] > self.size[i] * 1.001).sum())


def _design(n: np.ndarray, size: float, log_a: float, tau: np.ndarray) -> np.ndarray:
    """X with log(y - d) = b X for one pool: log(a n_1 / 1e5) + sum_{j>=2} 2^{-(j-1)/tau} log(n_j/n_{j-1})."""
    passes = int(np.ceil(n.max() / size))
    j = np.arange(1, passes + 1, dtype=np.float64)
    n_j = np.minimum(j[None, :] * size, n[:, None])  # (points, passes)
    step = np.diff(np.log(n_j), axis=1)  # (points, passes - 1), zero past each point's own n
    first = log_a + np.log(n_j[:, 0]) - math.log(QQT_NORMALIZER)
    decay = np.exp2(-(j[None, 1:] - 1.0) / tau[:, None])  # (taus, passes - 1)
    return first[None, :] + decay @ step.T  # (taus, points)


def _pool_grid(
    pools: Pools, i: int, log_a: float, d: float, tau_fixed: float | None
) -> tuple[float, float, float]:
    """(sse, b, tau) of pool i at the best grid point for a given (a, d)."""
    taus = np.array([tau_fixed]) if tau_fixed is not None else _TAU_GRID
    design = _design(pools.n[i], pools.size[i], log_a, taus)  # (taus, points)
    excess = _B_GRID[:, None, None] * design[None, :, :]  # (b, taus, points)
    pred = np.logaddexp(np.clip(excess, -50.0, 50.0), math.log(d) if d > 0 else -np.inf)
    sse = ((pred - np.log(pools.y[i])[None, None, :]) ** 2).sum(axis=2)
    k = np.unravel_index(int(np.argmin(sse)), sse.shape)
    return float(sse[k]), float(_B_GRID[k[0]]), float(taus[k[1]])


@dataclass(frozen=True)
class Theta:
    """One QQT solution: shared log a and d, per-pool b and tau."""

    log_a: float
    d: float
    b: tuple[float, ...]
    tau: tuple[float, ...]


def _fixed_tau(pools: Pools, i: int, tau: float | None) -> float | None:
    if tau is not None:
        return tau
    return None if pools.epochs_past_one(i) >= 2 else PRIOR_TAU


def _pool_sse(pools: Pools, i: int, theta: Theta) -> float:
    """Squared log error of pool i's points under `theta`."""
    excess = theta.b[i] * _design(pools.n[i], pools.size[i], theta.log_a, np.array([theta.tau[i]]))[0]
    pred = np.logaddexp(np.clip(excess, -50.0, 50.0), math.log(theta.d) if theta.d > 0 else -np.inf)
    return float(((pred - np.log(pools.y[i])) ** 2).sum())


def objective(pools: Pools, theta: Theta) -> float:
    """Squared log error of every point of every pool under `theta`."""
    return sum(_pool_sse(pools, i, theta) for i in range(len(pools.names)))


def search(pools: Pools, *, d: float | None, tau: float | None, polish: bool = True) -> Theta:
    """The outer (a, d) grid with per-pool (b, tau) grids inside, then (`polish`) a joint L-BFGS polish."""
    best: tuple[float, Theta] | None = None
    fixed = [_fixed_tau(pools, i, tau) for i in range(len(pools.names))]
    for d_value, log_a in itertools.product(d_grid(pools, d), _a_grid(pools)):
        parts = [_pool_grid(pools, i, log_a, d_value, fixed[i]) for i in range(len(pools.names))]
        sse = sum(p[0] for p in parts)
        if best is None or sse < best[0]:
            best = (sse, Theta(log_a, d_value, tuple(p[1] for p in parts), tuple(p[2] for p in parts)))
    assert best is not None
    return _polish(pools, best[1], fixed, free_d=d is None) if polish else best[1]


def d_grid(pools: Pools, d: float | None) -> list[float]:
    """The floors d searched: `d` alone, or fractions of the least observed error."""
    floor = min(float(y.min()) for y in pools.y)
    return [d] if d is not None else [f * floor for f in _D_FRACTIONS]


def _least_log_a(pools: Pools) -> float:
    """log a at which a n / 1e5 = 1 at the fewest samples seen: the paper's regime (a n / 1e5 >= 1, so an
    error <= 1 falls with n for every b < 0 and a more negative b is better at every n) starts there."""
    return math.log(QQT_NORMALIZER / min(float(n.min()) for n in pools.n))


def _a_grid(pools: Pools) -> np.ndarray:
    return _least_log_a(pools) + _A_STEPS * math.log(10.0)


def depends_on_d(pools: Pools, tau: float | None, *, noise: float) -> bool:
    """Whether the fit depends on d: the best objective with d fixed at each grid value (a, b, tau searched
    and polished anew) must vary by more than relative errors of size `noise` (at least 1%) would explain
    (n_points x noise^2 in squared log error)."""
    profile = [objective(pools, search(pools, d=d_value, tau=tau)) for d_value in d_grid(pools, None)]
    n_points = sum(len(y) for y in pools.y)
    return max(profile) - min(profile) > n_points * max(noise, 0.01) ** 2


def _polish(pools: Pools, start: Theta, fixed: list[float | None], *, free_d: bool) -> Theta:
    """Joint L-BFGS on (log a, [d], b_i, log tau_i of the identified pools) from the grid's best point."""
    free_tau = [i for i, f in enumerate(fixed) if f is None]

    def unpack(v: np.ndarray) -> Theta:
        k = 1
        d_value = start.d
        if free_d:
            d_value, k = float(v[1]), 2
        b = tuple(float(x) for x in v[k : k + len(pools.names)])
        taus = list(start.tau)
        for j, i in enumerate(free_tau):
            taus[i] = float(math.exp(v[k + len(pools.names) + j]))
        return Theta(float(v[0]), d_value, b, tuple(taus))

    floor = min(float(y.min()) for y in pools.y)
    x0 = [start.log_a, *([start.d] if free_d else []), *start.b, *(math.log(start.tau[i]) for i in free_tau)]
    bounds = (
        [(_least_log_a(pools), start.log_a + 5.0)]
        + ([(0.0, floor * 0.999)] if free_d else [])
        + [(-3.0, 1.0)] * len(pools.names)
        + [(math.log(0.05), math.log(1000.0))] * len(free_tau)
    )
    with threadpool_limits(limits=1):  # tiny problem: BLAS thread spin-up costs more than the work
        res = scipy.optimize.minimize(
            lambda v: objective(pools, unpack(v)), np.array(x0), method="L-BFGS-B", bounds=bounds
        )
    polished = unpack(res.x)
    return polished if objective(pools, polished) <= objective(pools, start) else start


def mean_curves(curves: pl.DataFrame, sizes: Mapping[str, int]) -> Pools:
    """Per pool, the mean over seeds of its curve points, and its size."""
    mean = curves.group_by("pool", "samples_seen").agg(pl.col("error").mean()).sort("pool", "samples_seen")
    names = tuple(sorted(mean["pool"].unique().to_list()))
    parts = [mean.filter(pl.col("pool") == p) for p in names]
    return Pools(
        names,
        tuple(p["samples_seen"].to_numpy().astype(np.float64) for p in parts),
        tuple(p["error"].to_numpy().astype(np.float64) for p in parts),
        tuple(int(sizes[p]) for p in names),
    )
