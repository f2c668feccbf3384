"""Stage contracts, the in-process executor and content-keyed, resumable commits (STYLE.md 2.2, 2.4, 2.6).

A `Stage` is a pure per-batch transform on Arrow tables that keeps rows; an `Executor` maps it over
Parquet files; `run_stage` / `commit_step` put the result under `work/<name>/<key>/` with `_stage.json`
written last, so a rerun with the same key does no work and a killed run leaves only temp folders.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from curate.errors import StageError
from curate.hashing import JSONValue, stage_key
from curate.io import atomic_dir, parquet_files, parquet_rows, scan_parquet

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
    """Rows into and out of a stage."""

    rows_in: int = 0
    rows_out: int = 0

    def add(self, rows_in: int, rows_out: int) -> None:
        self.rows_in += rows_in
        self.rows_out += rows_out


Progress = Callable[[int], None]  # called with how many units of work just finished


class Executor(Protocol):
    """Maps a Stage over Parquet files into `out_dir` (part-*.parquet) and returns on-disk counts;
    maps a task function over the rows of a task table (ingest: one row per group of input files)."""

    def map_batches(self, stage: Stage, files: Sequence[Path], out_dir: Path) -> Counts: ...

    def map_tasks(
        self, fn: Callable[[pa.Table], pa.Table], tasks: pa.Table, *, on_progress: Progress | None = None
    ) -> pa.Table: ...


def check_same_rows(batch: pa.Table, out: pa.Table, *, stage: str) -> None:
    """Raise StageError unless `out` has as many rows as `batch` (stages never drop rows)."""
    if out.num_rows != batch.num_rows:
        raise StageError(f"stage '{stage}' returned {out.num_rows} rows for a batch of {batch.num_rows}.")


@dataclass(kw_only=True)
class LocalExecutor:
    """Runs a Stage in this process, shard by shard, with a progress bar; no Ray."""

    batch_size: int = 4096
    progress: bool = True

    def map_batches(self, stage: Stage, files: Sequence[Path], out_dir: Path) -> Counts:
        """Apply `stage` to every batch of `files`, one output part per input file."""
        counts = Counts()
        schema = stage.output_schema()
        total = parquet_rows(files)
        with tqdm(total=total, desc=stage.name, unit="row", disable=not self.progress) as bar:
            for i, path in enumerate(files):
                part = out_dir / f"part-{i:05d}.parquet"
                try:
                    with pq.ParquetWriter(part, schema, compression="zstd") as w:
                        for rb in pq.ParquetFile(path).iter_batches(
                            self.batch_size, columns=list(stage.input_columns)
                        ):
                            batch = pa.Table.from_batches([rb])
                            out = stage(batch)
                            check_same_rows(batch, out, stage=stage.name)
                            w.write_table(out.cast(schema))
                            bar.update(batch.num_rows)
                except OSError as exc:
                    raise StageError(f"could not write '{part}': {exc.strerror or exc}") from exc
        counts.add(total, parquet_rows(parquet_files(out_dir)))
        return counts

    def map_tasks(
        self, fn: Callable[[pa.Table], pa.Table], tasks: pa.Table, *, on_progress: Progress | None = None
    ) -> pa.Table:
        """Call `fn` on each row of `tasks` (a one-row table), in order; the results concatenated."""
        results = []
        with tqdm(total=tasks.num_rows, desc="tasks", unit="task", disable=not self.progress) as bar:
            for i in range(tasks.num_rows):
                out = fn(tasks.slice(i, 1))
                results.append(out)
                bar.update(1)
                if on_progress is not None:
                    on_progress(out.num_rows)
        return pa.concat_tables(results) if results else pa.table({})


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


def latest_committed(work: Path, name: str) -> StageOutput | None:
    """The most recently committed output of stage `name` in `work`, or None."""
    root = work / name
    if not root.is_dir():
        return None
    done = [p for p in root.iterdir() if not p.name.startswith(".") and (p / STAGE_FILE).is_file()]
    if not done:
        return None
    newest = max(done, key=lambda p: json.loads((p / STAGE_FILE).read_text()).get("finished_at", 0))
    return load_committed(work, name, newest.name)


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


def run_stage(stage: Stage, source: StageOutput, work: Path, *, executor: Executor) -> StageOutput:
    """Map `stage` over a committed input with `executor`; a no-op when the same key is committed."""
    params = key_params(stage)
    key = stage_key(stage.name, stage.version, params, [source.key])

    def build(tmp: Path) -> dict[str, Any]:
        counts = executor.map_batches(stage, source.files, tmp)
        if counts.rows_in != counts.rows_out:
            raise StageError(
                f"stage '{stage.name}' wrote {counts.rows_out} rows for {counts.rows_in} input rows."
            )
        return {"rows_in": counts.rows_in, "rows_out": counts.rows_out}

    return commit_step(work, stage.name, key, build, params=params, inputs=[source.key])
