"""Pipeline-test fixtures: a committed documents input, and a local two-node Ray cluster (head + one worker
node, 1 CPU each) shared by the cluster and fault tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from curate.stages import StageOutput, commit_step


@pytest.fixture(scope="module")
def docs_input(tmp_path_factory: pytest.TempPathFactory, wiki_docs: pl.DataFrame) -> StageOutput:
    """A committed documents-like input: 300 real docs (doc_id, text) in three part files."""
    work = tmp_path_factory.mktemp("docs")
    frame = wiki_docs.select(pl.col("id").alias("doc_id"), "text")

    def build(tmp: Path) -> dict:
        for i in range(3):
            pq.write_table(frame[i * 100 : (i + 1) * 100].to_arrow(), tmp / f"part-{i:05d}.parquet")
        return {"rows_out": frame.height}

    return commit_step(work, "docs", "k0", build, params={}, inputs=[])


@pytest.fixture(scope="session")
def local_ray_cluster() -> Iterator[object]:
    """`start_local_cluster(workers=1)`; every node process is killed at the end, pass or fail."""
    from pipelines.cluster import start_local_cluster

    cluster = start_local_cluster(workers=1, num_cpus=1)
    try:
        yield cluster
    finally:
        cluster.stop()
