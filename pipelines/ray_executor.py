"""RayExecutor: the same Stage objects and task functions as LocalExecutor, as Ray tasks and actor pools.

A Stage is mapped one row group per work item (`curate.stages.work_items`), with the part names the local
executor uses, so both write the same layout. Stateless stages run as tasks; model-holding stages run in an
actor pool (the model loads once per actor; each actor holds `cpus_per_actor` CPUs and runs its torch
threads on all of them, and `num_gpus` GPUs). Task functions run one Ray task per row. Counts come from the
Parquet footers of what was written, never from what the workers believed they wrote.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import ray
from ray.util import ActorPool

from curate.errors import CurateError, StageError
from curate.hashing import JSONValue
from curate.stages import (
    Counts,
    Progress,
    RowFilter,
    Stage,
    WorkItem,
    call_task,
    counts_on_disk,
    map_item,
    work_items,
)
from pipelines.runtime import init_ray, shutdown_ray


@ray.remote
def _map_item(stage: Stage, item: WorkItem, batch_size: int, keep: RowFilter | None) -> int:
    return map_item(stage, item, batch_size=batch_size, keep=keep)


@ray.remote
def _call(fn: Callable[[pa.Table], pa.Table], task: pa.Table) -> pa.Table:
    return call_task(fn, task)


class _StageActor:
    """Holds one stage (its model loads on the first batch) and uses every CPU the actor was given."""

    def __init__(self, stage: Stage, threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, threads))
        os.environ["OMP_NUM_THREADS"] = str(max(1, threads))
        self.stage = stage

    def run(self, item: WorkItem, batch_size: int, keep: RowFilter | None) -> tuple[int, int]:
        return item.rows, map_item(self.stage, item, batch_size=batch_size, keep=keep)


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
        raise StageError(f"'{name}' failed on Ray after its retries: {exc}") from exc


def _cluster_cpus() -> int:
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


@dataclass(kw_only=True)
class RayExecutor:
    """Maps Stages and task functions on the Ray runtime `pipelines.runtime.init_ray` started or joined.

    `actors`: model-stage actor pool size (0 = cluster CPUs // cpus_per_actor, or one per GPU share);
    `max_tasks`: tasks in flight (0 = cluster CPUs).
    """

    batch_size: int = 4096
    actors: int = 0
    cpus_per_actor: int = 1
    num_gpus: float = 0.0
    max_tasks: int = 0
    _usage: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def _count(self, what: str, n: int) -> None:
        self._usage[what] = self._usage.get(what, 0) + n

    def count_tasks(self, n: int) -> None:
        """Count `n` Ray tasks a step submitted itself (e.g. the dedup shuffles)."""
        self._count("tasks", n)

    def take_usage(self) -> dict[str, int]:
        """Ray tasks and actors used since the last call (and reset)."""
        usage, self._usage = dict(self._usage), {}
        return usage

    def describe(self) -> dict[str, JSONValue]:
        """The runtime: address kind, alive nodes and cluster CPUs."""
        init_ray()
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        return {"executor": "ray", "nodes": len(nodes), "cpus": _cluster_cpus()}

    def pool_size(self) -> int:
        """How many model actors a stage gets."""
        if self.actors:
            return self.actors
        if self.num_gpus > 0:
            gpus = float(ray.cluster_resources().get("GPU", 0.0))
            return max(1, int(gpus // self.num_gpus))
        return max(1, _cluster_cpus() // self.cpus_per_actor)

    def in_flight(self) -> int:
        """How many tasks run at once."""
        return self.max_tasks or _cluster_cpus()

    def map_batches(
        self,
        stage: Stage,
        files: Sequence[Path],
        out_dir: Path,
        *,
        keep: RowFilter | None = None,
        on_progress: Progress | None = None,
    ) -> Counts:
        """Apply `stage` to every row group of `files` (tasks, or an actor pool for model stages)."""
        init_ray()
        items = work_items(files, out_dir)
        with _stage_errors(stage.name):
            if stage.holds_model:
                self._map_actors(stage, items, keep, on_progress)
            else:
                self._map_tasks(stage, items, keep, on_progress)
        return counts_on_disk(files, out_dir)

    def _map_actors(
        self, stage: Stage, items: list[WorkItem], keep: RowFilter | None, on_progress: Progress | None
    ) -> None:
        n = min(self.pool_size(), max(1, len(items)))
        actor = ray.remote(num_cpus=self.cpus_per_actor, num_gpus=self.num_gpus, max_restarts=3)(_StageActor)
        pool = ActorPool(
            [actor.options(max_task_retries=3).remote(stage, self.cpus_per_actor) for _ in range(n)]
        )
        self._count("actors", n)
        self._count("tasks", len(items))
        for rows, _ in pool.map_unordered(lambda a, it: a.run.remote(it, self.batch_size, keep), items):
            if on_progress is not None:
                on_progress(rows)

    def _map_tasks(
        self, stage: Stage, items: list[WorkItem], keep: RowFilter | None, on_progress: Progress | None
    ) -> None:
        stage_ref, keep_ref = ray.put(stage), ray.put(keep)
        pending: dict[Any, int] = {}
        todo = list(items)
        self._count("tasks", len(items))
        while todo or pending:
            while todo and len(pending) < self.in_flight():
                item = todo.pop(0)
                pending[_map_item.remote(stage_ref, item, self.batch_size, keep_ref)] = item.rows
            done, _ = ray.wait(list(pending), num_returns=1)
            ray.get(done[0])
            rows = pending.pop(done[0])
            if on_progress is not None:
                on_progress(rows)

    def map_tasks(
        self, fn: Callable[[pa.Table], pa.Table], tasks: pa.Table, *, on_progress: Progress | None = None
    ) -> pa.Table:
        """Call `fn` on each row of `tasks` as one Ray task (retried if its worker dies); results in order."""
        init_ray()
        fn_ref = ray.put(fn)
        refs: list[Any] = []
        results: dict[int, pa.Table] = {}
        index: dict[Any, int] = {}
        self._count("tasks", tasks.num_rows)
        with _stage_errors(getattr(fn, "name", type(fn).__name__)):
            for i in range(tasks.num_rows):
                while len(index) >= self.in_flight():
                    self._collect(index, results, on_progress)
                ref = _call.remote(fn_ref, tasks.slice(i, 1))
                refs.append(ref)
                index[ref] = i
            while index:
                self._collect(index, results, on_progress)
        return pa.concat_tables([results[i] for i in range(tasks.num_rows)]) if refs else pa.table({})

    @staticmethod
    def _collect(index: dict[Any, int], results: dict[int, pa.Table], on_progress: Progress | None) -> None:
        done, _ = ray.wait(list(index), num_returns=1)
        results[index.pop(done[0])] = ray.get(done[0])
        if on_progress is not None:
            on_progress(1)


@contextmanager
def ray_executor(
    address: str | None = None, *, num_cpus: int | None = None, **options: Any
) -> Iterator[RayExecutor]:
    """A RayExecutor on an embedded runtime or the cluster at `address`; shuts down only what it started.

    Ray's own log lines below ERROR stay off the console (the session log under /tmp/ray keeps them).
    """
    started = not ray.is_initialized()
    init_ray(address, num_cpus=num_cpus)
    for name in ("ray", "ray.data"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setLevel(logging.ERROR)
    try:
        yield RayExecutor(**options)
    finally:
        if started:
            shutdown_ray()
