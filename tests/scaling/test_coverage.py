"""Coverage gaps of quality unions: ~0 for buckets of one distribution, large for buckets that each cover
one part of the target, order-free names, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from curate.errors import InputError
from scaling.coverage import coverage_gaps, union_key

DIM = 8


def cloud(rng: np.random.Generator, centre: float, n: int = 300) -> np.ndarray:
    """n points around (centre, 0, ..., 0), unit spread."""
    x = rng.standard_normal((n, DIM))
    x[:, 0] += centre
    return x


def test_buckets_of_one_distribution_have_no_gap() -> None:
    """Four random draws of one cloud against a target of that cloud: every union's gap is under 0.05,
    whatever its size (the equal-size draws remove the advantage of more rows)."""
    rng = np.random.default_rng(0)
    buckets = {f"b{i}": cloud(rng, 0.0) for i in range(4)}
    unions = [("b0", "b1"), ("b1", "b2", "b3"), ("b0", "b1", "b2", "b3")]
    gaps = coverage_gaps(buckets, cloud(rng, 0.0, 400), dict.fromkeys(buckets, 300), unions, points=150)
    assert gaps["union"].to_list() == ["b0+b1", "b1+b2+b3", "b0+b1+b2+b3"]
    assert (gaps["gap"] < 0.05).all()


def test_complementary_buckets_have_a_gap_and_off_target_ones_none() -> None:
    """Target = two clusters; buckets 'left' and 'right' each hold one of them, 'mixed' both, 'far' neither.
    The union of left and right reaches the whole target (gap > 0.5); joined to the mixed bucket (already a
    cover) neither left nor the off-target bucket brings the target nearer (gap 0)."""
    rng = np.random.default_rng(1)
    target = np.concatenate([cloud(rng, -4.0, 200), cloud(rng, 4.0, 200)])
    buckets = {
        "left": cloud(rng, -4.0),
        "right": cloud(rng, 4.0),
        "mixed": np.concatenate([cloud(rng, -4.0, 150), cloud(rng, 4.0, 150)]),
        "far": cloud(rng, 12.0),
    }
    unions = [("right", "left"), ("mixed", "left"), ("mixed", "far")]
    gaps = coverage_gaps(buckets, target, dict.fromkeys(buckets, 300), unions, points=150)
    gap = dict(gaps.select("union", "gap").iter_rows())
    assert gap["left+right"] > 0.5
    assert gap["left+mixed"] == 0.0 and gap["far+mixed"] == 0.0


def test_union_key_ignores_order() -> None:
    """One name per set of pools."""
    assert union_key(["b", "a", "c"]) == union_key(("c", "a", "b")) == "a+b+c"


def test_bad_unions_are_refused() -> None:
    """A union of one pool, a repeated or an unknown pool is an input error naming the pools."""
    rng = np.random.default_rng(2)
    buckets = {"a": cloud(rng, 0.0, 20), "b": cloud(rng, 0.0, 20)}
    for unions in ([("a",)], [("a", "a")], [("a", "z")]):
        with pytest.raises(InputError, match="unions must be >= 2 distinct pools"):
            coverage_gaps(buckets, cloud(rng, 0.0, 20), {"a": 20, "b": 20}, unions)
