"""Fuzzy dedup on Ray Data equals the in-process result on the same documents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from curate import corpora
from curate.dedup.fuzzy import fuzzy_duplicates
from curate.errors import ConfigError
from pipelines.dedup_ray import fuzzy_duplicates_ray


@pytest.mark.ray
def test_ray_equals_local(tmp_path: Path, ray_runtime: None) -> None:
    """Same DEDUP rows (sorted by doc_id) from Ray as in-process, with natural and planted near-copies."""
    news = corpora.bbc_news(400, seed=8)["text"].to_list()
    texts = [*news, *(t + " Reporting by staff." for t in news[:15]), "", "short"]
    docs = pl.DataFrame({"doc_id": [f"n{i:04d}" for i in range(len(texts))], "text": texts})
    for i, part in enumerate((docs[:200], docs[200:])):  # two input files
        part.write_parquet(tmp_path / f"docs-{i}.parquet")
    out = tmp_path / "out"
    rows = fuzzy_duplicates_ray(
        sorted(tmp_path.glob("docs-*.parquet")), out, batch_size=128, num_partitions=2
    )
    got = pl.read_parquet(out / "part-*.parquet").sort("doc_id")
    expected = fuzzy_duplicates(docs).sort("doc_id")
    assert rows == docs.height
    assert expected.filter(pl.col("dup_of").is_not_null()).height >= 15
    assert_frame_equal(got, expected)


@pytest.mark.ray
def test_ray_single_partition_and_no_pairs(tmp_path: Path, ray_runtime: None) -> None:
    """One partition, distinct paragraphs (no pair survives): every doc kept, one part file, none missing."""
    texts = corpora.sotu_paragraphs(60, seed=2)["text"].unique().to_list()
    docs = pl.DataFrame({"doc_id": [f"s{i:03d}" for i in range(len(texts))], "text": texts})
    docs.write_parquet(tmp_path / "docs.parquet")
    expected = fuzzy_duplicates(docs).sort("doc_id")
    assert expected["dup_of"].null_count() == docs.height  # the independent path finds no pair either
    rows = fuzzy_duplicates_ray(
        [tmp_path / "docs.parquet"], tmp_path / "out", batch_size=16, num_partitions=1
    )
    got = pl.read_parquet(tmp_path / "out" / "part-*.parquet")
    assert rows == docs.height
    assert len(list((tmp_path / "out").glob("part-*.parquet"))) == 1
    assert_frame_equal(got, expected)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"threshold": 1.2}, r"'threshold' parameter of fuzzy_duplicates_ray\(\)"),
        ({"num_partitions": 0}, r"'num_partitions' parameter of fuzzy_duplicates_ray\(\)"),
        ({"batch_size": 1}, r"'batch_size' parameter of fuzzy_duplicates_ray\(\)"),
    ],
)
def test_ray_rejects_bad_params(tmp_path: Path, kwargs: dict[str, Any], match: str) -> None:
    """Parameters are checked before Ray is touched."""
    with pytest.raises(ConfigError, match=match):
        fuzzy_duplicates_ray([tmp_path / "x.parquet"], tmp_path / "out", **kwargs)
