"""Atomic writes and Parquet reads: nothing is visible at its final path until it is complete."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import InputError, StageError

PathLike = str | os.PathLike[str]


def _tmp_sibling(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp")


@contextmanager
def atomic_file(dest: Path) -> Iterator[Path]:
    """Yield a temp path beside `dest`; on success fsync it and rename it onto `dest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(dest)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except OSError as exc:
        raise StageError(f"could not write '{dest}': {exc.strerror or exc}") from exc
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_dir(dest: Path) -> Iterator[Path]:
    """Yield a temp dir beside `dest`; rename it to `dest` only if the block completes."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = _tmp_sibling(dest)
        tmp.mkdir()
    except OSError as exc:
        raise StageError(f"could not create output under '{dest.parent}': {exc.strerror or exc}") from exc
    try:
        yield tmp
        try:
            os.rename(tmp, dest)
        except OSError:
            if not (dest / "_stage.json").is_file():  # a twin run may have committed this key first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_text(dest: Path, text: str) -> None:
    """Write `text` to `dest` atomically (UTF-8)."""
    with atomic_file(dest) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_table(table: pa.Table, dest: Path) -> None:
    """Write an Arrow table as zstd Parquet, atomically."""
    with atomic_file(dest) as tmp:
        pq.write_table(table, tmp, compression="zstd")


def parquet_files(folder: Path) -> list[Path]:
    """The committed part files of a stage folder, sorted (temp files start with a dot and are skipped)."""
    return sorted(p for p in folder.glob("part-*.parquet") if not p.name.startswith("."))


def parquet_rows(files: Sequence[Path]) -> int:
    """Row count from Parquet footers (what is on disk, not what was meant to be written)."""
    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def scan_parquet(files: Sequence[Path], *, what: str) -> pl.LazyFrame:
    """Lazy frame over Parquet files; InputError naming `what` when there are none."""
    if not files:
        raise InputError(f"{what}: no Parquet part files found.")
    return pl.scan_parquet([str(f) for f in files])
