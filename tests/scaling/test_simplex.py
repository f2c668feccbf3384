"""The mixture design: linear in the number of sources, on the simplex, sparse, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from scaling.simplex import mixture_design


@pytest.mark.parametrize("m", [2, 5, 22])
def test_design_grows_linearly_and_holds_the_anchors(m: int) -> None:
    """k x m random rows plus the m vertices, uniform and proportional: at most (k + 1) m + 2 distinct rows,
    each on the simplex, the random ones on 2 to 4 sources."""
    proportional = np.arange(1.0, m + 1)
    d = mixture_design(m, per_source=6, proportional=proportional, seed=1)
    assert len(d) <= 7 * m + 2 and len(d) >= 6 * m  # linear in m (duplicates of tiny m dropped)
    np.testing.assert_allclose(d.sum(axis=1), 1.0)
    assert (d >= 0).all()
    np.testing.assert_allclose(d[:m], np.eye(m))
    np.testing.assert_allclose(d[m], np.full(m, 1 / m))
    np.testing.assert_allclose(d[m + 1], proportional / proportional.sum())
    support = (d[m + 2 :] > 0).sum(axis=1)
    assert support.min() >= 2 and support.max() <= min(m, 4)
    assert len(np.unique(np.round(d, 9), axis=0)) == len(d)
    np.testing.assert_array_equal(d, mixture_design(m, per_source=6, proportional=proportional, seed=1))
