"""Coverage of quality unions: how much nearer the target's documents are to a union of buckets than to its
nearest bucket, beyond what the union's size alone explains, in the embedding space.

Coverage of the target by a cloud X: C(X) = mean over target rows t of min_{x in X} ½‖t − x‖² (how far each
target document is from the nearest training document). Every bucket is one cloud of m rows (a fixed-seed
sample, m = the smallest bucket up to `points`); a union U of buckets with size shares w_i is measured on
clouds of the same m rows drawn from its buckets in proportion to w_i (several draws, averaged), so a union
of buckets drawn from one distribution has, in expectation, the coverage of any of its buckets. The gap
    g(U) = max(0, 1 − C(U) / min_i C(B_i))
is how much nearer the target the union is than its nearest bucket: 0 for buckets of one distribution
(where Goyal et al.'s union law holds) and when a bucket far from the target joins a near one (the union
has fewer near rows than the near bucket); large when the buckets each reach a different part of the target.
`scaling.qqt` scales g by a fitted coefficient.

Other forms measured (bench/qqt_real.py; tests/scaling/test_coverage.py): the relative Jensen gap of the
debiased Sinkhorn divergence S (`scaling.ot`), 1 − S(U) / sum_i w_i S(B_i), credits a far bucket joined to a
near one as much as a covering union, so a law scaled by it prefers off-target buckets; S against its
nearest bucket, 1 − S(U) / min_i S(B_i), and the target mass reached in k-means cells of the target gave
the bench's rule unions no better fit than this form (within their noise) at more cost.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import polars as pl

from curate._validation import check_embeddings, check_interval
from curate.errors import InputError

COVERAGE_SCHEMA = {"union": pl.String, "n_pools": pl.Int64, "gap": pl.Float64, "gap_sd": pl.Float64}


def union_key(pools: Iterable[str]) -> str:
    """The name of a union of pools, independent of their order."""
    return "+".join(sorted(pools))


def _shares(m: int, weights: np.ndarray) -> np.ndarray:
    """m rows split by `weights` (largest remainder, every member at least one row)."""
    raw = weights / weights.sum() * m
    counts = np.maximum(1, np.floor(raw).astype(int))
    while counts.sum() > m:
        counts[np.argmax(counts - raw)] -= 1
    for i in np.argsort(-(raw - counts))[: m - counts.sum()]:
        counts[i] += 1
    return counts


def _half_sq_distances(t: np.ndarray, x: np.ndarray) -> np.ndarray:
    """½‖t_i − x_j‖² for every pair (float64, clipped at 0 against rounding)."""
    d = 0.5 * (t * t).sum(axis=1)[:, None] + 0.5 * (x * x).sum(axis=1)[None, :] - t @ x.T
    return np.maximum(d, 0.0)


def coverage_gaps(
    clouds: Mapping[str, np.ndarray],
    target: np.ndarray,
    sizes: Mapping[str, int],
    unions: Iterable[Sequence[str]],
    *,
    points: int = 200,
    target_points: int = 1000,
    draws: int = 8,
    seed: int = 0,
) -> pl.DataFrame:
    """union (`union_key`), n_pools, gap (g of the module doc) and gap_sd (its spread over the draws) of
    every union of pools in `clouds` (embeddings per pool; `sizes`: their document counts, the shares w_i)."""
    check_interval("points", points, 2, None, caller="coverage_gaps")
    check_interval("draws", draws, 1, None, caller="coverage_gaps")
    names = sorted(clouds)
    wanted = [tuple(sorted(u)) for u in unions]
    unknown = sorted({p for u in wanted for p in u} - set(names))
    if unknown or any(len(u) < 2 or len(set(u)) != len(u) for u in wanted):
        raise InputError(f"coverage_gaps: unions must be >= 2 distinct pools among {names}; got {wanted}.")
    if not wanted:
        return pl.DataFrame(schema=COVERAGE_SCHEMA)
    m = min(points, *(len(clouds[n]) for n in names))
    if m < 2:
        raise InputError(f"coverage_gaps: every pool needs >= 2 embedded rows; the smallest has {m}.")
    rng = np.random.default_rng(seed)
    t = check_embeddings(target, what="coverage_gaps target").astype(np.float64)
    t = t[np.sort(rng.choice(len(t), size=target_points, replace=False))] if len(t) > target_points else t
    near = {}  # per pool: (target rows, m) half squared distances to its m sampled rows
    for n in names:
        x = check_embeddings(clouds[n], what=f"coverage_gaps pool {n!r}", dim=t.shape[1]).astype(np.float64)
        near[n] = _half_sq_distances(t, x[rng.choice(len(x), size=m, replace=False)])
    single = {n: float(near[n].min(axis=1).mean()) for n in names}
    out = []
    for members in wanted:
        counts = _shares(m, np.array([float(sizes[p]) for p in members]))
        values = []
        for _ in range(draws):
            parts = zip(members, counts, strict=True)
            columns = [near[p][:, rng.choice(m, size=c, replace=False)].min(axis=1) for p, c in parts]
            values.append(float(np.min(columns, axis=0).mean()))
        nearest = min(single[p] for p in members)
        gaps = 1.0 - np.array(values) / nearest if nearest > 0 else np.zeros(draws)
        out.append(
            {
                "union": union_key(members),
                "n_pools": len(members),
                "gap": max(0.0, float(gaps.mean())),
                "gap_sd": float(gaps.std(ddof=1)) if draws > 1 else float("nan"),
            }
        )
    return pl.DataFrame(out, schema=COVERAGE_SCHEMA)
