"""A declared step, and what it runs with: the config, the work dir, the executor, the outputs of the steps
before it.

`RunContext.commit` is the one way a step commits: its key is (step name, step version, params, the keys of
its declared inputs), `_stage.json` records the executor and the tasks or actors it used, and a committed key
is reused without running anything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import polars as pl

from curate.config import CurateConfig
from curate.errors import StageError
from curate.hashing import JSONValue, stage_key
from curate.io import parquet_files, scan_parquet
from curate.records import RECORD_FILE, read_record
from curate.stages import Executor, Progress, StageOutput, commit_step, load_committed

T = TypeVar("T")
Reporter = Callable[[str, int | None], Progress]  # (what, total units or None) -> advance callback
Inputs = tuple[str, ...] | Callable[[CurateConfig], tuple[str, ...]]


PARTS = "parts"  # a step's main table: the part files at the root of its folder


@dataclass(frozen=True)
class Artifact:
    """What a step commits: named Parquet tables (`PARTS`, or `<name>.parquet` / a `<name>/` folder of
    parts), at most one record type (a frozen dataclass, `curate.records`) and other named files."""

    tables: tuple[str, ...] = ()
    record: type | None = None
    files: tuple[str, ...] = ()

    def check(self, step: str, folder: Path) -> None:
        """StageError naming what a step declared but did not write."""
        missing = [t for t in self.tables if not table_files(folder, t)]
        missing += [f for f in self.files if not (folder / f).is_file()]
        if self.record is not None and not (folder / RECORD_FILE).is_file():
            missing.append(f"record {self.record.__name__}")
        if missing:
            raise StageError(f"step '{step}' did not write what it declares: {', '.join(missing)}.")


def table_files(folder: Path, name: str) -> list[Path]:
    """The Parquet files of table `name` in a step's folder (none when it is missing)."""
    if name == PARTS:
        return parquet_files(folder)
    single = folder / f"{name}.parquet"
    return [single] if single.is_file() else parquet_files(folder / name)


@dataclass(frozen=True)
class Step:
    """One declared step: name, version, inputs, what it commits, and the function that runs it."""

    name: str
    version: int
    inputs: Inputs
    artifact: Artifact
    run: Callable[[RunContext], StageOutput]

    def needs(self, cfg: CurateConfig) -> tuple[str, ...]:
        """The steps this one reads under `cfg`."""
        return self.inputs(cfg) if callable(self.inputs) else self.inputs


def _silent(what: str, total: int | None) -> Progress:
    return lambda n: None


@dataclass
class RunContext:
    """The state of one pipeline run (or of one stage command) in a work dir."""

    cfg: CurateConfig
    work: Path
    executor: Executor
    outputs: dict[str, StageOutput] = field(default_factory=dict)
    report: Reporter = _silent
    step: Step | None = None
    committed_only: bool = False  # read what is committed; a step that would run raises StageError
    artifacts: dict[str, Artifact] = field(default_factory=dict)  # what each declared step commits

    def output(self, name: str) -> StageOutput:
        """The committed output of step `name`, which the running step must declare as an input."""
        if self.step is not None and name not in self.step.needs(self.cfg):
            raise StageError(f"step '{self.step.name}' reads step '{name}' without declaring it as an input.")
        if name not in self.outputs:
            raise StageError(f"step '{name}' has not run in this pipeline context.")
        return self.outputs[name]

    def record(self, name: str, cls: type[T]) -> T:
        """The typed record (frozen dataclass) step `name` committed; StageError unless it declares `cls`."""
        out = self.output(name)
        declared = self.artifacts[name].record
        if declared is not cls:
            raise StageError(f"step '{name}' commits no {cls.__name__} record (it declares {declared}).")
        return read_record(cls, out.path)

    def table(self, name: str, table: str = PARTS) -> pl.LazyFrame:
        """Table `table` that step `name` committed, lazily; StageError unless the step declares it."""
        out = self.output(name)
        if table not in self.artifacts[name].tables:
            raise StageError(
                f"step '{name}' commits no table '{table}' (it declares {self.artifacts[name]})."
            )
        return scan_parquet(table_files(out.path, table), what=f"table '{table}' of step '{name}'")

    def file(self, name: str, filename: str) -> Path:
        """The path of file `filename` that step `name` committed; StageError unless the step declares it."""
        out = self.output(name)
        if filename not in self.artifacts[name].files:
            raise StageError(f"step '{name}' commits no file '{filename}'.")
        return out.path / filename

    def input_keys(self) -> list[str]:
        """Keys of the current step's declared inputs."""
        assert self.step is not None
        return [self.output(n).key for n in self.step.needs(self.cfg)]

    def key(self, params: Mapping[str, JSONValue]) -> str:
        """The current step's content key for `params`."""
        assert self.step is not None
        return stage_key(self.step.name, self.step.version, dict(params), self.input_keys())

    def done(self, params: Mapping[str, JSONValue]) -> StageOutput | None:
        """The current step's committed output for `params`, or None."""
        assert self.step is not None
        return load_committed(self.work, self.step.name, self.key(params))

    def commit(
        self, params: Mapping[str, JSONValue], build: Callable[[Path], Mapping[str, Any]]
    ) -> StageOutput:
        """Commit the current step keyed by `params` and its inputs; `build(tmp)` writes its files."""
        assert self.step is not None
        step = self.step
        if self.committed_only:
            done = self.done(params)
            if done is None:
                raise StageError(f"step '{step.name}' is not committed in '{self.work}' for this config.")
            return done

        def recorded(tmp: Path) -> dict[str, Any]:
            self.executor.take_usage()
            info = dict(build(tmp))
            step.artifact.check(step.name, tmp)
            return {
                **info,
                "version": step.version,
                "run_by": {**self.executor.describe(), **self.executor.take_usage()},
            }

        return commit_step(
            self.work, step.name, self.key(params), recorded, params=params, inputs=self.input_keys()
        )

    @contextmanager
    def progress(self, what: str, total: int | None) -> Iterator[Progress]:
        """An advance callback for `total` units of work of the current step (shown by the reporter)."""
        yield self.report(what, total)
