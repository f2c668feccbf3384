"""Terminal accounting of a work dir: per source rows read, kept, rejected by reason, exact duplicates, bytes.

The numbers come from the ingest stage's `_stage.json` (counted from Parquet footers before it committed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Group
from rich.table import Table

from curate.records import read_record
from curate.stages import StageOutput

SOURCE_COLUMNS = {
    "source": pl.String,
    "files": pl.Int64,
    "bytes": pl.Int64,
    "rows_read": pl.Int64,
    "documents": pl.Int64,
    "rejected": pl.Int64,
}


@dataclass(frozen=True)
class SourceCounts:
    """One source of an ingest: files and bytes read, rows read, documents kept, rows rejected by reason."""

    files: int
    bytes: int
    rows_read: int
    documents: int
    rejected: int
    reasons: dict[str, int]


@dataclass(frozen=True)
class IngestCounts:
    """The ingest step's record: per source what it read, kept and rejected."""

    sources: dict[str, SourceCounts]
    inputs: list[str]  # every shard read, as `<source>/<relpath>@<blake2b digest>`


@dataclass(frozen=True)
class IngestReport:
    """What one ingest produced: per-source counts (`sources`), rejects per reason, where it lives."""

    key: str
    path: Path
    sources: pl.DataFrame  # SOURCE_COLUMNS, one row per source, sorted by source
    reasons: pl.DataFrame  # source, reason, rows

    @classmethod
    def from_stage(cls, output: StageOutput) -> IngestReport:
        """Build the report from a committed ingest's IngestCounts record."""
        per_source = read_record(IngestCounts, output.path).sources
        rows = [
            {"source": s, **{c: getattr(v, c) for c in SOURCE_COLUMNS if c != "source"}}
            for s, v in per_source.items()
        ]
        reasons = [
            {"source": s, "reason": r, "rows": n}
            for s, v in per_source.items()
            for r, n in sorted(v.reasons.items())
        ]
        return cls(
            key=output.key,
            path=output.path,
            sources=pl.DataFrame(rows, schema=SOURCE_COLUMNS).sort("source"),
            reasons=pl.DataFrame(
                reasons, schema={"source": pl.String, "reason": pl.String, "rows": pl.Int64}
            ),
        )

    @property
    def totals(self) -> dict[str, int]:
        """Column sums of `sources` (files, bytes, rows_read, documents, rejected)."""
        return {c: int(self.sources[c].sum()) for c in SOURCE_COLUMNS if c != "source"}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form: key, path, totals, and per source its counts and rejects by reason."""
        by_source = {
            row["source"]: {**{k: v for k, v in row.items() if k != "source"}, "rejected_by_reason": {}}
            for row in self.sources.iter_rows(named=True)
        }
        for row in self.reasons.iter_rows(named=True):
            by_source[row["source"]]["rejected_by_reason"][row["reason"]] = row["rows"]
        return {"key": self.key, "path": str(self.path), "totals": self.totals, "sources": by_source}

    def to_json(self) -> str:
        """`to_dict()` as indented JSON."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


def report_table(report: IngestReport) -> Group:
    """Rich tables: one row per source plus a total, then the rejects per source and reason."""
    table = Table(title=f"ingest {report.key[:12]}  ({report.path})", title_justify="left")
    for name in ("source", "files", "MB", "read", "kept", "rejected"):
        table.add_column(name, justify="left" if name == "source" else "right")
    rows = [(r["source"], r) for r in report.sources.iter_rows(named=True)]
    for i, (name, r) in enumerate([*rows, ("total", report.totals)]):
        cells = (r["files"], f"{r['bytes'] / 1e6:.2f}", r["rows_read"], r["documents"], r["rejected"])
        table.add_row(
            name,
            *(str(c) for c in cells),
            style="bold" if i == len(rows) else None,
            end_section=i == len(rows) - 1,
        )
    reasons = Table(title="rejected by reason", title_justify="left")
    for name in ("source", "reason", "rows"):
        reasons.add_column(name, justify="right" if name == "rows" else "left")
    for source, reason, n in report.reasons.sort("source", "reason").iter_rows():
        reasons.add_row(source, reason, str(n))
    return Group(table, reasons) if report.reasons.height else Group(table)
