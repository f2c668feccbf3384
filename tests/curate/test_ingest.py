"""Ingest of clean multi-format sources: contents, ids, hashes, keys, errors, no-op reruns, kill + resume."""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import zstandard
from polars.testing import assert_frame_equal

import curate
import curate.ingest as ingest_mod
from curate.errors import ConfigError, InputError
from curate.hashing import content_hash, make_doc_id
from curate.ingest import ingest_sources, resolve_source
from curate.report import IngestReport
from curate.schema import DOCUMENTS, validate_table
from curate.stages import StageOutput


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory, wiki_docs: pl.DataFrame) -> tuple[Path, pl.DataFrame]:
    """The same 300 real Wikipedia docs split over every format (jsonl, .gz, .zst, parquet, csv, txt)."""
    root = tmp_path_factory.mktemp("formats")
    docs = wiki_docs.with_columns(pl.Series("n", range(wiki_docs.height)))
    parts = [docs[i * 50 : (i + 1) * 50] for i in range(6)]
    rows = [p.select("id", "text", "label", "n").to_dicts() for p in parts]
    (root / "src" / "txt").mkdir(parents=True)
    (root / "src" / "a.jsonl").write_bytes(_jsonl(rows[0]))
    (root / "src" / "b.jsonl.gz").write_bytes(gzip.compress(_jsonl(rows[1]), mtime=0))
    (root / "src" / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(_jsonl(rows[2])))
    pq.write_table(parts[3].select("id", "text", "label", "n").to_arrow(), root / "src" / "d.parquet")
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=["id", "text", "label", "n"])
    w.writeheader()
    w.writerows(rows[4])
    (root / "src" / "e.csv").write_text(buf.getvalue())
    for r in rows[5]:
        (root / "src" / "txt" / f"{r['n']:03d}.txt").write_text(r["text"])
    (root / "src" / "README.md").write_text("not a shard")
    return root, docs


def documents(report: IngestReport) -> pl.LazyFrame:
    """The documents table that `ingest_sources` committed for `report`."""
    return StageOutput("ingest", report.key, report.path).scan()


def test_every_format_round_trips_the_text(shards: tuple[Path, pl.DataFrame], tmp_path: Path) -> None:
    """Texts come back exactly as written, with labels, meta, content hashes and stable ids."""
    root, docs = shards
    report = ingest_sources({"wiki": str(root / "src")}, tmp_path, label_field="label")
    out = documents(report).collect()
    validate_table(out.to_arrow().cast(DOCUMENTS), DOCUMENTS, where="documents")
    assert report.sources.row(0, named=True)["documents"] == out.height == docs.height
    assert sorted(out["text"]) == sorted(docs["text"])
    assert out["content_hash"].to_list() == [content_hash(t) for t in out["text"]]
    assert out["doc_id"].to_list() == [make_doc_id("wiki", o) for o in out["origin"]]
    assert out["n_chars"].to_list() == [len(t) for t in out["text"]]
    jsonl = out.filter(pl.col("origin").str.starts_with("a.jsonl:")).sort("origin")
    first = docs.row(0, named=True)
    row = jsonl.filter(pl.col("origin") == "a.jsonl:1").row(0, named=True)
    assert (row["text"], row["label"]) == (first["text"], first["label"])
    assert json.loads(row["meta"]) == {"id": first["id"], "n": 0}
    csv_row = out.filter(pl.col("origin") == "e.csv:1").row(0, named=True)
    assert json.loads(csv_row["meta"]) == {"id": docs["id"][200], "n": "200"}  # CSV values stay strings
    txt = out.filter(pl.col("origin").str.starts_with("txt/"))
    assert txt.height == 50
    assert txt["label"].null_count() == 50


def test_text_is_stored_as_read_and_hashed_normalised(tmp_path: Path) -> None:
    """Stored text keeps its whitespace and form; the hash folds NFC and whitespace, so both copies tie."""
    decomposed, composed = "Cafe\u0301  au\tlait\n", "Café au lait"
    (tmp_path / "a.jsonl").write_bytes(_jsonl([{"text": decomposed}, {"text": composed}]))
    report = ingest_sources({"s": str(tmp_path / "a.jsonl")}, tmp_path / "work")
    out = documents(report).collect().sort("origin")
    assert out["text"].to_list() == [decomposed, composed]
    assert out["content_hash"][0] == out["content_hash"][1]
    assert report.sources["documents"].to_list() == [2]  # exact copies are the dedup step's to mark


def test_doc_ids_are_stable_across_work_dirs(shards: tuple[Path, pl.DataFrame], tmp_path: Path) -> None:
    """The same shards ingested into two work dirs give the same key and identical documents."""
    root, _ = shards
    a = ingest_sources({"wiki": str(root / "src" / "*.jsonl*")}, tmp_path / "a")
    b = ingest_sources({"wiki": str(root / "src" / "*.jsonl*")}, tmp_path / "b")
    assert a.key == b.key
    assert_frame_equal(
        documents(a).collect().sort("doc_id"),
        documents(b).collect().sort("doc_id"),
    )


def test_glob_and_folder_resolution(shards: tuple[Path, pl.DataFrame]) -> None:
    """A folder means every supported file under it (README skipped); relpaths start at the glob root."""
    root, _ = shards
    folder = resolve_source("w", str(root / "src"))
    assert [s.relpath for s in folder][:5] == ["a.jsonl", "b.jsonl.gz", "c.jsonl.zst", "d.parquet", "e.csv"]
    assert len(folder) == 55
    globbed = resolve_source("w", str(root / "src" / "**" / "*.txt"))
    assert {s.relpath.split("/")[0] for s in globbed} == {"txt"}
    assert {(s.fmt, s.compression) for s in folder[:3]} == {
        ("jsonl", None),
        ("jsonl", "gzip"),
        ("jsonl", "zstd"),
    }


def test_rerun_does_no_work(
    shards: tuple[Path, pl.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second ingest with the same inputs and params reads no shard and leaves _stage.json untouched."""
    root, _ = shards
    sources = {"wiki": str(root / "src")}
    first = ingest_sources(sources, tmp_path)
    stamp = (first.path / "_stage.json").read_text()
    calls: list[str] = []
    real = ingest_mod.read_shard

    def spy(shard: ingest_mod.Shard, *args: Any, **kwargs: Any) -> int:
        calls.append(shard.path)
        return real(shard, *args, **kwargs)

    monkeypatch.setattr(ingest_mod, "read_shard", spy)
    second = ingest_sources(sources, tmp_path)
    assert calls == []
    assert second.key == first.key
    assert (second.path / "_stage.json").read_text() == stamp
    assert json.loads(stamp)["sources"]["wiki"]["rows_read"] == 300
    third = ingest_sources(sources, tmp_path, max_chars=500)  # a changed param is a new key and real work
    assert third.key != first.key
    assert len(calls) == 55


@pytest.mark.parametrize(
    ("sources", "kwargs", "exc", "match"),
    [
        ({}, {}, ConfigError, r"'sources' parameter of ingest\(\) must name at least one source"),
        ({"bad name": "x"}, {}, ConfigError, r"source name 'bad name' must be letters"),
        (
            {"s": "{root}/nope/*.jsonl"},
            {},
            InputError,
            r"source 's': '.*nope/\*\.jsonl' matches no supported file",
        ),
        ({"s": "{root}/src/README.md"}, {}, InputError, r"found 1 file\(s\) of other types"),
        ({"s": "{root}/src"}, {"max_chars": 0}, ConfigError, r"'max_chars' parameter of ingest\(\) must be"),
        ({"s": "{root}/src"}, {"text_field": ""}, ConfigError, r"'text_field' parameter .* non-empty string"),
        ({"s": "{root}/src"}, {"label_field": "text"}, ConfigError, r"'label_field' .* must differ"),
    ],
)
def test_bad_arguments_raise_named_errors(
    shards: tuple[Path, pl.DataFrame], tmp_path: Path, sources: dict, kwargs: dict, exc: type, match: str
) -> None:
    """Bad sources or parameters raise a CurateError naming what was wrong; no stage is committed."""
    root, _ = shards
    filled = {k: v.format(root=root) for k, v in sources.items()}
    with pytest.raises(exc, match=match):
        ingest_sources(filled, tmp_path, **kwargs)
    assert not (tmp_path / "ingest").exists()


def test_read_documents_without_ingest_names_the_fix(tmp_path: Path) -> None:
    """read_documents on an empty work dir raises InputError pointing at `curate ingest`."""
    with pytest.raises(InputError, match="run `curate ingest` first"):
        curate.read_documents(tmp_path)


_SLOW_INGEST = """
import sys, time
import curate.ingest as m
real = m.read_shard
def slow(*a, **k):
    time.sleep(0.25)
    return real(*a, **k)
m.read_shard = slow
m.ingest_sources({"s": sys.argv[1]}, sys.argv[2])
"""


def test_killed_ingest_resumes_with_exactly_the_rows_of_a_clean_run(
    tmp_path: Path, wiki_docs: pl.DataFrame
) -> None:
    """SIGKILL mid-ingest leaves nothing committed; the rerun yields the uninterrupted run's rows exactly."""
    src = tmp_path / "src"
    src.mkdir()
    rows = wiki_docs.select("text", "label").to_dicts()
    for i in range(12):
        (src / f"part-{i:02d}.jsonl").write_bytes(_jsonl([*rows[i * 25 : (i + 1) * 25], {"text": None}]))
    work = tmp_path / "work"
    env = {**os.environ, "PYTHONPATH": str(Path(curate.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_INGEST, str(src), str(work)], env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(work.glob("ingest/.*.tmp/part-*.parquet"))) < 3:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(list(work.glob("ingest/.*.tmp/part-*.parquet"))) >= 3  # it was killed mid-run
    assert not list(work.glob("ingest/[!.]*/_stage.json"))  # and nothing reads as committed
    resumed = ingest_sources({"s": str(src)}, work)
    clean = ingest_sources({"s": str(src)}, tmp_path / "clean")
    assert resumed.key == clean.key
    got = documents(resumed).collect().sort("doc_id")
    assert_frame_equal(got, documents(clean).collect().sort("doc_id"))
    assert got.height == 300
    assert got["doc_id"].n_unique() == 300
    assert_frame_equal(resumed.sources, clean.sources)
    assert resumed.sources.row(0, named=True)["rejected"] == 12


def test_source_with_only_rejects_still_commits(tmp_path: Path) -> None:
    """A source whose every row is bad commits zero documents and counts every reject."""
    (tmp_path / "a.jsonl").write_bytes(b'{"text": ""}\n{"x": 1}\n')
    report = ingest_sources({"s": str(tmp_path / "a.jsonl")}, tmp_path / "w")
    assert report.totals == {
        "files": 1,
        "bytes": 22,
        "rows_read": 2,
        "documents": 0,
        "rejected": 2,
    }
    assert documents(report).collect().height == 0


def test_parquet_label_and_meta_columns(tmp_path: Path) -> None:
    """Parquet labels are cast to strings and other columns land in meta as JSON."""
    table = pa.table({"body": ["one doc", "two doc"], "y": [0, 1], "score": [0.5, 1.5]})
    pq.write_table(table, tmp_path / "a.parquet")
    report = ingest_sources({"s": str(tmp_path)}, tmp_path / "w", text_field="body", label_field="y")
    out = documents(report).collect().sort("origin")
    assert out["label"].to_list() == ["0", "1"]
    assert [json.loads(m) for m in out["meta"]] == [{"score": 0.5}, {"score": 1.5}]
