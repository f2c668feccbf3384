"""Everything that makes a key: text normalisation, content hashes, file digests, stage keys, doc ids."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl
import pyarrow as pa
import xxhash

JSONScalar = str | int | float | bool | None
JSONValue = JSONScalar | list["JSONValue"] | dict[str, "JSONValue"]

_WHITESPACE = re.compile(r"\s+")
# The same whitespace set in Rust regex syntax (Python's \s also matches U+001C..U+001F), and a pattern that
# matches only the runs that folding changes (2+ spaces, or any run holding a non-space whitespace), so that
# clean text passes through without a rewrite.
_WS = r"[\s\x1c-\x1f]"
_ODD_WHITESPACE = rf"{_WS}*[\s\x1c-\x1f&&[^ ]]{_WS}*| {{2,}}"


def normalize_text(text: str) -> str:
    """Unicode NFC, whitespace runs folded to one space, stripped: the form that is hashed."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


def content_hash(text: str) -> bytes:
    """16-byte blake2b of `normalize_text(text)`."""
    return hashlib.blake2b(normalize_text(text).encode("utf-8"), digest_size=16).digest()


def content_hashes(texts: pa.Array | pa.ChunkedArray | pl.Series) -> pa.FixedSizeBinaryArray:
    """`content_hash` of every string in `texts` (no nulls), with the whitespace folding vectorised."""
    folded = pl.Series(texts).str.replace_all(_ODD_WHITESPACE, " ").str.strip_chars(" ")
    nfc = unicodedata.normalize
    blake = hashlib.blake2b
    digests = b"".join([blake(nfc("NFC", t).encode("utf-8"), digest_size=16).digest() for t in folded])
    n = len(folded)
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), n, [None, pa.py_buffer(digests)])


def make_doc_id(source: str, origin: str) -> str:
    """Stable document id `<source>-<xxh64 hex of origin>`: same shard path and row, same id."""
    return f"{source}-{xxhash.xxh64_hexdigest(origin.encode('utf-8'))}"


def file_digest(path: Path) -> str:
    """blake2b-128 hex digest of a file's bytes."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, lambda: hashlib.blake2b(digest_size=16)).hexdigest()


def stage_key(name: str, version: int, params: Mapping[str, JSONValue], inputs: Sequence[str]) -> str:
    """blake2b-128 of the canonical JSON of (name, version, params, sorted input keys)."""
    payload = json.dumps(
        {"name": name, "version": version, "params": dict(params), "inputs": sorted(inputs)},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.blake2b(payload.encode(), digest_size=16).hexdigest()
