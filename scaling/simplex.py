"""Mixtures on the simplex: lattice grids, the calibration design, and the argmin of a law over the simplex
(projection onto it: POT's `ot.utils.proj_simplex`)."""

from __future__ import annotations

from collections.abc import Callable
from itertools import combinations
from math import comb

import numpy as np
from ot.utils import proj_simplex
from scipy.optimize import minimize

from curate._validation import check_interval

DUST = 1e-6  # weights below this in an optimum are solver dust, not a share


def simplex_grid(n_sources: int, *, divisions: int) -> np.ndarray:
    """Every mixture with weights in {0, 1/d, ..., 1} summing to 1 (simplex lattice); rows sum to 1."""
    check_interval("n_sources", n_sources, 1, None, caller="simplex_grid")
    check_interval("divisions", divisions, 1, None, caller="simplex_grid")
    rows = []
    for bars in combinations(range(divisions + n_sources - 1), n_sources - 1):
        edges = (-1, *bars, divisions + n_sources - 1)
        rows.append([edges[i + 1] - edges[i] - 1 for i in range(n_sources)])
    return np.asarray(rows, dtype=np.float64) / divisions


def mixture_design(
    n_sources: int, *, per_source: int, proportional: np.ndarray | None = None, seed: int = 0
) -> np.ndarray:
    """A space-filling design that grows linearly with the sources: the vertices, uniform, `proportional`
    (when given) and `per_source` x n_sources sparse Dirichlet draws (RegMix-style: each on a random 2 to 4
    sources, flat Dirichlet weights); distinct rows, in that order."""
    check_interval("n_sources", n_sources, 1, None, caller="mixture_design")
    check_interval("per_source", per_source, 0, None, caller="mixture_design")
    rng = np.random.default_rng(seed)
    rows = [*np.eye(n_sources), np.full(n_sources, 1.0 / n_sources)]
    if proportional is not None:
        rows.append(np.asarray(proportional, dtype=np.float64) / float(np.sum(proportional)))
    for _ in range(per_source * n_sources if n_sources > 1 else 0):
        support = rng.choice(n_sources, size=int(rng.integers(2, min(n_sources, 4) + 1)), replace=False)
        row = np.zeros(n_sources)
        row[support] = rng.dirichlet(np.ones(len(support)))
        rows.append(row)
    design = np.asarray(rows, dtype=np.float64)
    _, first = np.unique(np.round(design, 9), axis=0, return_index=True)
    return design[np.sort(first)]


def minimize_on_simplex(
    f: Callable[[np.ndarray], np.ndarray],
    m: int,
    *,
    smooth: bool,
    extra: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """argmin of f (vectorised over rows of mixtures) on the simplex: the best of vertices, a lattice or
    Dirichlet draws and `extra`, refined by SLSQP from the five best when f is smooth, else the mean of the
    best 1% when f is as low there."""
    best = _argmin_on_simplex(f, m, smooth=smooth, extra=extra, seed=seed)
    best = np.where(best < DUST, 0.0, best)  # solver dust is no weight: a source is in or out
    return best / best.sum()


def _argmin_on_simplex(
    f: Callable[[np.ndarray], np.ndarray], m: int, *, smooth: bool, extra: np.ndarray | None, seed: int
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    parts = [np.eye(m), rng.dirichlet(np.ones(m), 2000), rng.dirichlet(np.full(m, 0.3), 2000)]
    divisions = max((d for d in range(1, 41) if _lattice_size(m, d) <= 3000), default=0)
    if divisions:
        parts.append(simplex_grid(m, divisions=divisions))
    if extra is not None:
        parts.append(np.atleast_2d(extra))
    cand = np.vstack(parts)
    values = f(cand)
    order = np.argsort(values, kind="stable")
    best, best_v = cand[order[0]], float(values[order[0]])
    if not smooth:  # a piecewise-constant law ties over regions: their centre, as RegMix averages its top 100
        centre = cand[order[: max(10, len(cand) // 100)]].mean(axis=0)
        return centre if float(f(centre[None, :])[0]) <= best_v + 1e-12 else best
    bounds = [(0.0, 1.0)] * m
    simplex = {"type": "eq", "fun": lambda x: float(x.sum() - 1.0)}
    for x0 in cand[order[:5]]:
        res = minimize(
            lambda x: float(f(x[None, :])[0]), x0, method="SLSQP", bounds=bounds, constraints=simplex
        )
        x = np.asarray(proj_simplex(np.asarray(res.x)), dtype=np.float64)
        v = float(f(x[None, :])[0])
        if v < best_v - 1e-12:
            best, best_v = x, v
    return best


def _lattice_size(m: int, d: int) -> int:
    return comb(d + m - 1, m - 1)
