"""Prototype pruning metric (Sorscher et al. 2022, "Beyond neural scaling laws": self-supervised prototypes).

Self-supervised prototypes: spherical k-means (faiss) on L2-normalised embeddings, then
`proto_dist = 1 - max_c cos(z, mu_c)`. Supervised prototypes: `class_proto_dist = 1 - cos(z, mu_y)` with
`mu_y` the normalised mean of the normalised embeddings of the example's own class. Larger = harder.

k-means is fitted on a seeded sample of at most `sample_size` rows (a global step with bounded memory);
every row is then assigned with an exact inner-product search, so scores cover all rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import faiss
import numpy as np
import polars as pl

from curate._validation import check_embeddings, check_interval
from curate.errors import ConfigError, InputError

MAX_DEFAULT_K = 1000
Labels = Sequence[Any] | np.ndarray | pl.Series  # one label per row; None = unknown


def default_k(n: int) -> int:
    """k chosen from data: round(sqrt(n / 2)) (Mardia's rule of thumb), clipped to [2, 1000] and to n."""
    return max(1, min(n, MAX_DEFAULT_K, max(2, round(math.sqrt(n / 2)))))


def normalize_rows(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32); all-zero rows stay zero (cosine 0 to everything)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.where(norms > 0, norms, 1.0)).astype(np.float32, copy=False)


def _known_labels(labels: Labels, n: int, *, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(mask of rows with a label, those labels as str); None/null means unknown."""
    values = labels.to_list() if isinstance(labels, pl.Series) else list(labels)
    if len(values) != n:
        raise InputError(f"{what} must hold {n} labels (None = unknown), one per row; got {len(values)}.")
    known = np.array([v is not None for v in values], dtype=bool)
    return known, np.array([str(v) for v in values if v is not None], dtype=str)


class PrototypeScorer:
    """Spherical k-means prototypes (faiss), plus class-mean prototypes when labels are given.

    Fitted attributes: `k_`, `centroids_` (k_, dim; unit rows), `classes_` and `class_centroids_` (only
    when fitted with labels; otherwise None), `n_fit_` (rows the k-means saw).
    """

    def __init__(
        self, *, k: int | None = None, sample_size: int = 100_000, n_iter: int = 20, seed: int = 0
    ) -> None:
        self.k = k
        self.sample_size = sample_size
        self.n_iter = n_iter
        self.seed = seed

    def fit(self, x: np.ndarray, *, labels: Labels | None = None) -> PrototypeScorer:
        """Fit k-means on a seeded sample of the non-zero rows of `x`; class means on all labelled rows."""
        check_interval("sample_size", self.sample_size, 1, None, caller="PrototypeScorer")
        check_interval("n_iter", self.n_iter, 1, None, caller="PrototypeScorer")
        x = check_embeddings(x, what="PrototypeScorer.fit x")
        norms = np.linalg.norm(x, axis=1)
        usable = np.flatnonzero(norms > 0)
        k = default_k(len(usable)) if self.k is None else self.k
        check_interval("k", k, 1, None, caller="PrototypeScorer")
        if len(usable) < k:
            raise ConfigError(
                f"The 'k' parameter of PrototypeScorer() must be at most the number of non-zero rows "
                f"({len(usable)}). Got {k} instead."
            )
        rng = np.random.default_rng(self.seed)
        if len(usable) > self.sample_size:
            usable = np.sort(rng.choice(usable, size=self.sample_size, replace=False))
        sample = np.ascontiguousarray(normalize_rows(x[usable]))
        km = faiss.Kmeans(
            x.shape[1],
            k,
            niter=self.n_iter,
            spherical=True,
            seed=self.seed,
            verbose=False,
            max_points_per_centroid=len(sample),  # our seeded sample is the only subsampling
            min_points_per_centroid=1,
        )
        km.train(sample)
        self.k_ = k
        self.n_fit_ = len(sample)
        self.centroids_ = normalize_rows(np.asarray(km.centroids, dtype=np.float32))
        self.classes_: np.ndarray | None = None
        self.class_centroids_: np.ndarray | None = None
        if labels is not None:
            known, ys = _known_labels(labels, x.shape[0], what="PrototypeScorer.fit labels")
            self.classes_ = np.unique(ys)
            rows = np.flatnonzero(known)
            means = [normalize_rows(x[rows[ys == c]]).mean(axis=0) for c in self.classes_]
            self.class_centroids_ = normalize_rows(np.stack(means).reshape(-1, x.shape[1]))
        return self

    def score(self, x: np.ndarray, *, labels: Labels | None = None) -> pl.DataFrame:
        """Frame of cluster_id (int32), proto_dist, class_proto_dist (float32; null where no known label)."""
        if not hasattr(self, "centroids_"):
            raise InputError("PrototypeScorer.score() needs a fitted scorer; call fit() first.")
        x = check_embeddings(x, what="PrototypeScorer.score x", dim=self.centroids_.shape[1], min_rows=0)
        # float64 arithmetic: the float32 results do not depend on the batch's shape or the BLAS threads, so
        # every executor writes the same bytes
        x64 = x.astype(np.float64)
        norms = np.sqrt(np.einsum("ij,ij->i", x64, x64))
        inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)  # cos = x.mu / |x|
        products = x64 @ self.centroids_.astype(np.float64).T
        best = np.argmax(products, axis=1)
        sims = products[np.arange(len(best)), best]
        class_dist = np.full(x.shape[0], np.nan, dtype=np.float32)
        if labels is not None and self.classes_ is not None and self.class_centroids_ is not None:
            known, ys = _known_labels(labels, x.shape[0], what="PrototypeScorer.score labels")
            pos = np.searchsorted(self.classes_, ys).clip(0, max(len(self.classes_) - 1, 0))
            seen = self.classes_[pos] == ys if len(self.classes_) else np.zeros(len(ys), dtype=bool)
            rows = np.flatnonzero(known)[seen]
            cos = np.einsum("ij,ij->i", x64[rows], self.class_centroids_[pos[seen]].astype(np.float64))
            class_dist[rows] = 1.0 - cos * inv[rows]
        return pl.DataFrame(
            {
                "cluster_id": best.astype(np.int32),
                "proto_dist": (1.0 - sims * inv).astype(np.float32),
                "class_proto_dist": pl.Series(class_dist).fill_nan(None),
            }
        )


def prototype_scores(
    x: np.ndarray,
    *,
    labels: Labels | None = None,
    k: int | None = None,
    sample_size: int = 100_000,
    seed: int = 0,
) -> pl.DataFrame:
    """Fit a PrototypeScorer on `x` and score the same rows (cluster_id, proto_dist, class_proto_dist)."""
    scorer = PrototypeScorer(k=k, sample_size=sample_size, seed=seed)
    return scorer.fit(x, labels=labels).score(x, labels=labels)
