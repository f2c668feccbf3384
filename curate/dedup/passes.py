"""The dedup passes in order, in-process: exact, then fuzzy on what exact left, then semantic on embeddings.

Each pass marks only documents the earlier ones left unmarked (the first kind that marks a doc wins), so
exact copies never reach the LSH buckets. Tables have one row per document (schema.DEDUP); nothing is
deleted. The pipeline's dedup steps call these on one process, or `pipelines.dedup_ray` on Ray (equal
output, tested); `dedup_summary` counts what a table marked per source.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from curate._validation import check_columns
from curate.dedup.exact import mark_exact
from curate.dedup.fuzzy import check_fuzzy_params, fuzzy_duplicates
from curate.dedup.minhash import Shingle
from curate.dedup.semantic import DEFAULT_EPS, semantic_duplicates
from curate.dedup.table import DEDUP_COLUMNS, combine_duplicates
from curate.errors import InputError
from curate.hashing import JSONValue


@dataclass(frozen=True, kw_only=True)
class TextDedup:
    """Parameters of the text passes: which run, the fuzzy Jaccard cut and the MinHash/LSH scheme."""

    exact: bool = True
    fuzzy: bool = True
    threshold: float = 0.8
    num_perm: int = 128
    ngram: int = 5
    shingle: Shingle = "word"
    false_negative_weight: float = 0.8
    seed: int = 0

    def __post_init__(self) -> None:
        check_fuzzy_params(
            threshold=self.threshold,
            num_perm=self.num_perm,
            ngram=self.ngram,
            shingle=self.shingle,
            verify="signature",
            caller="TextDedup",
        )

    def params(self) -> dict[str, JSONValue]:
        """The fields as the step's key parameters."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def unmarked(doc_ids: pl.Series) -> pl.DataFrame:
    """A DEDUP table that marks nothing."""
    return doc_ids.to_frame("doc_id").select(
        "doc_id", *(pl.lit(None, pl.String).alias(c) for c in ("dup_of", "dup_kind", "cluster_id"))
    )


def text_duplicates(docs: pl.DataFrame, params: TextDedup) -> pl.DataFrame:
    """DEDUP table of `docs` (doc_id, text, content_hash), sorted by doc_id: exact, then fuzzy."""
    check_columns(docs, {"doc_id": pl.String, "text": pl.String, "content_hash": pl.Binary}, what="documents")
    todo = docs.sort("doc_id")
    tables = [unmarked(todo["doc_id"])]
    if params.exact:
        tables.append(mark_exact(todo))
        todo = todo.join(tables[-1].filter(pl.col("dup_of").is_not_null()), on="doc_id", how="anti")
    if params.fuzzy:
        tables.append(
            fuzzy_duplicates(
                todo.select("doc_id", "text"),
                threshold=params.threshold,
                num_perm=params.num_perm,
                ngram=params.ngram,
                shingle=params.shingle,
                seed=params.seed,
                false_negative_weight=params.false_negative_weight,
            )
        )
    return combine_duplicates(*tables).cast(DEDUP_COLUMNS)


def add_semantic(
    table: pl.DataFrame, doc_ids: pl.Series, vectors: np.ndarray, *, eps: float = DEFAULT_EPS, seed: int = 0
) -> pl.DataFrame:
    """`table` with SemDeDup marks among `doc_ids` (unmarked documents with their embedding rows)."""
    if len(doc_ids) != len(vectors):
        raise InputError(f"add_semantic got {len(doc_ids)} doc_ids but {len(vectors)} embedding rows.")
    marks = semantic_duplicates(doc_ids, vectors, eps=eps, seed=seed)
    return combine_duplicates(table, marks).cast(DEDUP_COLUMNS)


def dedup_summary(table: pl.LazyFrame, docs: pl.LazyFrame) -> pl.DataFrame:
    """Per source: n_docs, n_exact, n_fuzzy, n_semantic, n_target (copies of target documents, exact or
    near), n_clusters, bytes_removed."""
    joined = docs.select("doc_id", "source", n_bytes=pl.col("text").str.len_bytes()).join(
        table, on="doc_id", how="left"
    )
    kind = pl.col("dup_kind")
    counts = ("n_docs", "n_exact", "n_fuzzy", "n_semantic", "n_target", "n_clusters", "bytes_removed")
    return (
        joined.group_by("source")
        .agg(
            n_docs=pl.len(),
            n_exact=(kind == "exact").sum(),
            n_fuzzy=(kind == "fuzzy").sum(),
            n_semantic=(kind == "semantic").sum(),
            n_target=kind.is_in(["target_exact", "target_near"]).sum(),
            n_clusters=pl.col("cluster_id").drop_nulls().n_unique(),
            bytes_removed=pl.col("n_bytes").filter(kind.is_not_null()).sum(),
        )
        .sort("source")
        .collect()
        .cast(dict.fromkeys(counts, pl.Int64))
    )
