"""The ingest report: counts from _stage.json, JSON form, rich tables, and a clear error without an ingest."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

from curate.api import ingest, read_step
from curate.errors import InputError
from curate.report import IngestReport, report_table


@pytest.fixture
def report(tmp_path: Path, wiki_docs: pl.DataFrame) -> IngestReport:
    """Two sources: 30 docs + 2 bad lines, and 10 docs of which 5 repeat the first source's texts."""
    texts = wiki_docs["text"].to_list()
    a = [json.dumps({"text": t}) for t in texts[:30]] + ["{bad", '{"text": 1}']
    b = [json.dumps({"text": t}) for t in texts[25:35]]
    (tmp_path / "a.jsonl").write_text("\n".join(a) + "\n")
    (tmp_path / "b.jsonl").write_text("\n".join(b) + "\n")
    return ingest({"a": str(tmp_path / "a.jsonl"), "b": str(tmp_path / "b.jsonl")}, tmp_path / "w")


def test_counts_and_reasons(report: IngestReport, tmp_path: Path) -> None:
    """Counts hold the invariant per source (copies are documents until dedup); bytes: file size."""
    rows = {r["source"]: r for r in report.sources.iter_rows(named=True)}
    assert (rows["a"]["rows_read"], rows["a"]["documents"], rows["a"]["rejected"]) == (32, 30, 2)
    assert (rows["b"]["rows_read"], rows["b"]["documents"], rows["b"]["rejected"]) == (10, 10, 0)
    assert rows["a"]["bytes"] == (tmp_path / "a.jsonl").stat().st_size
    assert sorted(report.reasons.iter_rows()) == [("a", "bad_json", 1), ("a", "not_string", 1)]
    assert report.totals["rows_read"] == 42


def test_report_round_trips_through_json(report: IngestReport, tmp_path: Path) -> None:
    """The ingest the work dir's config selects reads back the same report; to_json carries totals and
    rejects by reason."""
    loaded = IngestReport.from_stage(read_step(tmp_path / "w", "ingest"))
    assert loaded.key == report.key
    assert loaded.sources.equals(report.sources)
    data = json.loads(loaded.to_json())
    assert data["sources"]["a"]["rejected_by_reason"] == {"bad_json": 1, "not_string": 1}
    assert data["totals"] == report.totals


def test_table_renders_every_source(report: IngestReport) -> None:
    """The rich rendering lists each source, the total and each reject reason."""
    console = Console(width=120, record=True)
    console.print(report_table(report))
    text = console.export_text()
    for word in ("a", "b", "total", "bad_json", "not_string", "rejected"):
        assert word in text


def test_report_without_ingest(tmp_path: Path) -> None:
    """A work dir without a run raises InputError naming the command to run first."""
    with pytest.raises(InputError, match=r"holds no run yet .*curate ingest"):
        read_step(tmp_path, "ingest")
