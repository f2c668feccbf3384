"""Euclidean projection onto the probability simplex (Duchi et al. 2008, Fig. 1) and simplex-lattice grids."""

from __future__ import annotations

from itertools import combinations

import numpy as np

from curate._validation import check_interval
from curate.errors import InputError


def project_simplex(v: np.ndarray) -> np.ndarray:
    """argmin_{w >= 0, Σw = 1} ‖w − v‖₂ by the sort-and-threshold rule (Duchi et al. 2008, Fig. 1)."""
    v = np.asarray(v, dtype=np.float64)
    if v.ndim != 1 or v.size == 0 or not np.isfinite(v).all():
        raise InputError(f"project_simplex needs a non-empty finite 1-D vector; got shape {v.shape}.")
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    rho = np.flatnonzero(u - css / np.arange(1, v.size + 1) > 0)[-1]
    theta = css[rho] / (rho + 1)
    return np.maximum(v - theta, 0.0)


def simplex_grid(n_sources: int, *, divisions: int) -> np.ndarray:
    """Every mixture with weights in {0, 1/d, ..., 1} summing to 1 (simplex lattice); rows sum to 1."""
    check_interval("n_sources", n_sources, 1, None, caller="simplex_grid")
    check_interval("divisions", divisions, 1, None, caller="simplex_grid")
    rows = []
    for bars in combinations(range(divisions + n_sources - 1), n_sources - 1):
        edges = (-1, *bars, divisions + n_sources - 1)
        rows.append([edges[i + 1] - edges[i] - 1 for i in range(n_sources)])
    return np.asarray(rows, dtype=np.float64) / divisions
