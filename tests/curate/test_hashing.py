"""Keys and hashes: normalisation, vectorised content hashes, doc ids, file digests, stage keys."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from pathlib import Path

import polars as pl
import pyarrow as pa
import xxhash
from hypothesis import given
from hypothesis import strategies as st

from curate.hashing import (
    content_hash,
    content_hashes,
    file_digest,
    make_doc_id,
    make_doc_ids,
    normalize_text,
    stage_key,
)

WHITESPACE = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u2001\u2007\u2028\u2029\u202f\u205f\u3000"


def test_normalize_text_hand_values() -> None:
    """NFC composes accents, every whitespace run becomes one space, ends are stripped."""
    assert normalize_text("  Cafe\u0301 \t au\n\n lait\u3000") == "Café au lait"
    assert normalize_text("\x1c\u2028 ") == ""
    assert content_hash("Café au lait") == hashlib.blake2b(b"Caf\xc3\xa9 au lait", digest_size=16).digest()


chars = st.one_of(st.characters(exclude_categories=["Cs"]), st.sampled_from(WHITESPACE))


@given(st.text(alphabet=chars, max_size=60))
def test_normalize_text_equals_the_regex_definition(text: str) -> None:
    """normalize_text (split/join) equals NFC, then every \\s+ run replaced by one space, then strip()."""
    assert normalize_text(text) == re.sub(r"\s+", " ", unicodedata.normalize("NFC", text)).strip()


@given(st.lists(st.text(alphabet=chars, max_size=40), max_size=20))
def test_vectorised_hashes_equal_the_scalar_definition(texts: list[str]) -> None:
    """content_hashes (polars folding, then NFC) equals content_hash row by row, for every whitespace kind."""
    got = content_hashes(pa.array(texts, pa.string())).to_pylist()
    assert got == [content_hash(t) for t in texts]


def test_doc_ids_and_digests(tmp_path: Path) -> None:
    """doc ids depend on source and origin only; file digests equal hashlib's blake2b-128 of the bytes."""
    assert make_doc_id("wiki", "a.jsonl:1") == "wiki-0739fe2c08c518db"  # xxh64 of b"a.jsonl:1", by hand
    assert make_doc_id("wiki", "a.jsonl:1") != make_doc_id("wiki", "a.jsonl:2")
    origins = ["a.jsonl:1", "dir/b.csv:10", "é.txt:1"]
    expected = [f"wiki-{xxhash.xxh64_hexdigest(o.encode('utf-8'))}" for o in origins]  # the documented id
    assert make_doc_ids("wiki", pl.Series(origins)).to_pylist() == expected
    path = tmp_path / "f.bin"
    path.write_bytes(b"some bytes" * 1000)
    assert file_digest(path) == hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()


def test_stage_key_ignores_input_order_and_sees_params() -> None:
    """The key is the same for reordered inputs and changes with any parameter or the version."""
    base = stage_key("s", 1, {"a": 1, "b": "x"}, ["k1", "k2"])
    assert stage_key("s", 1, {"b": "x", "a": 1}, ["k2", "k1"]) == base
    assert stage_key("s", 1, {"a": 2, "b": "x"}, ["k1", "k2"]) != base
    assert stage_key("s", 2, {"a": 1, "b": "x"}, ["k1", "k2"]) != base


def test_vectorised_hashes_of_sliced_chunked_input_and_edge_texts() -> None:
    """Sliced, chunked input with empty, blank, accented and odd-whitespace texts hashes like content_hash."""
    texts = ["", " ", "plain text", "two  spaces", " lead", "trail ", "tab\there", "Cafe\u0301", "\u3000x"]
    chunked = pa.chunked_array([pa.array(["skip", *texts[:4]]), pa.array([*texts[4:], "skip"])]).slice(1, 9)
    assert content_hashes(chunked).to_pylist() == [content_hash(t) for t in texts]
    assert content_hashes(pa.array([], pa.string())).to_pylist() == []
