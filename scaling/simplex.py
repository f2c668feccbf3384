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
