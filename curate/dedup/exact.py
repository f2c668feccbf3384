"""Exact duplicates: documents whose normalised text has one content hash; the smallest doc_id is kept."""

from __future__ import annotations

import polars as pl

from curate._validation import check_columns


def kept_doc_id() -> pl.Expr:
    """The doc_id an exact-duplicate group keeps: the smallest doc_id with the row's content_hash."""
    return pl.col("doc_id").min().over("content_hash")


def mark_exact(docs: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """DEDUP rows for every document, sorted by doc_id: dup_of/cluster_id = smallest doc_id of its hash group.

    `dup_of` and `dup_kind` ("exact") are null for the kept document; `cluster_id` is null for singletons.
    """
    check_columns(docs, {"doc_id": pl.String, "content_hash": pl.Binary}, what="documents")
    keep, size = pl.col("_keep"), pl.col("_size")
    is_dup = pl.col("doc_id") != keep
    return (
        docs.lazy()
        .select("doc_id", "content_hash")
        .with_columns(
            kept_doc_id().alias("_keep"),
            pl.len().over("content_hash").alias("_size"),
        )
        .select(
            "doc_id",
            pl.when(is_dup).then(keep).alias("dup_of"),
            pl.when(is_dup).then(pl.lit("exact")).alias("dup_kind"),
            pl.when(size > 1).then(keep).alias("cluster_id"),
        )
        .sort("doc_id")
        .collect()
    )
