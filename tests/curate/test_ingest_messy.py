"""Messy input never crashes ingest and never vanishes: each fault of issue 3 item 5 is a counted reject."""

from __future__ import annotations

import gzip
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from curate.errors import UnreadableFileWarning
from curate.hashing import normalize_text
from curate.ingest import ingest_sources
from curate.schema import REJECT_REASONS

MAX_CHARS = 2000


def _lines(records: Sequence[object]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


@pytest.fixture(scope="module")
def messy(tmp_path_factory: pytest.TempPathFactory, wiki_docs: pl.DataFrame) -> dict[str, object]:
    """One source per fault, each mixing real Wikipedia texts with known bad rows; ingested once."""
    root = tmp_path_factory.mktemp("messy")
    texts = [t for t in wiki_docs["text"].to_list() if len(t) <= MAX_CHARS]
    good = [{"text": t, "id": i} for i, t in enumerate(texts[:40])]

    def put(source: str, name: str, data: bytes) -> None:
        (root / source).mkdir(exist_ok=True)
        (root / source / name).write_bytes(data)

    put("bad_json", "a.jsonl", _lines(good[:5]) + b'{"text": "no end\n{text: 1}\n' + _lines(good[5:8]))
    put("bad_utf8", "a.jsonl", _lines(good[:4]) + b'{"text": "caf\xe9"}\n' + _lines(good[4:6]))
    nulls = [
        {"text": ""},
        {"text": " \n\t "},
        {"text": None},
        {"text": 7},
        {"text": ["x"]},
        {"text": {"a": 1}},
    ]
    put("bad_text", "a.jsonl", _lines(good[:3] + nulls + good[3:5]))
    put("missing", "a.jsonl", _lines([*good[:3], {"body": "x"}, {"title": "y", "id": 3}, *good[3:4]]))
    put("too_long", "a.jsonl", _lines([*good[:3], {"text": "word " * 500}]))
    full = gzip.compress(_lines(good), mtime=0)
    put("truncated", "a.jsonl.gz", full[: len(full) * 2 // 3])
    put("unreadable", "good.jsonl", _lines(good[:2]))
    put("unreadable", "broken.parquet", b"PAR1 this is not a parquet file")
    put("unreadable", "broken.jsonl.zst", b"\x00\x01 not zstd at all")
    pq.write_table(pa.table({"body": ["a", "b", "c"]}), root / "wrong_schema.parquet")
    put("schema", "ok.csv", b"id,text\n1,first csv row\n2,second csv row\n")
    put("schema", "other.csv", b"id,body\n1,x\n")
    (root / "schema" / "other.parquet").write_bytes((root / "wrong_schema.parquet").read_bytes())
    put("csv_rows", "a.csv", b'id,text\n1,fine\n2,"two\nlines"\n3,x,extra\n4,\n')
    pq.write_table(pa.table({"text": ["p1", None, "p3"], "n": [1, 2, 3]}), root / "pq_nulls.parquet")
    (root / "pq").mkdir()
    (root / "pq_nulls.parquet").rename(root / "pq" / "a.parquet")
    (root / "txt").mkdir()
    (root / "txt" / "1.txt").write_text(texts[0])
    (root / "txt" / "2.txt").write_bytes(b"\xff\xfe latin")
    (root / "txt" / "3.txt").write_text("   \n")
    sources = {
        name: str(root / name)
        for name in (
            "bad_json",
            "bad_utf8",
            "bad_text",
            "missing",
            "too_long",
            "truncated",
            "unreadable",
            "schema",
            "csv_rows",
            "pq",
            "txt",
        )
    }
    with pytest.warns(UnreadableFileWarning, match="could not be read") as record:
        report = ingest_sources(sources, root / "work", max_chars=MAX_CHARS)
    docs = pl.read_parquet([str(p) for p in sorted(report.path.glob("part-*.parquet"))])
    rejects = pl.read_parquet(str(report.path / "rejects"))
    return {"report": report, "docs": docs, "rejects": rejects, "good": good, "warnings": len(record)}


EXPECTED = {  # source -> (documents, {reason: rejects})
    "bad_json": (8, {"bad_json": 2}),
    "bad_utf8": (6, {"bad_encoding": 1}),
    "bad_text": (5, {"empty_text": 3, "not_string": 3}),
    "missing": (4, {"missing_field": 2}),
    "too_long": (3, {"too_long": 1}),
    "unreadable": (2, {"unreadable_file": 2}),
    "schema": (2, {"schema_mismatch": 2}),
    "csv_rows": (2, {"bad_record": 1, "empty_text": 1}),
    "pq": (2, {"empty_text": 1}),
    "txt": (1, {"bad_encoding": 1, "empty_text": 1}),
}


@pytest.mark.parametrize("source", sorted(EXPECTED))
def test_every_fault_is_a_counted_reject(messy: dict, source: str) -> None:
    """Each faulty source keeps its good rows and rejects each bad row with the expected reason code."""
    report = messy["report"]
    n_docs, reasons = EXPECTED[source]
    row = report.sources.filter(pl.col("source") == source).row(0, named=True)
    assert row["documents"] == n_docs
    assert row["rejected"] == sum(reasons.values())
    assert row["rows_read"] == row["documents"] + row["rejected"]
    got = dict(report.reasons.filter(pl.col("source") == source).select("reason", "rows").iter_rows())
    assert got == reasons
    assert messy["docs"].filter(pl.col("source") == source).height == n_docs
    on_disk = messy["rejects"].filter(pl.col("source") == source)
    assert dict(on_disk.group_by("reason").len().iter_rows()) == reasons


def test_truncated_gzip_keeps_the_rows_before_the_break(messy: dict) -> None:
    """A .gz cut in the middle keeps a prefix of its rows, in order, plus one truncated_file reject."""
    docs = messy["docs"].filter(pl.col("source") == "truncated")
    kept = docs.with_columns(pl.col("origin").str.split(":").list.last().cast(pl.Int64).alias("line")).sort(
        "line"
    )
    n = kept.height
    assert 0 < n < len(messy["good"])
    assert kept["text"].to_list() == [g["text"] for g in messy["good"][:n]]
    assert kept["line"].to_list() == list(range(1, n + 1))
    rej = messy["rejects"].filter(pl.col("source") == "truncated")
    assert rej["reason"].to_list() == ["truncated_file"]
    assert rej["origin"].to_list() == [f"a.jsonl.gz:{n + 1}"]


def test_rejects_carry_raw_record_and_detail(messy: dict) -> None:
    """Row-level rejects keep the original record verbatim and a sentence naming the problem."""
    rej = messy["rejects"]
    bad_json = rej.filter(pl.col("reason") == "bad_json")
    assert sorted(bad_json["raw"].to_list()) == ['{"text": "no end', "{text: 1}"]
    missing = rej.filter(pl.col("reason") == "missing_field")
    assert all("lacks field 'text'" in d for d in missing["detail"])
    assert sorted(missing["raw"].to_list()) == sorted(['{"body": "x"}', '{"title": "y", "id": 3}'])
    too_long = rej.filter(pl.col("reason") == "too_long").row(0, named=True)
    assert too_long["raw"] == json.dumps({"text": "word " * 500})
    assert f"max_chars={MAX_CHARS}" in too_long["detail"]
    schema = rej.filter(pl.col("reason") == "schema_mismatch")
    assert sorted(schema["origin"]) == ["other.csv:0", "other.parquet:0"]
    assert all("'text'" in d and "body" in d for d in schema["detail"])
    assert set(rej["reason"]) <= set(REJECT_REASONS)
    assert set(rej["stage"]) == {"ingest"}


def test_unreadable_files_warn_once_each(messy: dict) -> None:
    """Each wholly unreadable file raised one UnreadableFileWarning."""
    assert messy["warnings"] == 2


def test_totals_satisfy_the_invariant(messy: dict) -> None:
    """In total, rows read = documents + rejects, and both match the files on disk."""
    t = messy["report"].totals
    assert t["rows_read"] == t["documents"] + t["rejected"]
    assert t["documents"] == messy["docs"].height
    assert t["rejected"] == messy["rejects"].height
    assert messy["docs"]["doc_id"].n_unique() == messy["docs"].height


# ------------------------------------------------------------------------------------------------------------
# Property: random mixes of valid and broken JSONL lines


def _expected_doc(line: bytes) -> bool:
    """Independent rule: does this non-blank line become a document?"""
    try:
        rec = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
        return False
    text = rec["text"]
    if not normalize_text(text) or len(text) > 50:
        return False
    try:
        json.dumps(rec, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


json_values = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=5), st.lists(st.integers(), max_size=2)
)
lines = st.one_of(
    st.builds(lambda t: json.dumps({"text": t}).encode(), st.text(max_size=60)),
    st.builds(lambda t, v: json.dumps({"text": t, "x": v}).encode(), st.text(max_size=10), json_values),
    st.builds(lambda v: json.dumps({"text": v}).encode(), json_values),
    st.builds(
        lambda d: json.dumps(d).encode(), st.dictionaries(st.text(max_size=4), json_values, max_size=3)
    ),
    st.binary(max_size=30),
    st.sampled_from([b"", b"   ", b"[1, 2]", b"null", b'{"text": "\\ud800"}', b'{"text": "a\xffb"}']),
)


@given(st.lists(lines, max_size=25))
@example([b'{"":null,"text":""}'])  # an empty key: polars renames it, so the exact reader takes over
def test_random_jsonl_never_crashes_and_accounts_every_row(batch: list[bytes]) -> None:
    """Any mix of lines ingests without raising; read = documents + rejects; documents match the rule."""
    data = b"\n".join(line.replace(b"\n", b" ") for line in batch) + b"\n"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "in.jsonl").write_bytes(data)
        report = ingest_sources({"s": str(root / "in.jsonl")}, root / "work", max_chars=50)
    row = report.sources.row(0, named=True)
    non_blank = [ln for ln in data.split(b"\n") if ln.strip()]
    assert row["rows_read"] == len(non_blank)
    assert row["rows_read"] == row["documents"] + row["rejected"]
    assert row["documents"] == sum(_expected_doc(ln) for ln in non_blank)
    assert set(report.reasons["reason"]) <= set(REJECT_REASONS)


@pytest.mark.parametrize("data", [b"null\n", b'\n  null\n{"text": "a"}\n', b"nulll\n"])
def test_jsonl_opening_with_bare_null_is_a_reject_not_a_crash(tmp_path: Path, data: bytes) -> None:
    """A buffer opening with `null` (which crashes pyarrow's JSON reader) goes through the per-line path."""
    (tmp_path / "a.jsonl").write_bytes(data)
    report = ingest_sources({"s": str(tmp_path / "a.jsonl")}, tmp_path / "w")
    reasons = dict(report.reasons.select("reason", "rows").iter_rows())
    assert reasons == ({"bad_json": 1} if data == b"nulll\n" else {"bad_record": 1})
    assert report.totals["documents"] == data.count(b'"text"')
