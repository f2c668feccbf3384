"""Stage contracts, the in-process executor and content-keyed, resumable commits (STYLE.md 2.2, 2.4, 2.6).

A `Stage` is a pure per-batch transform on Arrow tables that keeps rows; an `Executor` maps it over
Parquet files; `run_stage` / `commit_step` put the result under `work/<name>/<key>/` with `_stage.json`
written last, so a rerun with the same key does no work and a killed run leaves only temp folders.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import StageError
from curate.hashing import JSONValue, stage_key
from curate.io import atomic_dir, atomic_file, parquet_files, parquet_rows, scan_parquet

STAGE_FILE = "_stage.json"
CODE_VERSION = "0.1.0"


@runtime_checkable
class Stage(Protocol):
    """Pure per-batch transform: same rows, same order, `output_schema()` columns (doc_id first)."""

    name: ClassVar[str]
    version: ClassVar[int]
    input_columns: ClassVar[tuple[str, ...]]
    speed_only: ClassVar[frozenset[str]]
    holds_model: ClassVar[bool]

    def get_params(self) -> dict[str, JSONValue]: ...
    def output_schema(self) -> pa.Schema: ...
    def __call__(self, batch: pa.Table) -> pa.Table: ...


@dataclass
class Counts:
    """Rows into a stage, rows a row filter skipped, and rows out (what is on disk)."""

    rows_in: int = 0
    rows_out: int = 0
    rows_skipped: int = 0


Progress = Callable[[int], None]  # called with how many units of work just finished
RowFilter = Callable[[pa.Table], pa.Table]  # drops rows before a stage sees them (e.g. duplicates)


class Executor(Protocol):
    """Maps a Stage over the row groups of Parquet files into `out_dir` (part-<file>-<group>.parquet) and
    returns on-disk counts; maps a task function over the rows of a task table (one row per task)."""

    def map_batches(
        self,
        stage: Stage,
        files: Sequence[Path],
        out_dir: Path,
        *,
        keep: RowFilter | None = None,
        on_progress: Progress | None = None,
    ) -> Counts: ...

    def map_tasks(
        self, fn: Callable[[pa.Table], pa.Table], tasks: pa.Table, *, on_progress: Progress | None = None
    ) -> pa.Table: ...

    def describe(self) -> dict[str, JSONValue]: ...

    def take_usage(self) -> dict[str, int]: ...


@contextmanager
def single_threaded() -> Iterator[None]:
    """Run a task on one BLAS and one torch thread (restored after), so its floating-point results do not
    depend on the executor: a Ray task and an in-process call sum in the same order."""
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before)


def call_task(fn: Callable[[pa.Table], pa.Table], task: pa.Table) -> pa.Table:
    """`fn(task)` single-threaded: how both executors run a task function."""
    with single_threaded():
        return fn(task)


def check_same_rows(batch: pa.Table, out: pa.Table, *, stage: str) -> None:
    """Raise StageError unless `out` has as many rows as `batch` (stages never drop rows)."""
    if out.num_rows != batch.num_rows:
        raise StageError(f"stage '{stage}' returned {out.num_rows} rows for a batch of {batch.num_rows}.")


@dataclass(frozen=True)
class WorkItem:
    """One row group of one input file and the part file its stage output goes to."""

    path: Path
    group: int
    rows: int
    dest: Path


def work_items(files: Sequence[Path], out_dir: Path) -> list[WorkItem]:
    """Every non-empty row group of `files` (from the footers) with its output part name.

    The name depends only on the input's position, so both executors write the same layout and a retried
    item overwrites its own part.
    """
    items = []
    for i, path in enumerate(files):
        meta = pq.ParquetFile(path).metadata
        for g in range(meta.num_row_groups):
            if rows := meta.row_group(g).num_rows:
                items.append(WorkItem(Path(path), g, rows, Path(out_dir) / f"part-{i:05d}-{g:05d}.parquet"))
    return items


def map_item(stage: Stage, item: WorkItem, *, batch_size: int, keep: RowFilter | None = None) -> int:
    """Apply `stage` to one row group in batches (after `keep`), write its part atomically; rows written."""
    schema = stage.output_schema()
    written = 0
    reader = pq.ParquetFile(item.path)
    with atomic_file(item.dest) as tmp, pq.ParquetWriter(tmp, schema, compression="zstd") as w:
        for rb in reader.iter_batches(batch_size, row_groups=[item.group], columns=list(stage.input_columns)):
            batch = pa.Table.from_batches([rb])
            if keep is not None:
                batch = keep(batch)
            if batch.num_rows == 0:
                continue
            out = stage(batch)
            check_same_rows(batch, out, stage=stage.name)
            w.write_table(out.cast(schema))
            written += out.num_rows
    return written


@dataclass(kw_only=True)
class LocalExecutor:
    """Runs Stages and tasks in this process, in order; no Ray."""

    batch_size: int = 4096
    _usage: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def map_batches(
        self,
        stage: Stage,
        files: Sequence[Path],
        out_dir: Path,
        *,
        keep: RowFilter | None = None,
        on_progress: Progress | None = None,
    ) -> Counts:
        """Apply `stage` to every row group of `files`, one part file per row group."""
        items = work_items(files, out_dir)
        for item in items:
            map_item(stage, item, batch_size=self.batch_size, keep=keep)
            if on_progress is not None:
                on_progress(item.rows)
        self._count("batch_items", len(items))
        return counts_on_disk(files, out_dir)

    def map_tasks(
        self, fn: Callable[[pa.Table], pa.Table], tasks: pa.Table, *, on_progress: Progress | None = None
    ) -> pa.Table:
        """Call `fn` on each row of `tasks` (a one-row table), in order; the results concatenated."""
        results = []
        for i in range(tasks.num_rows):
            out = call_task(fn, tasks.slice(i, 1))
            results.append(out)
            if on_progress is not None:
                on_progress(1)
        self._count("tasks", tasks.num_rows)
        return pa.concat_tables(results) if results else pa.table({})

    def describe(self) -> dict[str, JSONValue]:
        """What ran the work: this process."""
        return {"executor": "local", "processes": 1}

    def _count(self, what: str, n: int) -> None:
        self._usage[what] = self._usage.get(what, 0) + n

    def take_usage(self) -> dict[str, int]:
        """Tasks and batch items run since the last call (and reset)."""
        usage, self._usage = dict(self._usage), {}
        return usage


def counts_on_disk(files: Sequence[Path], out_dir: Path) -> Counts:
    """Counts from the Parquet footers: rows in the inputs, rows written, and the difference (skipped)."""
    rows_in, rows_out = parquet_rows(files), parquet_rows(parquet_files(out_dir))
    return Counts(rows_in=rows_in, rows_out=rows_out, rows_skipped=rows_in - rows_out)


@dataclass(frozen=True)
class StageOutput:
    """A committed stage folder: where it is, its content key and what `_stage.json` recorded."""

    name: str
    key: str
    path: Path
    info: Mapping[str, Any] = field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        """The committed part files."""
        return parquet_files(self.path)

    def scan(self) -> pl.LazyFrame:
        """Lazy frame over the part files."""
        return scan_parquet(self.files, what=f"stage '{self.name}' at {self.path}")


def stage_dir(work: Path, name: str, key: str) -> Path:
    """Folder of a stage output: `work/<name>/<key>`."""
    return work / name / key


def load_committed(work: Path, name: str, key: str) -> StageOutput | None:
    """The committed output for (name, key), or None when there is none (no `_stage.json`)."""
    path = stage_dir(work, name, key)
    marker = path / STAGE_FILE
    if not marker.is_file():
        return None
    return StageOutput(name, key, path, json.loads(marker.read_text()))


def commit_step(
    work: Path,
    name: str,
    key: str,
    build: Callable[[Path], Mapping[str, Any]],
    *,
    params: Mapping[str, JSONValue],
    inputs: Sequence[str],
) -> StageOutput:
    """Return the committed output for (name, key), building it into a temp folder first if missing.

    `build(tmp_dir)` writes the outputs and returns counts/info; `_stage.json` is written after it, then the
    folder is renamed into place, so a killed run never leaves a folder that reads as complete.
    """
    done = load_committed(work, name, key)
    if done is not None:
        return done
    dest = stage_dir(work, name, key)
    started = time.time()
    with atomic_dir(dest) as tmp:
        info = dict(build(tmp))
        record = {
            "name": name,
            "key": key,
            "params": dict(params),
            "inputs": list(inputs),
            "code_version": CODE_VERSION,
            "started_at": started,
            "finished_at": time.time(),
            "seconds": round(time.time() - started, 3),
            **info,
        }
        try:
            (tmp / STAGE_FILE).write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
        except OSError as exc:
            raise StageError(f"could not write '{dest / STAGE_FILE}': {exc.strerror or exc}") from exc
    committed = load_committed(work, name, key)
    if committed is None:
        raise StageError(f"stage '{name}' did not commit to '{dest}'.")
    return committed


def key_params(stage: Stage) -> dict[str, JSONValue]:
    """Parameters that decide a stage's output: `get_params()` minus the speed-only ones."""
    return {k: v for k, v in stage.get_params().items() if k not in stage.speed_only}


def run_stage(
    stage: Stage,
    source: StageOutput,
    work: Path,
    *,
    executor: Executor,
    keep: RowFilter | None = None,
    keep_key: str | None = None,
    on_progress: Progress | None = None,
) -> StageOutput:
    """Map `stage` over a committed input with `executor`; a no-op when the same key is committed.

    `keep` drops rows before the stage (its identity, e.g. the dedup step's key, is `keep_key`).
    """
    params = key_params(stage)
    inputs = [source.key, *([keep_key] if keep_key else [])]
    key = stage_key(stage.name, stage.version, params, inputs)

    def build(tmp: Path) -> dict[str, Any]:
        counts = executor.map_batches(stage, source.files, tmp, keep=keep, on_progress=on_progress)
        if keep is None and counts.rows_in != counts.rows_out:
            raise StageError(
                f"stage '{stage.name}' wrote {counts.rows_out} rows for {counts.rows_in} input rows."
            )
        return {"rows_in": counts.rows_in, "rows_out": counts.rows_out, "rows_skipped": counts.rows_skipped}

    return commit_step(work, stage.name, key, build, params=params, inputs=inputs)
