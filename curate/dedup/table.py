"""The dedup side table (schema.DEDUP): duplicate clusters from pairs, and the merge of several methods."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Literal

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

DupKind = Literal["exact", "fuzzy", "semantic", "target_exact", "target_near"]
DEDUP_COLUMNS = pl.Schema({c: pl.String() for c in ("doc_id", "dup_of", "dup_kind", "cluster_id")})


def pair_clusters(a: pl.Series, b: pl.Series) -> pl.DataFrame:
    """(doc_id, kept) for every doc in a pair (a[i], b[i]): connected components, kept = smallest doc_id."""
    ids = pl.concat([a, b]).unique().sort()
    n = ids.len()
    rows, cols = ids.search_sorted(a).to_numpy(), ids.search_sorted(b).to_numpy()
    graph = coo_matrix((np.ones(len(rows), np.int8), (rows, cols)), shape=(n, n))
    _, label = connected_components(graph, directed=False)
    frame = pl.DataFrame({"doc_id": ids, "label": label})  # ids sorted: the first of a label is its smallest
    return frame.with_columns(kept=pl.col("doc_id").first().over("label")).drop("label")


def dedup_rows(doc_ids: pl.Series, clusters: pl.DataFrame, *, kind: DupKind) -> pl.DataFrame:
    """DEDUP rows in `doc_ids` order from `pair_clusters`; cluster_id = kept doc_id, null for singletons."""
    out = doc_ids.to_frame("doc_id").join(clusters, on="doc_id", how="left", maintain_order="left")
    dup = pl.col("kept").is_not_null() & (pl.col("doc_id") != pl.col("kept"))
    return out.select(
        "doc_id",
        dup_of=pl.when(dup).then("kept"),
        dup_kind=pl.when(dup).then(pl.lit(kind)),
        cluster_id=pl.col("kept"),
    ).cast(DEDUP_COLUMNS)


def combine_duplicates(*tables: pl.DataFrame) -> pl.DataFrame:
    """Merge DEDUP tables over the same doc_ids (order of the first): the first table that marks a doc wins.

    cluster_id comes from the table that marked the doc; a doc no table marks keeps the first non-null one.
    """
    first, *rest = tables
    out = first.select(list(DEDUP_COLUMNS)).cast(DEDUP_COLUMNS)
    for i, other in enumerate(rest):
        o = (
            other.select(list(DEDUP_COLUMNS))
            .cast(DEDUP_COLUMNS)
            .rename({c: f"{c}_{i}" for c in DEDUP_COLUMNS if c != "doc_id"})
        )
        out = out.join(o, on="doc_id", how="left", maintain_order="left")
        marked = pl.col("dup_of").is_not_null()
        out = out.select(
            "doc_id",
            dup_of=pl.when(marked).then("dup_of").otherwise(f"dup_of_{i}"),
            dup_kind=pl.when(marked).then("dup_kind").otherwise(f"dup_kind_{i}"),
            cluster_id=pl.when(marked)
            .then("cluster_id")
            .when(pl.col(f"dup_of_{i}").is_not_null())
            .then(f"cluster_id_{i}")
            .otherwise(pl.coalesce("cluster_id", f"cluster_id_{i}")),
        )
    return out


@cache
def _marked_ids(files: tuple[str, ...]) -> pa.Array:
    frame = pl.scan_parquet(list(files)).filter(pl.col("dup_of").is_not_null()).select("doc_id").collect()
    return frame["doc_id"].to_arrow()


@dataclass(frozen=True)
class SkipMarked:
    """Row filter for executors: drops the documents that a DEDUP table's part `files` mark as duplicates.

    The marked ids are read once per process (they are the duplicates, a fraction of the corpus).
    """

    files: tuple[str, ...]

    def __call__(self, batch: pa.Table) -> pa.Table:
        if not self.files:
            return batch
        return batch.filter(pc.invert(pc.is_in(batch.column("doc_id"), value_set=_marked_ids(self.files))))
