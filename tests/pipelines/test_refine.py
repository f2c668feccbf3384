"""Candidates near the law's optimum: hand-worked mixtures."""

from __future__ import annotations

import numpy as np

from pipelines.refine import candidates, neighbours


def test_candidates_sharpen_cut_and_blend_the_law_optimum() -> None:
    """The law's optimum, its square and fourth power, its top-2 (top-3 equals it here), the design mixture
    and the halfway blend; duplicates dropped; every row on the simplex."""
    law = np.array([0.5, 0.3, 0.2])
    best = np.array([[0.0, 0.0, 1.0]])
    labels, grid = candidates(law, best)
    assert labels == [
        "law optimum",
        "law optimum ^2",
        "law optimum ^4",
        "law optimum, top 2",
        "design mixture #1",
        "blend with design #1",
    ]
    np.testing.assert_allclose(grid[1], np.array([0.25, 0.09, 0.04]) / 0.38)
    np.testing.assert_allclose(grid[3], [0.625, 0.375, 0.0])
    np.testing.assert_allclose(grid[5], [0.25, 0.15, 0.6])
    np.testing.assert_allclose(grid.sum(axis=1), 1.0)


def test_neighbours_drop_and_boost_each_source() -> None:
    """Around (0.6, 0.4, 0): drop a, drop b, and move 0.15 of the weight to each source in turn."""
    labels, grid = neighbours(np.array([0.6, 0.4, 0.0]), ["a", "b", "c"])
    assert labels == ["without a", "more a", "without b", "more b", "more c"]
    np.testing.assert_allclose(grid[0], [0.0, 1.0, 0.0])
    np.testing.assert_allclose(grid[1], [0.66, 0.34, 0.0])
    np.testing.assert_allclose(grid[4], [0.51, 0.34, 0.15])
