"""Everything that makes a key: text normalisation, content hashes, file digests, stage keys, doc ids."""

from __future__ import annotations

import hashlib
import json
import unicodedata
import warnings
from collections.abc import Mapping, Sequence
from itertools import pairwise
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import xxhash

from curate.errors import FitWarning

JSONScalar = str | int | float | bool | None
JSONValue = JSONScalar | list["JSONValue"] | dict[str, "JSONValue"]

_ASCII_ODD_WHITESPACE = r"[\t-\r\x1c-\x1f]"  # ASCII whitespace but the space (Python's \s has U+001C..U+001F)


def normalize_text(text: str) -> str:
    """Unicode NFC, whitespace runs folded to one space, stripped: the form that is hashed."""
    return " ".join(unicodedata.normalize("NFC", text).split())  # split() cuts at every \s run


def content_hash(text: str) -> bytes:
    """16-byte blake2b of `normalize_text(text)`."""
    return hashlib.blake2b(normalize_text(text).encode("utf-8"), digest_size=16).digest()


def content_hashes(texts: pa.Array | pa.ChunkedArray | pl.Series) -> pa.FixedSizeBinaryArray:
    """`content_hash` of every string in `texts` (no nulls), normalised vectorised where that is exact.

    ASCII texts without whitespace other than spaces need no NFC: their space runs are folded by polars;
    only the rest go through normalize_text. Then one tight blake2b loop runs over the UTF-8 bytes.
    """
    series = pl.Series("text", texts).cast(pl.String)
    text = pl.col("text")
    masks = series.to_frame().select(
        odd=(text.str.len_bytes() != text.str.len_chars()) | text.str.contains(_ASCII_ODD_WHITESPACE),
        spaces=text.str.contains("  ", literal=True) | text.str.starts_with(" ") | text.str.ends_with(" "),
    )
    odd = masks["odd"].to_numpy()
    spaces = np.flatnonzero(masks["spaces"].to_numpy() & ~odd)
    odd = np.flatnonzero(odd)
    if len(spaces):
        folded = series.gather(spaces).str.replace_all(" {2,}", " ").str.strip_chars(" ")
        series = series.scatter(spaces, folded)
    if len(odd):
        normalised = pl.Series([normalize_text(t) for t in series.gather(odd)], dtype=pl.String)
        series = series.scatter(odd, normalised)
    arr = series.to_arrow()
    arr = (arr.combine_chunks() if isinstance(arr, pa.ChunkedArray) else arr).cast(pa.large_string())
    data = memoryview(arr.buffers()[2] or b"")
    ends = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1].tolist()
    blake = hashlib.blake2b
    digests = b"".join([blake(data[a:b], digest_size=16).digest() for a, b in pairwise(ends)])
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), len(arr), [None, pa.py_buffer(digests)])


def holdout_mask(hashes: pa.Array | pa.ChunkedArray | pl.Series, fraction: float, *, seed: int) -> np.ndarray:
    """True for the rows whose content hash (16 bytes) falls in a seeded `fraction` of hash space: the same
    text lands on the same side in every table and every process."""
    values = pl.Series("h", hashes).cast(pl.Binary).to_list()
    salt = seed.to_bytes(8, "little")
    cut = int(fraction * 2**64)
    draws = [int.from_bytes(hashlib.blake2b(h + salt, digest_size=8).digest(), "little") for h in values]
    return np.array([d < cut for d in draws], dtype=bool)


def target_split(
    hashes: pa.Array | pa.ChunkedArray | pl.Series, holdout: float, *, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(fit, held out) row masks of a target: `holdout` of its rows by content hash score only the final
    prediction; when either side would be empty both use every row (FitWarning)."""
    held = holdout_mask(hashes, holdout, seed=seed)
    if holdout > 0 and 0 < held.sum() < len(held):
        return ~held, held
    if holdout > 0:
        warnings.warn(
            f"the target's {len(held)} rows cannot be split {1 - holdout:g}/{holdout:g} into rows that fit "
            "and rows that score the prediction; both use every row.",
            FitWarning,
            stacklevel=2,
        )
    every = np.ones(len(held), dtype=bool)
    return every, every


def make_doc_id(source: str, origin: str) -> str:
    """Stable document id `<source>-<xxh64 hex of origin>`: same shard path and row, same id."""
    return f"{source}-{xxhash.xxh64_hexdigest(origin.encode('utf-8'))}"


def make_doc_ids(source: str, origins: pl.Series) -> pa.StringArray:
    """`make_doc_id(source, origin)` of every origin (no nulls), in one tight loop."""
    prefix, xxh64 = f"{source}-", xxhash.xxh64_hexdigest
    return pa.array([prefix + xxh64(o) for o in origins.cast(pl.Binary).to_list()], pa.string())


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
