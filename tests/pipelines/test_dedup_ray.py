"""Text dedup on Ray (exact, then fuzzy, as shuffles of Ray tasks) equals the in-process passes."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from curate import corpora
from curate.dedup.passes import TextDedup, text_duplicates
from curate.errors import ConfigError
from curate.hashing import content_hashes
from pipelines.dedup_ray import text_duplicates_ray
from pipelines.ray_executor import RayExecutor


def _docs(texts: list[str], prefix: str) -> pl.DataFrame:
    frame = pl.DataFrame({"doc_id": [f"{prefix}{i:04d}" for i in range(len(texts))], "text": texts})
    return frame.with_columns(
        content_hash=pl.Series(content_hashes(frame["text"].to_arrow()), dtype=pl.Binary)
    )


@pytest.mark.ray
@pytest.mark.parametrize(("exact", "fuzzy"), [(True, True), (False, True), (True, False)])
def test_ray_equals_local(tmp_path: Path, ray_runtime: None, exact: bool, fuzzy: bool) -> None:
    """Same DEDUP rows (sorted by doc_id) from Ray as in-process, with natural near-copies, planted
    near-copies, exact copies (some of them near-copies of others too), empty and short texts."""
    news = corpora.bbc_news(300, seed=8)["text"].to_list()
    texts = [*news, *(t + " Reporting by staff." for t in news[:15]), *news[10:20], "", "short"]
    docs = _docs(texts, "n")
    for i, part in enumerate((docs[:170], docs[170:])):  # two input files
        part.write_parquet(tmp_path / f"docs-{i}.parquet")
    params = TextDedup(exact=exact, fuzzy=fuzzy)
    executor = RayExecutor(batch_size=64)
    rows = text_duplicates_ray(
        sorted(tmp_path.glob("docs-*.parquet")), tmp_path / "out", params, executor=executor, num_partitions=3
    )
    got = pl.read_parquet(tmp_path / "out" / "part-*.parquet").sort("doc_id")
    expected = text_duplicates(docs, params)
    assert rows == docs.height
    kinds = set(expected["dup_kind"].drop_nulls().to_list())
    assert kinds == {k for k, on in (("exact", exact), ("fuzzy", fuzzy)) if on}
    assert_frame_equal(got, expected)
    assert executor.take_usage()["tasks"] > 0


@pytest.mark.ray
def test_ray_single_partition_and_no_pairs(tmp_path: Path, ray_runtime: None) -> None:
    """One partition, distinct paragraphs (no pair survives): every doc kept, one part file, none missing."""
    texts = corpora.sotu_paragraphs(60, seed=2)["text"].unique().to_list()
    docs = _docs(texts, "s")
    docs.write_parquet(tmp_path / "docs.parquet")
    expected = text_duplicates(docs, TextDedup())
    assert expected["dup_of"].null_count() == docs.height  # the independent path finds no pair either
    rows = text_duplicates_ray(
        [tmp_path / "docs.parquet"],
        tmp_path / "out",
        TextDedup(),
        executor=RayExecutor(batch_size=16),
        num_partitions=1,
    )
    got = pl.read_parquet(tmp_path / "out" / "part-*.parquet")
    assert rows == docs.height
    assert len(list((tmp_path / "out").glob("part-*.parquet"))) == 1
    assert_frame_equal(got, expected)


def test_bad_params_are_refused_before_ray(tmp_path: Path) -> None:
    """Parameters are checked before Ray is touched."""
    with pytest.raises(ConfigError, match=r"'threshold' parameter of TextDedup\(\)"):
        TextDedup(threshold=1.2)
    with pytest.raises(ConfigError, match=r"'num_partitions' parameter of text_duplicates_ray\(\)"):
        text_duplicates_ray(
            [tmp_path / "x.parquet"], tmp_path / "out", TextDedup(), executor=RayExecutor(), num_partitions=0
        )
