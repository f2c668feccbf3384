"""Ingest stage: sources (NAME=GLOB) -> documents plus rejects under WORK/ingest/<key>/, every row counted.

Shards are read by curate.readers in executor tasks; the invariant rows read = documents + rejects is
checked per source and in total before the stage commits.
"""

from __future__ import annotations

import glob
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curate._validation import check_interval
from curate.errors import ConfigError, InputError, StageError, UnreadableFileWarning
from curate.hashing import JSONValue, file_digest, stage_key
from curate.io import PathLike, atomic_file, parquet_files, write_table
from curate.readers import STAGE, SUFFIXES, Rows, Shard, format_of, read_shard
from curate.records import write_record
from curate.report import IngestCounts, IngestReport, SourceCounts
from curate.stages import Executor, LocalExecutor, Progress, commit_step, load_committed

VERSION = 3  # 3: the counts as an IngestCounts record; 2: per-source counts from the footers
DEFAULT_MAX_CHARS = 1_000_000
TXT_FILES_PER_TASK = 256  # .txt files are one document each; group them so part files stay few

_SOURCE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_STATS = pa.schema(
    [
        ("source", pa.string()),
        ("relpath", pa.string()),
        ("bytes", pa.int64()),
        ("rows_read", pa.int64()),
    ]
)


def _printable(name: str) -> str:
    """A file name as valid UTF-8: bytes that are not UTF-8 (kept as surrogates by the OS layer) escaped."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _input_key(shard: Shard) -> str:
    """What the stage key holds for one shard: its path and content digest (or why it cannot be read)."""
    try:
        digest = file_digest(Path(shard.path))
    except OSError as exc:  # read later as one 'unreadable_file' reject with the same cause
        digest = f"unreadable:{exc.errno}"
    return f"{shard.source}/{shard.relpath}@{digest}"


def _walk(folder: str) -> list[str]:
    """Every non-folder entry under `folder`; symlinked folders are not entered (no loops, no escapes)."""
    return [os.path.join(d, f) for d, _, names in os.walk(folder, followlinks=False) for f in names]


def _glob_root(pattern: str) -> Path:
    """The folder a glob's relative paths start from: its longest prefix without wildcards."""
    parts = Path(pattern).parts
    fixed = parts[: next((i for i, p in enumerate(parts) if glob.has_magic(p)), len(parts))]
    root = Path(*fixed) if fixed else Path(".")
    return root if root.is_dir() else root.parent


def resolve_source(name: str, pattern: str) -> list[Shard]:
    """The shards of source `name`: files matching `pattern` (a folder: every supported file under it)."""
    if not _SOURCE_NAME.fullmatch(name):
        raise ConfigError(
            f"The source name {name!r} must be letters, digits, '_', '.' or '-', "
            "starting with a letter or digit."
        )
    path = Path(pattern).expanduser()
    if path.is_dir():
        root, matches = path, [str(path)]
    else:
        root, matches = _glob_root(str(path)), glob.glob(str(path), recursive=True)
    files: list[str] = []
    for m in matches:
        files.extend(_walk(m) if os.path.isdir(m) else [m])
    shards = []
    for f in sorted(set(files)):
        kind = format_of(f)
        if kind is not None and not os.path.isdir(f):
            rel = Path(os.path.relpath(f, root)).as_posix()
            shards.append(Shard(name, os.path.abspath(f), _printable(rel), *kind))
    if not shards:
        found = f"{len(files)} file(s) of other types" if files else "nothing"
        raise InputError(
            f"source '{name}': '{pattern}' matches no supported file (expected {', '.join(SUFFIXES)}; "
            f"found {found})."
        )
    return shards


@dataclass(frozen=True)
class ReadShards:
    """Task function for executors: reads one group of shards, writes its documents and rejects part files.

    Input: a one-row task table (index, source, paths, relpaths, fmts, compressions). Output: one stats row
    per file. Output names derive from the task index, so a retried task overwrites its own files.
    """

    out_dir: str
    text_field: str
    label_field: str | None
    max_chars: int

    def __call__(self, task: pa.Table) -> pa.Table:
        (t,) = task.to_pylist()
        rows = Rows(t["source"], self.max_chars)
        stats = []
        for path, relpath, fmt, comp in zip(
            t["paths"], t["relpaths"], t["fmts"], t["compressions"], strict=True
        ):
            path = os.fsdecode(path)  # carried as bytes: a file name need not be UTF-8
            shard = Shard(t["source"], path, relpath, fmt, comp)
            n = read_shard(shard, rows, text_field=self.text_field, label_field=self.label_field)
            size = os.path.getsize(path) if os.path.exists(path) else 0
            stats.append((t["source"], relpath, size, n))
        out = Path(self.out_dir)
        with atomic_file(out / f"part-{t['index']:05d}.parquet") as tmp:
            # zstd level 1; only the low-cardinality columns get dictionaries; no min/max statistics
            pq.write_table(
                rows.documents(),
                tmp,
                compression="zstd",
                compression_level=1,
                use_dictionary=["source", "label"],
                write_statistics=False,
            )
        if rows.rejects:
            write_table(rows.reject_table(), out / "rejects" / f"part-{t['index']:05d}.parquet")
        return pa.Table.from_pylist([dict(zip(_STATS.names, s, strict=True)) for s in stats], schema=_STATS)


def _tasks(shards: Sequence[Shard]) -> pa.Table:
    groups: list[list[Shard]] = []
    for shard in shards:
        same = groups and groups[-1][0].source == shard.source and groups[-1][0].fmt == "txt" == shard.fmt
        if same and len(groups[-1]) < TXT_FILES_PER_TASK:
            groups[-1].append(shard)
        else:
            groups.append([shard])
    return pa.Table.from_pylist(
        [
            {
                "index": i,
                "source": g[0].source,
                "paths": [os.fsencode(s.path) for s in g],
                "relpaths": [s.relpath for s in g],
                "fmts": [s.fmt for s in g],
                "compressions": [s.compression for s in g],
            }
            for i, g in enumerate(groups)
        ]
    )


def ingest_sources(
    sources: Mapping[str, str],
    work: PathLike,
    *,
    text_field: str = "text",
    label_field: str | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
    executor: Executor | None = None,
    on_progress: Progress | None = None,
    committed_only: bool = False,
) -> IngestReport:
    """Ingest every source (name -> glob or folder) into `work/ingest/<key>/`; a no-op when already committed
    (`committed_only`: StageError instead of ingesting).

    Raises ConfigError for bad parameters, InputError when a glob matches nothing, StageError if the row
    accounting (rows read = documents + rejects) does not hold. `on_progress(n)` gets files finished.
    """
    if not sources:
        raise ConfigError("The 'sources' parameter of ingest() must name at least one source. Got none.")
    for name, value in (("text_field", text_field), ("label_field", label_field)):
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(
                f"The '{name}' parameter of ingest() must be a non-empty string. Got {value!r} instead."
            )
    if label_field == text_field:
        raise ConfigError(
            "The 'label_field' parameter of ingest() must differ from 'text_field'. "
            f"Got {label_field!r} for both."
        )
    check_interval("max_chars", max_chars, 1, None, caller="ingest")
    work = Path(work)
    shards = [s for name, pattern in sorted(sources.items()) for s in resolve_source(name, pattern)]
    params: dict[str, JSONValue] = {
        "text_field": text_field,
        "label_field": label_field,
        "max_chars": int(max_chars),
        "sources": dict(sorted(sources.items())),
    }
    inputs = [_input_key(s) for s in shards]
    # The key holds what was read (the inputs), not how it was globbed.
    names: list[JSONValue] = [name for name in sorted(sources)]
    key = stage_key(STAGE, VERSION, {**params, "sources": names}, inputs)
    if committed_only:
        done = load_committed(work, STAGE, key)
        if done is None:
            raise StageError(f"'{work}' holds no committed ingest of these sources (key {key[:12]}).")
        return IngestReport.from_stage(done)
    runner = executor if executor is not None else LocalExecutor()

    def build(tmp: Path) -> dict[str, Any]:
        fn = ReadShards(str(tmp), text_field, label_field, int(max_chars))
        tasks = _tasks(shards)
        stats = pl.DataFrame(runner.map_tasks(fn, tasks, on_progress=on_progress))
        counts = _account(tmp, stats, tasks, sorted(sources))
        per_source = {s: SourceCounts(**c) for s, c in counts.items()}
        write_record(IngestCounts(sources=per_source, inputs=inputs), tmp)
        return {"sources": counts}

    output = commit_step(work, STAGE, key, build, params=params, inputs=inputs)
    return IngestReport.from_stage(output)


def _account(
    tmp: Path, stats: pl.DataFrame, tasks: pa.Table, names: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Per-source counts from the Parquet footers and the reject files on disk (each part holds one task's
    rows, a task one source, so no document is read); StageError if rows read != documents + rejects."""
    part_source = dict(
        zip(tasks.column("index").to_pylist(), tasks.column("source").to_pylist(), strict=True)
    )
    n_docs: dict[str, int] = {}
    for path in parquet_files(tmp):
        source = part_source[int(path.stem.split("-")[1])]
        n_docs[source] = n_docs.get(source, 0) + pq.ParquetFile(path).metadata.num_rows
    reject_files = parquet_files(tmp / "rejects")
    rejects = (
        pl.scan_parquet([str(f) for f in reject_files]).select("source", "origin", "reason").collect()
        if reject_files
        else pl.DataFrame(schema={"source": pl.String, "origin": pl.String, "reason": pl.String})
    )
    for row in rejects.filter(pl.col("reason") == "unreadable_file").iter_rows(named=True):
        warnings.warn(
            f"source '{row['source']}': file '{row['origin'].rsplit(':', 1)[0]}' could not be read; "
            "recorded as one 'unreadable_file' reject.",
            UnreadableFileWarning,
            stacklevel=5,
        )
    by_reason = rejects.group_by("source", "reason").len()
    read = stats.group_by("source").agg(
        pl.len().alias("files"), pl.col("bytes").sum(), pl.col("rows_read").sum()
    )
    out: dict[str, dict[str, Any]] = {}
    for row in read.iter_rows(named=True):
        s = row["source"]
        reasons = {r: n for _, r, n in by_reason.filter(pl.col("source") == s).iter_rows()}
        counts = {
            "files": row["files"],
            "bytes": row["bytes"],
            "rows_read": row["rows_read"],
            "documents": n_docs.get(s, 0),
            "rejected": sum(reasons.values()),
            "reasons": dict(sorted(reasons.items())),
        }
        if counts["rows_read"] != counts["documents"] + counts["rejected"]:
            raise StageError(
                f"ingest lost rows in source '{s}': read {counts['rows_read']}, wrote {counts['documents']} "
                f"documents + {counts['rejected']} rejects."
            )
        out[s] = counts
    if sorted(out) != sorted(names):
        raise StageError(f"ingest accounted sources {sorted(out)}, expected {sorted(names)}.")
    return out
