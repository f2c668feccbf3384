"""Semantic dedup, SemDeDup (Abbas et al. 2023, "SemDeDup: Data-efficient learning at web-scale through
semantic deduplication", sec. 3): spherical k-means on L2-normalised embeddings; inside each cluster, walk the
documents in doc_id order and mark one a duplicate of the most similar earlier-kept document when their cosine
exceeds 1 - eps.

Default eps = 0.05 (cosine > 0.95). Abbas et al. sweep eps in roughly [0.0005, 0.3] and find that small eps
removes near-copies without hurting (larger eps trades data for compute). For sentence embeddings (MiniLM, its
static distillation) lightly edited copies and reformatted paragraphs sit at cosine ~0.96-1.0, while distinct
paragraphs on one topic rarely pass 0.9, so 0.05 removes copies, not topics; raise it to prune harder.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from curate._validation import check_embeddings, check_interval
from curate.dedup.table import DEDUP_COLUMNS
from curate.errors import ConfigError, InputError

DEFAULT_EPS = 0.05


def _greedy_within(vectors: np.ndarray, *, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """For rows in order: (is_dup, index of the most similar earlier kept row, -1 when kept)."""
    m = len(vectors)
    sim = vectors @ vectors.T
    kept = np.zeros(m, bool)
    dup_of = np.full(m, -1, np.int64)
    for j in range(m):
        if j and kept[:j].any():
            cand = np.where(kept[:j], sim[j, :j], -np.inf)
            best = int(np.argmax(cand))
            if cand[best] > 1.0 - eps:
                dup_of[j] = best
                continue
        kept[j] = True
    return dup_of >= 0, dup_of


def semantic_duplicates(
    doc_ids: Sequence[str] | pl.Series,
    embeddings: np.ndarray,
    *,
    eps: float = DEFAULT_EPS,
    n_clusters: int | None = None,
    seed: int = 0,
) -> pl.DataFrame:
    """DEDUP table (dup_kind "semantic") in `doc_ids` order; n_clusters defaults to round(sqrt(n)).

    Deterministic for a seed: faiss spherical k-means (seeded), then doc_id order inside each cluster.
    """
    check_interval("eps", eps, 0.0, 2.0, caller="semantic_duplicates", closed="neither")
    ids = pl.Series("doc_id", list(doc_ids), dtype=pl.String)
    x = check_embeddings(embeddings, what="semantic_duplicates() embeddings", min_rows=0)
    if len(x) != ids.len():
        raise InputError(f"semantic_duplicates() got {ids.len()} doc_ids but {len(x)} embedding rows.")
    if ids.null_count() or ids.is_duplicated().any():
        raise InputError("semantic_duplicates() input: 'doc_id' must be unique and non-null.")
    n = len(x)
    k = round(np.sqrt(n)) if n_clusters is None else n_clusters
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ConfigError(
            "The 'n_clusters' parameter of semantic_duplicates() must be an int >= 1. "
            f"Got {n_clusters!r} instead."
        )
    target = np.full(n, -1, np.int64)  # row of the kept doc each row duplicates; -1 when kept
    if n:
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
        labels = spherical_kmeans_labels(x, n_clusters=min(k, n), seed=seed)
        order = np.lexsort((ids.to_numpy(), labels))  # by cluster, then doc_id
        for members in np.split(order, np.flatnonzero(np.diff(labels[order])) + 1):
            is_dup, best = _greedy_within(x[members], eps=eps)
            target[members[is_dup]] = members[best[is_dup]]
    frame = pl.DataFrame({"doc_id": ids, "t": target}).with_columns(
        dup_of=pl.when(pl.col("t") >= 0).then(pl.col("doc_id").gather(pl.col("t").clip(lower_bound=0)))
    )
    kept_with_dups = frame["dup_of"].drop_nulls().unique().implode()
    return frame.select(
        "doc_id",
        "dup_of",
        dup_kind=pl.when(pl.col("t") >= 0).then(pl.lit("semantic")),
        cluster_id=pl.coalesce("dup_of", pl.when(pl.col("doc_id").is_in(kept_with_dups)).then("doc_id")),
    ).cast(DEDUP_COLUMNS)


def spherical_kmeans_labels(x: np.ndarray, *, n_clusters: int, seed: int = 0) -> np.ndarray:
    """Cluster of each L2-normalised row: faiss spherical k-means (20 iterations, seeded), max cosine."""
    import faiss

    km = faiss.Kmeans(
        x.shape[1], n_clusters, niter=20, seed=seed, spherical=True, verbose=False, min_points_per_centroid=1
    )
    km.train(np.ascontiguousarray(x, dtype=np.float32))
    _, label = km.index.search(np.ascontiguousarray(x, dtype=np.float32), 1)
    return label[:, 0].astype(np.int64)
