"""LSH banding over MinHash signatures (Leskovec, Rajaraman & Ullman, Mining of Massive Datasets, ch. 3.4).

With b bands of r rows, two sets of Jaccard s share a band key with probability 1 - (1 - s^r)^b. `lsh_params`
picks (b, r) as datasketch's `MinHashLSH` does: minimise w_fp * integral_0^t P(s) ds + w_fn * integral_t^1
(1 - P(s)) ds over b * r <= num_perm. Candidates are then verified: band-key hash collisions cost time only.
"""

from __future__ import annotations

from functools import cache

import numpy as np
from scipy.integrate import quad

from curate.dedup.minhash import EMPTY, xxh32_words


@cache
def lsh_params(
    threshold: float,
    num_perm: int,
    *,
    false_positive_weight: float = 0.5,
    false_negative_weight: float = 0.5,
) -> tuple[int, int]:
    """(bands, rows) minimising the weighted false-positive + false-negative areas at `threshold`."""
    best, best_err = (0, 0), float("inf")
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp = quad(lambda s, b=b, r=r: 1 - (1 - s**r) ** b, 0.0, threshold)[0]
            fn = quad(lambda s, b=b, r=r: (1 - s**r) ** b, threshold, 1.0)[0]
            err = false_positive_weight * fp + false_negative_weight * fn
            if err < best_err:
                best, best_err = (b, r), err
    return best


def band_keys(signatures: np.ndarray, *, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64 key of each band: two seeded xxh32 of its `rows` signature values."""
    keys = np.empty((signatures.shape[0], bands), np.uint64)
    for band in range(bands):
        cols = [signatures[:, band * rows + j] for j in range(rows)]
        hi = xxh32_words(cols, seed=2 * band).astype(np.uint64)
        keys[:, band] = (hi << np.uint64(32)) | xxh32_words(cols, seed=2 * band + 1)
    return keys


def has_shingles(signatures: np.ndarray) -> np.ndarray:
    """Rows that are not the empty-text signature (those never match anything)."""
    return ~(signatures == EMPTY).all(axis=1)


def bucket_pairs(keys: np.ndarray, members: np.ndarray) -> np.ndarray:
    """All (i, j) pairs, i < j, of `members` sharing a value of `keys` (one band): an (m, 2) int64 array.

    Quadratic in a bucket's size; the dedup step removes exact copies first, so buckets stay small.
    """
    order = np.lexsort((members, keys))
    k, ids = keys[order], members[order]
    starts = np.flatnonzero(np.concatenate([[True], k[1:] != k[:-1]]))
    ends = np.append(starts[1:], k.size)
    sizes = ends - starts
    pos = np.flatnonzero(np.repeat(sizes >= 2, sizes))  # sorted positions inside buckets of two or more
    end_of = np.repeat(ends, sizes)[pos]
    out = []
    step = 1
    while pos.size:  # pair each position with the one `step` further on in its bucket
        keep = pos + step < end_of
        pos, end_of = pos[keep], end_of[keep]
        out.append(np.stack([ids[pos], ids[pos + step]], axis=1))
        step += 1
    return np.concatenate(out) if out else np.zeros((0, 2), np.int64)


def candidate_pairs(signatures: np.ndarray, *, bands: int, rows: int) -> np.ndarray:
    """Unique (i, j) row pairs, i < j, sharing at least one band key; rows without shingles are left out."""
    members = np.flatnonzero(has_shingles(signatures))
    keys = band_keys(signatures, bands=bands, rows=rows)[members]
    pairs = [bucket_pairs(keys[:, band], members) for band in range(bands)]
    return unique_pairs(np.concatenate(pairs))


def unique_pairs(pairs: np.ndarray) -> np.ndarray:
    """Distinct pairs sorted lexicographically."""
    if pairs.size == 0:
        return np.zeros((0, 2), np.int64)
    return np.unique(pairs.astype(np.int64), axis=0)


def signature_jaccard(signatures: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Estimated Jaccard of each pair: the share of equal signature positions."""
    out = np.empty(len(pairs), np.float64)
    for c0 in range(0, len(pairs), 65536):
        p = pairs[c0 : c0 + 65536]
        out[c0 : c0 + len(p)] = (signatures[p[:, 0]] == signatures[p[:, 1]]).mean(axis=1)
    return out
