"""The typed step contract: declared inputs, declared tables and records, checked when read and committed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from curate.config import parse_config
from curate.errors import StageError
from curate.io import write_table
from curate.records import write_record
from curate.stages import LocalExecutor, StageOutput
from pipelines.context import PARTS, Artifact, RunContext, Step
from pipelines.steps import STEPS, closure


@dataclass(frozen=True)
class Note:
    """A record for the contract tests."""

    text: str


def _ctx(tmp_path: Path, step: Step, artifacts: dict[str, Artifact]) -> RunContext:
    cfg = parse_config({"sources": {"a": "a/*.jsonl"}})
    ctx = RunContext(cfg=cfg, work=tmp_path, executor=LocalExecutor(), artifacts=artifacts)
    ctx.step = step
    return ctx


def _commit_note(tmp_path: Path) -> StageOutput:
    folder = tmp_path / "made"
    write_table(pl.DataFrame({"x": [1, 2]}).to_arrow(), folder / "numbers.parquet")
    write_record(Note("hi"), folder)
    return StageOutput("made", "k", folder)


def test_reads_go_through_declared_inputs_tables_and_records(tmp_path: Path) -> None:
    """A step reads only the steps it declares, only the tables and record type they declare."""
    made = Artifact(tables=("numbers",), record=Note)
    reader = Step("reader", 1, ("made",), Artifact(), lambda ctx: ctx.output("made"))
    ctx = _ctx(tmp_path, reader, {"made": made, "other": Artifact()})
    ctx.outputs["made"] = _commit_note(tmp_path)
    ctx.outputs["other"] = StageOutput("other", "k", tmp_path)
    assert ctx.table("made", "numbers").collect()["x"].to_list() == [1, 2]
    assert ctx.record("made", Note) == Note("hi")
    with pytest.raises(StageError, match="reads step 'other' without declaring it"):
        ctx.output("other")
    with pytest.raises(StageError, match="commits no table 'words'"):
        ctx.table("made", "words")
    with pytest.raises(StageError, match="commits no StageOutput record"):
        ctx.record("made", StageOutput)


def test_a_step_must_write_what_it_declares(tmp_path: Path) -> None:
    """Committing a step whose build leaves out a declared table or record fails and commits nothing."""
    declared = Artifact(tables=(PARTS, "numbers"), record=Note)
    step = Step("writer", 1, (), declared, lambda ctx: ctx.commit({}, lambda tmp: {}))
    ctx = _ctx(tmp_path, step, {"writer": declared})

    def only_numbers(tmp: Path) -> dict[str, int]:
        write_table(pl.DataFrame({"x": [1]}).to_arrow(), tmp / "numbers.parquet")
        return {}

    with pytest.raises(StageError, match=r"did not write what it declares: parts, record Note"):
        ctx.commit({}, only_numbers)
    assert not list((tmp_path / "writer").glob("*/_stage.json"))


def test_every_declared_input_is_an_earlier_step() -> None:
    """Under the default config with a target, every step's inputs are declared steps listed before it."""
    cfg = parse_config({"sources": {"a": "a/*.jsonl"}, "target": "t/*.jsonl"})
    order = {s.name: i for i, s in enumerate(STEPS)}
    for s in STEPS:
        for name in s.needs(cfg):
            assert order[name] < order[s.name], (s.name, name)
    assert [s.name for s in closure(cfg, ["publish"])] == [s.name for s in STEPS]
