"""Everything that makes a key: text normalisation, content hashes, file digests, stage keys, doc ids."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import xxhash

JSONScalar = str | int | float | bool | None
JSONValue = JSONScalar | list["JSONValue"] | dict[str, "JSONValue"]

_WHITESPACE = re.compile(r"\s+")
# Bytes after which a UTF-8 text may change under normalize_text: ASCII whitespace other than the space
# (Python's \s also matches U+001C..U+001F) and every non-ASCII byte (NFC and Unicode whitespace).
_MAY_CHANGE = np.zeros(256, dtype=np.uint8)
_MAY_CHANGE[[9, 10, 11, 12, 13, 28, 29, 30, 31, *range(128, 256)]] = 1


def normalize_text(text: str) -> str:
    """Unicode NFC, whitespace runs folded to one space, stripped: the form that is hashed."""
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFC", text)).strip()


def content_hash(text: str) -> bytes:
    """16-byte blake2b of `normalize_text(text)`."""
    return hashlib.blake2b(normalize_text(text).encode("utf-8"), digest_size=16).digest()


def content_hashes(texts: pa.Array | pa.ChunkedArray | pl.Series) -> pa.FixedSizeBinaryArray:
    """`content_hash` of every string in `texts` (no nulls); texts normalize_text leaves alone skip it.

    Which texts those are is decided over the UTF-8 buffer at once (ASCII, no whitespace but single inner
    spaces); only the rest go through normalize_text, then one tight blake2b loop runs over the bytes.
    """
    series = pl.Series(texts).cast(pl.String)
    arr = _large_strings(series)
    data, ends = _buffers(arr)
    odd = np.append(_MAY_CHANGE[np.frombuffer(data, dtype=np.uint8)[ends[0] : ends[-1]]], np.uint8(0))
    starts = ends[:-1] - ends[0]
    changes = (np.maximum.reduceat(odd, starts) if len(starts) else odd[:0]).astype(bool)
    changes &= ends[1:] > ends[:-1]  # reduceat reads one byte for an empty text
    folds = series.str.contains("  ", literal=True) | series.str.starts_with(" ") | series.str.ends_with(" ")
    todo = np.flatnonzero(changes | folds.to_numpy())
    if len(todo):
        fixed = pl.Series([normalize_text(t) for t in series.gather(todo)], dtype=pl.String)
        data, ends = _buffers(_large_strings(series.scatter(todo, fixed)))
    blake = hashlib.blake2b
    digests = b"".join([blake(data[a:b], digest_size=16).digest() for a, b in pairwise(ends.tolist())])
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), len(series), [None, pa.py_buffer(digests)])


def _large_strings(series: pl.Series) -> pa.LargeStringArray:
    """One contiguous Arrow large_string array of `series`."""
    arr = series.to_arrow()
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return arr.cast(pa.large_string())


def _buffers(arr: pa.LargeStringArray) -> tuple[memoryview, np.ndarray]:
    """The UTF-8 bytes of `arr` and its len(arr) + 1 offsets into them."""
    data = memoryview(arr.buffers()[2] or b"")
    ends = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    return data, ends


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
