"""RayExecutor runs the same stages and ingest tasks as LocalExecutor and produces the same rows."""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from polars.testing import assert_frame_equal

from curate.errors import StageError, UnreadableFileWarning
from curate.hashing import JSONValue
from curate.ingest import ingest_sources
from curate.io import parquet_files
from curate.stages import Executor, LocalExecutor, StageOutput, run_stage


@dataclass(kw_only=True)
class CharCount:
    """A stateless test stage: doc_id and the length of its text in characters, plus an offset."""

    name: ClassVar[str] = "char_count"
    version: ClassVar[int] = 1
    input_columns: ClassVar[tuple[str, ...]] = ("doc_id", "text")
    speed_only: ClassVar[frozenset[str]] = frozenset()
    holds_model: ClassVar[bool] = False
    offset: int = 0

    def get_params(self) -> dict[str, JSONValue]:
        return {"offset": self.offset}

    def output_schema(self) -> pa.Schema:
        return pa.schema([("doc_id", pa.string()), ("n", pa.int64())])

    def __call__(self, batch: pa.Table) -> pa.Table:
        n = pc.add(pc.utf8_length(batch["text"]).cast(pa.int64()), self.offset)
        return pa.table({"doc_id": batch["doc_id"], "n": n}, schema=self.output_schema())


@dataclass(kw_only=True)
class ModelCharCount(CharCount):
    """The same stage flagged as model-holding, so Ray runs it in an actor pool."""

    name: ClassVar[str] = "char_count_actor"
    holds_model: ClassVar[bool] = True


@dataclass(kw_only=True)
class DropsRows(CharCount):
    """A broken stage that drops the last row of every batch."""

    name: ClassVar[str] = "drops_rows"

    def __call__(self, batch: pa.Table) -> pa.Table:
        return super().__call__(batch).slice(0, max(batch.num_rows - 1, 0))


@pytest.mark.parametrize("stage_type", [CharCount, ModelCharCount])
def test_map_batches_matches_an_independent_count(
    executor: Executor, docs_input: StageOutput, tmp_path: Path, stage_type: type, wiki_docs: pl.DataFrame
) -> None:
    """Tasks and actor pools write one row per input row, equal to Python's len(text) + offset."""
    out = run_stage(stage_type(offset=3), docs_input, tmp_path, executor=executor)
    got = out.scan().collect().sort("doc_id")
    want = wiki_docs.select(pl.col("id").alias("doc_id"), (pl.col("text").str.len_chars() + 3).alias("n"))
    assert_frame_equal(got, want.sort("doc_id"), check_dtypes=False)
    assert out.info["rows_in"] == out.info["rows_out"] == 300
    assert all(p.name.startswith("part-") for p in out.files)


def test_a_stage_that_drops_rows_commits_nothing(
    executor: Executor, docs_input: StageOutput, tmp_path: Path
) -> None:
    """A stage breaking the row contract raises StageError and leaves no committed folder."""
    with pytest.raises(StageError, match="drops_rows"):
        run_stage(DropsRows(), docs_input, tmp_path, executor=executor)
    assert not [p for p in (tmp_path / "drops_rows").glob("*") if not p.name.startswith(".")]


def test_ray_ingest_equals_local_ingest(tmp_path: Path, wiki_docs: pl.DataFrame, ray_runtime: None) -> None:
    """Ingest on Ray writes the same documents, rejects and counts as in-process ingest."""
    from pipelines.ray_executor import RayExecutor

    src = tmp_path / "src"
    (src / "txt").mkdir(parents=True)
    rows = wiki_docs.select("text", "label").to_dicts()
    lines = [json.dumps(r).encode() for r in rows[:150]] + [b"{broken", b'{"text": 3}', b'{"label": "x"}']
    (src / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (src / "b.jsonl.gz").write_bytes(gzip.compress(b"\n".join(lines[150:] + lines[:100]), mtime=0)[:-30])
    for i, r in enumerate(rows[150:]):
        (src / "txt" / f"{i:03d}.txt").write_text(r["text"])
    (src / "bad.parquet").write_bytes(b"not parquet")
    sources = {"mixed": str(src), "again": str(src / "*.jsonl")}
    out = {}
    for name, ex in (("local", LocalExecutor()), ("ray", RayExecutor(batch_size=64))):
        with pytest.warns(UnreadableFileWarning):
            report = ingest_sources(sources, tmp_path / name, label_field="label", executor=ex)
        docs = pl.read_parquet([str(p) for p in parquet_files(report.path)]).sort("doc_id")
        rejects = pl.read_parquet(str(report.path / "rejects")).sort("source", "origin")
        out[name] = (report, docs, rejects)
    (lr, ld, lx), (rr, rd, rx) = out["local"], out["ray"]
    assert lr.key == rr.key
    assert_frame_equal(ld, rd)
    assert_frame_equal(lx, rx)
    assert_frame_equal(lr.sources, rr.sources)
    assert ld.height == 150 + 150 + 150 + ld.filter(pl.col("origin").str.starts_with("b.jsonl.gz")).height
    assert set(lx["reason"]) == {
        "bad_json",
        "not_string",
        "missing_field",
        "truncated_file",
        "unreadable_file",
    }


RUNTIME_CHECK = """
import ray
from curate.config import parse_config
from curate.stages import LocalExecutor
from pipelines.runner import executor_for

ray_keys = {"num_cpus": 2, "actors": 3, "cpus_per_actor": 2, "num_gpus": 0.5, "max_tasks": 7}
cfg = parse_config({"sources": {"a": "x"}, "ray": ray_keys})
with executor_for(cfg, address=None, local=False) as ex:
    assert ray.is_initialized()
    assert (ex.actors, ex.cpus_per_actor, ex.num_gpus, ex.max_tasks) == (3, 2, 0.5, 7)
    assert ex.describe()["cpus"] == 2
assert not ray.is_initialized()
with executor_for(cfg, address=None, local=True) as local:
    assert isinstance(local, LocalExecutor) and not ray.is_initialized()
print("ok")
"""


def test_ray_settings_reach_the_executor_and_an_embedded_runtime_stops() -> None:
    """[ray] actors, cpus_per_actor, num_gpus and max_tasks reach the RayExecutor; a runtime that
    `executor_for` started itself is shut down when it returns (checked in a fresh process)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", RUNTIME_CHECK], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and done.stdout.strip().endswith("ok"), done.stderr[-2000:]
