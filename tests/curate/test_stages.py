"""Content-keyed commits: _stage.json written last, reruns reuse the commit, failed builds leave nothing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

from curate.errors import StageError
from curate.io import write_table
from curate.stages import LocalExecutor, commit_step, load_committed


def _build(calls: list[int], rows: int = 3) -> Callable[[Path], dict[str, int]]:
    def build(tmp: Path) -> dict[str, int]:
        calls.append(1)
        write_table(pa.table({"x": list(range(rows))}), tmp / "part-00000.parquet")
        return {"rows_out": rows}

    return build


def test_commit_then_reuse(tmp_path: Path) -> None:
    """The first commit builds and records params and counts; the same key again does not build."""
    calls: list[int] = []
    out = commit_step(tmp_path, "s", "k1", _build(calls), params={"p": 1}, inputs=["in"])
    again = commit_step(tmp_path, "s", "k1", _build(calls), params={"p": 1}, inputs=["in"])
    assert calls == [1]
    assert again.info == out.info
    info = json.loads((out.path / "_stage.json").read_text())
    assert (info["params"], info["inputs"], info["rows_out"]) == ({"p": 1}, ["in"], 3)
    assert out.scan().collect()["x"].to_list() == [0, 1, 2]


def test_failed_build_commits_nothing_and_rerun_commits_once(tmp_path: Path) -> None:
    """A build that raises leaves no committed folder; the rerun builds once and is then reused."""

    def broken(tmp: Path) -> dict[str, int]:
        write_table(pa.table({"x": [1]}), tmp / "part-00000.parquet")
        raise StageError("stage 's' failed at batch 2")

    with pytest.raises(StageError, match="batch 2"):
        commit_step(tmp_path, "s", "k1", broken, params={}, inputs=[])
    assert load_committed(tmp_path, "s", "k1") is None
    assert list((tmp_path / "s").iterdir()) == []
    calls: list[int] = []
    commit_step(tmp_path, "s", "k1", _build(calls), params={}, inputs=[])
    commit_step(tmp_path, "s", "k1", _build(calls), params={}, inputs=[])
    assert calls == [1]


def test_local_map_tasks_keeps_order_and_reports_progress() -> None:
    """LocalExecutor.map_tasks calls the function once per task row, in order, and counts result rows."""
    seen: list[int] = []
    tasks = pa.table({"i": [3, 1, 2]})
    out = LocalExecutor().map_tasks(
        lambda t: pa.table({"i": t["i"], "sq": pa.compute.multiply(t["i"], t["i"])}),
        tasks,
        on_progress=seen.append,
    )
    assert out.to_pydict() == {"i": [3, 1, 2], "sq": [9, 1, 4]}
    assert seen == [1, 1, 1]
