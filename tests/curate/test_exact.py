"""Exact duplicate marking: one group per content hash, the smallest doc_id kept."""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from curate.dedup.exact import mark_exact
from curate.errors import SchemaError
from curate.hashing import content_hash


@pytest.fixture
def docs(wiki_docs: pl.DataFrame) -> pl.DataFrame:
    """120 real docs plus re-spaced copies of 20 of them and a third copy of 5, ids shuffled."""
    texts = wiki_docs["text"].head(120).to_list()
    copies = [t.replace(" ", "  ") + "\n" for t in texts[:20]] + texts[:5]
    all_texts = texts + copies
    ids = [f"d{(i * 37) % len(all_texts):04d}" for i in range(len(all_texts))]
    return pl.DataFrame(
        {"doc_id": ids, "content_hash": [content_hash(t) for t in all_texts]},
        schema={"doc_id": pl.String, "content_hash": pl.Binary},
    )


def test_matches_an_independent_group_by(docs: pl.DataFrame) -> None:
    """dup_of equals the smallest doc_id of the hash group from a plain group_by, for duplicates only."""
    out = mark_exact(docs)
    keep = docs.group_by("content_hash").agg(pl.col("doc_id").min().alias("keep"), pl.len().alias("size"))
    want = (
        docs.join(keep, on="content_hash")
        .select(
            "doc_id",
            pl.when(pl.col("doc_id") != pl.col("keep")).then(pl.col("keep")).alias("dup_of"),
            pl.when(pl.col("doc_id") != pl.col("keep")).then(pl.lit("exact")).alias("dup_kind"),
            pl.when(pl.col("size") > 1).then(pl.col("keep")).alias("cluster_id"),
        )
        .sort("doc_id")
    )
    assert_frame_equal(out, want)
    assert out["dup_kind"].drop_nulls().len() == 25
    assert out["cluster_id"].drop_nulls().len() == 45  # 20 groups: 15 pairs and 5 triples


def test_lazy_input_and_missing_columns(docs: pl.DataFrame) -> None:
    """A LazyFrame gives the same result; a frame without content_hash raises SchemaError naming it."""
    assert_frame_equal(mark_exact(docs.lazy()), mark_exact(docs))
    with pytest.raises(SchemaError, match="lacks column\\(s\\) content_hash"):
        mark_exact(docs.drop("content_hash"))
