"""Simplex-lattice grids of mixtures (projection onto the simplex: POT's `ot.utils.proj_simplex`)."""

from __future__ import annotations

from itertools import combinations

import numpy as np

from curate._validation import check_interval


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
