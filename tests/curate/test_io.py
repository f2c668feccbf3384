"""Atomic writes: nothing appears at its final path unless the write completed."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from curate.errors import InputError
from curate.io import (
    atomic_dir,
    atomic_file,
    parquet_files,
    parquet_rows,
    scan_parquet,
    write_table,
    write_text,
)


def test_atomic_file_leaves_nothing_on_failure(tmp_path: Path) -> None:
    """An exception inside atomic_file leaves neither the destination nor a temp file behind."""
    dest = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_file(dest) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    write_text(dest, "whole")
    assert dest.read_text() == "whole"
    assert list(tmp_path.iterdir()) == [dest]


def test_atomic_dir_renames_only_complete_folders(tmp_path: Path) -> None:
    """A failed block removes its temp folder; a complete one appears at the destination."""
    dest = tmp_path / "stage" / "key"
    with pytest.raises(RuntimeError), atomic_dir(dest) as tmp:
        (tmp / "part-00000.parquet").write_text("x")
        raise RuntimeError("killed")
    assert not dest.exists()
    assert list((tmp_path / "stage").iterdir()) == []
    with atomic_dir(dest) as tmp:
        write_table(pa.table({"a": [1, 2, 3]}), tmp / "part-00000.parquet")
        write_table(pa.table({"a": [4]}), tmp / "part-00001.parquet")
    assert [p.name for p in parquet_files(dest)] == ["part-00000.parquet", "part-00001.parquet"]
    assert parquet_rows(parquet_files(dest)) == 4
    assert scan_parquet(parquet_files(dest), what="t").collect()["a"].to_list() == [1, 2, 3, 4]


def test_scan_without_files_names_the_input(tmp_path: Path) -> None:
    """scan_parquet on an empty list raises InputError naming what was scanned."""
    with pytest.raises(InputError, match="my table: no Parquet part files"):
        scan_parquet(parquet_files(tmp_path), what="my table")
