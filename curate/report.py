"""Terminal accounting of a work dir: per source rows read, kept, rejected by reason, exact duplicates, bytes.

The numbers come from the ingest stage's `_stage.json` (counted from Parquet footers before it committed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
from rich.table import Table

from curate.errors import InputError
from curate.stages import StageOutput, latest_committed

SOURCE_COLUMNS = {
    "source": pl.String,
    "files": pl.Int64,
    "bytes": pl.Int64,
    "rows_read": pl.Int64,
    "documents": pl.Int64,
    "rejected": pl.Int64,
    "exact_duplicates": pl.Int64,
}


@dataclass(frozen=True)
class IngestReport:
    """What one ingest produced: per-source counts (`sources`), rejects per reason, where it lives."""

    key: str
    path: Path
    sources: pl.DataFrame  # SOURCE_COLUMNS, one row per source, sorted by source
    reasons: pl.DataFrame  # source, reason, rows

    @classmethod
    def from_stage(cls, output: StageOutput) -> IngestReport:
        """Build the report from a committed ingest stage's `_stage.json`."""
        per_source: dict[str, dict[str, Any]] = output.info["sources"]
        rows = [
            {"source": s, **{c: v[c] for c in SOURCE_COLUMNS if c != "source"}} for s, v in per_source.items()
        ]
        reasons = [
            {"source": s, "reason": r, "rows": n}
            for s, v in per_source.items()
            for r, n in sorted(v["reasons"].items())
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
        """Column sums of `sources` (files, bytes, rows_read, documents, rejected, exact_duplicates)."""
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


def load_report(work: Path) -> IngestReport:
    """The report of the latest committed ingest in `work`; InputError when there is none."""
    output = latest_committed(Path(work), "ingest")
    if output is None:
        raise InputError(
            f"'{work}' holds no committed ingest (expected {Path(work) / 'ingest'}/<key>/_stage.json)."
        )
    return IngestReport.from_stage(output)


def report_table(report: IngestReport) -> Table:
    """A rich table: one row per source plus a total; rejects by reason in one cell."""
    table = Table(title=f"ingest {report.key[:12]}  ({report.path})", title_justify="left")
    for name in ("source", "files", "MB", "read", "kept", "rejected", "exact dups", "rejected by reason"):
        table.add_column(name, justify="left" if name in ("source", "rejected by reason") else "right")
    detail = {
        s: ", ".join(f"{r}={n}" for r, n in zip(g["reason"], g["rows"], strict=True))
        for (s,), g in report.reasons.group_by("source")
    }
    for row in report.sources.iter_rows(named=True):
        table.add_row(
            row["source"],
            str(row["files"]),
            f"{row['bytes'] / 1e6:.2f}",
            str(row["rows_read"]),
            str(row["documents"]),
            str(row["rejected"]),
            str(row["exact_duplicates"]),
            detail.get(row["source"], ""),
        )
    t = report.totals
    table.add_row(
        "total",
        str(t["files"]),
        f"{t['bytes'] / 1e6:.2f}",
        str(t["rows_read"]),
        str(t["documents"]),
        str(t["rejected"]),
        str(t["exact_duplicates"]),
        "",
        style="bold",
    )
    return table
