"""Faults lose nothing: killed Ray worker, killed worker node, killed driver, full or read-only disk."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

import curate.io
from curate.api import read_documents
from curate.cli import main
from curate.errors import InputError, StageError
from curate.hashing import JSONValue
from curate.ingest import ingest_sources
from curate.io import parquet_files
from curate.stages import LocalExecutor, StageOutput, run_stage
from pipelines.cluster import LocalCluster

pytestmark = pytest.mark.ray


@dataclass(kw_only=True)
class ExitOnce:
    """Test stage: doc_id and text length; the first call anywhere kills its worker process (os._exit).

    The marker file records that the kill happened, so the retry computes normally.
    """

    name: ClassVar[str] = "exit_once"
    version: ClassVar[int] = 1
    input_columns: ClassVar[tuple[str, ...]] = ("doc_id", "text")
    speed_only: ClassVar[frozenset[str]] = frozenset({"marker"})
    holds_model: ClassVar[bool] = False
    marker: str

    def get_params(self) -> dict[str, JSONValue]:
        return {"marker": self.marker}

    def output_schema(self) -> pa.Schema:
        return pa.schema([("doc_id", pa.string()), ("n", pa.int64())])

    def __call__(self, batch: pa.Table) -> pa.Table:
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            fd = -1
        if fd >= 0:
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            os._exit(1)
        n = pc.utf8_length(batch["text"]).cast(pa.int64())
        return pa.table({"doc_id": batch["doc_id"], "n": n}, schema=self.output_schema())


@dataclass(kw_only=True)
class ExitOnceActor(ExitOnce):
    """The same stage run as an actor pool (model-holding path): the actor dies and must be restarted."""

    name: ClassVar[str] = "exit_once_actor"
    holds_model: ClassVar[bool] = True


def _frame(output: StageOutput) -> pl.DataFrame:
    return pl.read_parquet([str(p) for p in output.files]).sort("doc_id")


@pytest.mark.parametrize("stage_type", [ExitOnce, ExitOnceActor])
def test_killed_worker_process_is_retried_without_loss(
    stage_type: type[ExitOnce], docs_input: StageOutput, tmp_path: Path, ray_runtime: None
) -> None:
    """A worker that dies on its first batch is replaced; the output equals a clean in-process run."""
    from pipelines.ray_executor import RayExecutor

    marker = tmp_path / "killed"
    out = run_stage(
        stage_type(marker=str(marker)), docs_input, tmp_path / "ray", executor=RayExecutor(batch_size=32)
    )
    assert marker.is_file()  # a worker really died (the marker holds its pid)
    assert int(marker.read_text()) != os.getpid()
    clean = run_stage(
        stage_type(marker=str(marker)), docs_input, tmp_path / "local", executor=LocalExecutor()
    )
    got = _frame(out)
    assert_frame_equal(got, _frame(clean))
    assert got.height == out.info["rows_in"] == out.info["rows_out"] == 300
    assert got["doc_id"].n_unique() == 300


def _source(src: Path, docs: pl.DataFrame, *, files: int) -> None:
    src.mkdir()
    rows = docs.select("text", "label").to_dicts()
    per = -(-len(rows) // files)
    for i in range(files):
        lines = [json.dumps(r) for r in rows[i * per : (i + 1) * per]] + ['{"text": 1}']
        (src / f"part-{i:03d}.jsonl").write_text("\n".join(lines) + "\n")


def _committed(work: Path, name: str) -> list[Path]:
    root = work / name
    return [p for p in root.iterdir() if not p.name.startswith(".")] if root.is_dir() else []


def _docs(work: Path) -> pl.DataFrame:
    (stage,) = _committed(work, "ingest")
    return pl.read_parquet([str(p) for p in parquet_files(stage)]).sort("doc_id")


def test_killed_driver_leaves_nothing_committed_and_the_rerun_matches_a_clean_run(
    local_ray_cluster: LocalCluster, tmp_path: Path, wiki_docs: pl.DataFrame
) -> None:
    """SIGKILL of `curate ingest --address` mid-run leaves a temp folder only; a rerun equals a clean run."""
    src, work = tmp_path / "src", tmp_path / "work"
    _source(src, wiki_docs, files=60)
    cmd = [sys.executable, "-m", "curate.cli", "ingest", str(work), "--source", f"s={src}"]
    proc = subprocess.Popen(
        [*cmd, "--address", local_ray_cluster.address],
        env=local_ray_cluster.driver_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not list(work.glob("ingest/.*.tmp/part-*.parquet")):
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert list(work.glob("ingest/.*.tmp/part-*.parquet")), "the driver was not caught mid-run"
    assert not _committed(work, "ingest")  # nothing reads as complete
    with pytest.raises(InputError, match="no committed 'ingest' step"):
        read_documents(work)
    resumed = ingest_sources({"s": str(src)}, work)
    clean = ingest_sources({"s": str(src)}, tmp_path / "clean")
    assert resumed.key == clean.key
    got = _docs(work)
    assert_frame_equal(got, _docs(tmp_path / "clean"))
    assert got.height == 300 and got["doc_id"].n_unique() == 300
    assert_frame_equal(resumed.sources, clean.sources)


# A driver running a slow stage on the cluster; each batch leaves a marker named by the node that ran it.
_SLOW_STAGE = """
import os, sys, time, uuid
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar
import pyarrow as pa, pyarrow.compute as pc
import ray
from curate.stages import load_committed, run_stage
from pipelines.ray_executor import RayExecutor
from pipelines.runtime import init_ray

@dataclass(kw_only=True)
class Slow:
    name: ClassVar[str] = "slow_len"
    version: ClassVar[int] = 1
    input_columns: ClassVar[tuple[str, ...]] = ("doc_id", "text")
    speed_only: ClassVar[frozenset[str]] = frozenset({"markers"})
    holds_model: ClassVar[bool] = False
    markers: str

    def get_params(self):
        return {"markers": self.markers}

    def output_schema(self):
        return pa.schema([("doc_id", pa.string()), ("n", pa.int64())])

    def __call__(self, batch):
        node = ray.get_runtime_context().get_node_id()
        Path(self.markers, f"{node}-{uuid.uuid4().hex}").touch()
        time.sleep(0.3)
        n = pc.utf8_length(batch["text"]).cast(pa.int64())
        return pa.table({"doc_id": batch["doc_id"], "n": n}, schema=self.output_schema())

address, work, markers = sys.argv[1:4]
init_ray(address)
source = load_committed(Path(work), "docs", "k0")
out = run_stage(Slow(markers=markers), source, Path(work), executor=RayExecutor(batch_size=10))
print("RESULT", out.path)
"""


def test_killed_worker_node_mid_stage_completes_or_fails_cleanly_and_reruns(
    local_ray_cluster: LocalCluster, docs_input: StageOutput, tmp_path: Path
) -> None:
    """Killing the worker node mid-stage: the stage completes or fails without committing; a rerun completes.

    Either way the committed output equals the clean in-process result. Runs last: the cluster keeps one node.
    """
    work = docs_input.path.parent.parent
    markers = tmp_path / "markers"
    markers.mkdir()
    cmd = [sys.executable, "-c", _SLOW_STAGE, local_ray_cluster.address, str(work), str(markers)]
    env = local_ray_cluster.driver_env()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        nodes: set[str] = set()
        while time.monotonic() < deadline and len(nodes) < 2 and proc.poll() is None:
            nodes = {p.name.split("-")[0] for p in markers.iterdir()}
            time.sleep(0.05)
        assert len(nodes) == 2, "the stage never ran on both nodes before finishing"
        local_ray_cluster.kill_node(1)
        _, stderr = proc.communicate(timeout=300)
    finally:
        proc.kill()
    committed = _committed(work, "slow_len")
    if proc.returncode != 0:  # failed cleanly: an error, nothing committed; then the rerun must complete
        assert not committed, stderr[-2000:]
        rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
        assert rerun.returncode == 0, rerun.stderr[-3000:]
        committed = _committed(work, "slow_len")
    (out,) = committed
    assert (out / "_stage.json").is_file()
    got = pl.read_parquet([str(p) for p in parquet_files(out)]).sort("doc_id")
    want = docs_input.scan().select("doc_id", n=pl.col("text").str.len_chars().cast(pl.Int64)).collect()
    assert_frame_equal(got, want.sort("doc_id"))
    assert json.loads((out / "_stage.json").read_text())["rows_out"] == 300


# ------------------------------------------------------------------------------------------------------
# Disk full and read-only output: a CurateError naming the path; nothing half-written reported as done.


def _enospc(*_args: object, **_kwargs: object) -> None:
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_during_ingest_names_the_file_and_commits_nothing(
    tmp_path: Path, wiki_docs: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC while writing a part file: StageError naming that file; no committed folder, no temp left."""
    _source(tmp_path / "src", wiki_docs, files=3)
    monkeypatch.setattr(curate.io.pq, "write_table", _enospc)
    with pytest.raises(
        StageError, match=r"could not write '.*/ingest/\..*/part-00000\.parquet': No space left"
    ):
        ingest_sources({"s": str(tmp_path / "src")}, tmp_path / "work")
    assert not _committed(tmp_path / "work", "ingest")
    assert not list((tmp_path / "work" / "ingest").iterdir())  # the temp folder was removed too


def test_disk_full_through_the_cli_prints_one_line_naming_the_file(
    tmp_path: Path, wiki_docs: pl.DataFrame, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """`curate ingest --local` on a full disk exits 2 with one error line naming the file."""
    _source(tmp_path / "src", wiki_docs, files=2)
    monkeypatch.setattr(curate.io.pq, "write_table", _enospc)
    rc = main(["ingest", str(tmp_path / "work"), "--source", f"s={tmp_path / 'src'}", "--local"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "No space left on device" in err and "part-00000.parquet" in err


def test_read_only_work_dir_names_the_folder(
    tmp_path: Path, wiki_docs: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A work dir refusing new folders (EACCES, simulated: tests may run as root): StageError naming it."""
    _source(tmp_path / "src", wiki_docs, files=1)
    work = tmp_path / "work"
    real_mkdir = Path.mkdir

    def refuse(self: Path, *args: object, **kwargs: object) -> None:
        if work in (self, *self.parents):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", refuse)
    with pytest.raises(StageError, match=rf"could not create output under '{work}.*': Permission denied"):
        ingest_sources({"s": str(tmp_path / "src")}, work)
    assert not work.exists()


def test_disk_full_in_a_stage_names_the_part_file(
    docs_input: StageOutput, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC while a stage writes its part file: StageError naming the file; nothing committed."""
    monkeypatch.setattr(pq.ParquetWriter, "write_table", _enospc)
    with pytest.raises(StageError, match=r"part-00000-00000\.parquet.*No space left"):
        run_stage(ExitOnce(marker=str(tmp_path)), docs_input, tmp_path, executor=LocalExecutor())
    assert not _committed(tmp_path, "exit_once")


def test_disk_full_on_the_commit_record_names_it(
    tmp_path: Path, wiki_docs: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC on `_stage.json`: StageError naming it; the stage is not committed."""
    _source(tmp_path / "src", wiki_docs, files=1)
    real_write = Path.write_text

    def full(self: Path, *args: object, **kwargs: object) -> int:
        if self.name == "_stage.json":
            _enospc()
        return real_write(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(StageError, match=r"_stage\.json.*No space left"):
        ingest_sources({"s": str(tmp_path / "src")}, tmp_path / "work")
    assert not _committed(tmp_path / "work", "ingest")
