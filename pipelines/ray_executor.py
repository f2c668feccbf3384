"""RayExecutor: the same Stage objects and task functions as LocalExecutor, mapped with Ray Data.

Stateless stages run as tasks, model-holding stages as an actor pool (model loaded once per actor). Counts
come from the Parquet footers of what was written, never from what the workers believed they wrote.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import ray
from ray.data.datasource import FilenameProvider

from curate.errors import CurateError, StageError
from curate.io import parquet_files, parquet_rows
from curate.stages import Counts, Progress, Stage, check_same_rows
from pipelines.runtime import init_ray, shutdown_ray


class _PartNames(FilenameProvider):
    """Names written files part-<task>-<write uuid>.parquet, the layout `curate.io.parquet_files` reads."""

    def get_filename_for_task(self, write_uuid: str, task_index: int) -> str:
        return f"part-{task_index:05d}-{write_uuid}.parquet"


@dataclass(frozen=True)
class _Checked:
    """Wraps a stateless stage so that every batch is checked to keep its rows and cast to the schema."""

    stage: Any

    def __call__(self, batch: pa.Table) -> pa.Table:
        out = self.stage(batch)
        check_same_rows(batch, out, stage=self.stage.name)
        return out.cast(self.stage.output_schema())


class _ActorStage:
    """Actor-pool wrapper: builds the stage once per actor (its model loads on the first call)."""

    def __init__(self, stage_type: type, params: dict[str, Any]) -> None:
        self.checked = _Checked(stage_type(**params))

    def __call__(self, batch: pa.Table) -> pa.Table:
        return self.checked(batch)


@contextmanager
def _stage_errors(name: str) -> Iterator[None]:
    """Re-raise a CurateError raised inside a Ray worker as itself; other worker failures as StageError."""
    try:
        yield
    except ray.exceptions.RayError as exc:
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, CurateError):
            cause = getattr(cause, "cause", None) or cause.__cause__
        if isinstance(cause, CurateError):
            raise cause from exc
        raise StageError(f"stage '{name}' failed on Ray after its retries: {exc}") from exc


@dataclass(kw_only=True)
class RayExecutor:
    """Maps Stages and task functions with Ray Data on the runtime `pipelines.runtime.init_ray` started."""

    batch_size: int = 4096
    concurrency: int | tuple[int, int] | None = None
    num_gpus: float = 0.0

    def map_batches(self, stage: Stage, files: Sequence[Path], out_dir: Path) -> Counts:
        """Apply `stage` to every batch of `files`; writes part-*.parquet into `out_dir` (a temp dir)."""
        init_ray()
        # The V2 Parquet datasource (Ray 2.60 default) spends seconds listing footers of a few local files
        # under load; the V1 reader does the same job without that cost.
        ray.data.DataContext.get_current().use_datasource_v2 = False
        ds = ray.data.read_parquet([str(f) for f in files]).select_columns(list(stage.input_columns))
        if stage.holds_model:
            ds = ds.map_batches(
                _ActorStage,
                fn_constructor_kwargs={"stage_type": type(stage), "params": stage.get_params()},
                batch_format="pyarrow",
                batch_size=self.batch_size,
                concurrency=self.concurrency or 1,
                num_gpus=self.num_gpus,  # Ray Data restarts dead actors and retries their batches by default
            )
        else:
            ds = ds.map_batches(
                _Checked(stage),
                batch_format="pyarrow",
                batch_size=self.batch_size,
                concurrency=self.concurrency,
            )
        with _stage_errors(stage.name):
            ds.write_parquet(str(out_dir), filename_provider=_PartNames(), compression="zstd")
        return Counts(rows_in=parquet_rows(files), rows_out=parquet_rows(parquet_files(out_dir)))

    def map_tasks(
        self, fn: Callable[[pa.Table], pa.Table], tasks: pa.Table, *, on_progress: Progress | None = None
    ) -> pa.Table:
        """Call `fn` on each row of `tasks` as one Ray task (retried if its worker dies); results in order."""
        init_ray()
        items = ray.data.from_items(tasks.to_pylist(), override_num_blocks=tasks.num_rows)
        ds = items.map_batches(fn, batch_format="pyarrow", batch_size=1, concurrency=self.concurrency)
        results: list[pa.Table] = []
        with _stage_errors(getattr(fn, "name", type(fn).__name__)):
            for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                table = cast(pa.Table, batch)
                results.append(table)
                if on_progress is not None:
                    on_progress(table.num_rows)
        return pa.concat_tables(results)


@contextmanager
def ray_executor(address: str | None = None, **options: Any) -> Iterator[RayExecutor]:
    """A RayExecutor on an embedded runtime or the cluster at `address`; shuts down only what it started.

    Ray Data's progress bars and console log lines below ERROR stay off (Curate's CLI draws progress);
    the session log file under /tmp/ray keeps them.
    """
    started = not ray.is_initialized()
    init_ray(address)
    ray.data.DataContext.get_current().enable_progress_bars = False
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setLevel(logging.ERROR)
    try:
        yield RayExecutor(**options)
    finally:
        if started:
            shutdown_ray()
