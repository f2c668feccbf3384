"""MinHash signatures (Broder 1997) over word or character n-gram shingles, computed per batch in numpy.

A signature row equals `datasketch.MinHash(num_perm, seed=seed, hashfunc=shingle_hash)` updated with the
shingles of `shingles()` (datasketch >= 2.0, default scheme "affine32"): with h = fmix32(shingle_hash(s)),
sig_k = min over shingles s of (a_k * h + b_k) mod 2^32, where a_k (odd) and b_k come from
`np.random.RandomState(seed)` exactly as datasketch draws them.

Shingles. Text is NFC-normalised and lower-cased; word tokens are `\\w+` runs, char tokens are the characters
after folding whitespace runs to one space. A shingle is `ngram` consecutive tokens. A text with fewer than
`ngram` (but at least one) tokens has one shingle, its whole token sequence, so short texts still match their
copies; a text with no tokens has no shingles and an all-ones signature (`EMPTY`), which never matches.

Hash. `shingle_hash` = xxh32 (seed 0) of the little-endian uint32 xxh32 hashes of the shingle's tokens, so
every distinct token is hashed once per batch and the n-gram hash is a vectorised xxh32 over 4n-byte words.
"""

from __future__ import annotations

import struct
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import ClassVar, Literal

import numpy as np
import polars as pl
import pyarrow as pa
import xxhash

from curate.hashing import JSONValue

Shingle = Literal["word", "char"]

EMPTY = np.uint32(0xFFFFFFFF)  # signature value of a text without shingles (datasketch's initial value)
_CHUNK = 8192  # shingles per permutation block: a (num_perm x _CHUNK) uint32 buffer stays in cache

_P1, _P2, _P3, _P4, _P5 = (np.uint32(p) for p in (2654435761, 2246822519, 3266489917, 668265263, 374761393))


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def xxh32_words(words: Sequence[np.ndarray], *, seed: int = 0) -> np.ndarray:
    """xxh32 of the rows of k uint32 columns, row i read as the 4k little-endian bytes of words[0..k-1][i].

    Equals `xxhash.xxh32_intdigest(row.astype("<u4").tobytes(), seed)` row for row.
    """
    k, m = len(words), len(words[0])
    s = np.uint32(seed)
    with np.errstate(over="ignore"):
        if k >= 4:
            acc = [np.full(m, v, np.uint32) for v in (s + _P1 + _P2, s + _P2, s, s - _P1)]
            for stripe in range(k // 4):
                for lane in range(4):
                    x = acc[lane] + words[4 * stripe + lane] * _P2
                    acc[lane] = _rotl(x, 13) * _P1
            h = _rotl(acc[0], 1) + _rotl(acc[1], 7) + _rotl(acc[2], 12) + _rotl(acc[3], 18)
        else:
            h = np.full(m, s + _P5, np.uint32)
        h = h + np.uint32(4 * k)
        for j in range(4 * (k // 4), k):
            h = _rotl(h + words[j] * _P3, 17) * _P4
        h ^= h >> np.uint32(15)
        h *= _P2
        h ^= h >> np.uint32(13)
        h *= _P3
        h ^= h >> np.uint32(16)
    return h


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer: the pre-mix datasketch's affine32 scheme applies to input hashes."""
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint32(16))
        h = h * np.uint32(0x85EBCA6B)
        h = h ^ (h >> np.uint32(13))
        h = h * np.uint32(0xC2B2AE35)
        return h ^ (h >> np.uint32(16))


def permutations(num_perm: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The affine permutation parameters (a odd, b) datasketch's affine32 scheme draws for `seed`."""
    gen = np.random.RandomState(seed)  # datasketch's generator: the same draws give the same signatures
    a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)
    return a, b


def tokenize(texts: Sequence[str] | pl.Series, *, shingle: Shingle = "word") -> pl.Series:
    """Token lists of `texts`: NFC, lower case, then `\\w+` words or characters (whitespace runs folded)."""
    values = texts.to_list() if isinstance(texts, pl.Series) else list(texts)
    s = pl.Series([unicodedata.normalize("NFC", t) for t in values], dtype=pl.String).str.to_lowercase()
    if shingle == "word":
        return s.str.extract_all(r"\w+")
    return s.str.replace_all(r"\s+", " ").str.strip_chars(" ").str.split("")


def shingles(text: str, *, ngram: int = 5, shingle: Shingle = "word") -> list[tuple[str, ...]]:
    """Shingles of one text as token tuples (the whole sequence when shorter than `ngram`; none if empty)."""
    toks = tokenize([text], shingle=shingle)[0].to_list()
    if len(toks) < ngram:
        return [tuple(toks)] if toks else []
    return [tuple(toks[i : i + ngram]) for i in range(len(toks) - ngram + 1)]


def shingle_hash(shingle: tuple[str, ...]) -> int:
    """32-bit hash of one shingle: xxh32 over its tokens' xxh32 values (the scalar twin of the batch code)."""
    token_hashes = [xxhash.xxh32_intdigest(t.encode("utf-8")) for t in shingle]
    return xxhash.xxh32_intdigest(struct.pack(f"<{len(token_hashes)}I", *token_hashes))


def _token_hashes(token_lists: pl.Series) -> tuple[np.ndarray, np.ndarray]:
    """Flat uint32 xxh32 of every token (each distinct token hashed once) and the token count of each text."""
    lengths = token_lists.list.len().to_numpy().astype(np.int64)
    flat = token_lists.explode().drop_nulls()
    if flat.len() == 0:
        return np.zeros(0, np.uint32), lengths
    vocab = flat.unique()
    hashed = np.fromiter(
        (xxhash.xxh32_intdigest(t.encode("utf-8")) for t in vocab.to_list()), np.uint32, vocab.len()
    )
    table = pl.DataFrame({"t": vocab, "h": hashed})
    joined = flat.to_frame("t").join(table, on="t", how="left", maintain_order="left")
    return joined["h"].to_numpy(), lengths


def _shingle_hashes(tok: np.ndarray, lengths: np.ndarray, ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """fmix32-premixed shingle hashes, concatenated text by text, and the shingle count of each text."""
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    n_shingles = np.where(lengths >= ngram, lengths - ngram + 1, np.minimum(lengths, 1))
    seg = np.concatenate([[0], np.cumsum(n_shingles)[:-1]]).astype(np.int64)
    out = np.empty(int(n_shingles.sum()), np.uint32)
    full = lengths >= ngram
    if full.any():
        windows = tok.size - ngram + 1  # hash every window of the flat token array, keep those inside a text
        every = xxh32_words([tok[j : windows + j] for j in range(ngram)])
        counts = n_shingles[full]
        within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        out[np.repeat(seg[full], counts) + within] = every[np.repeat(starts[full], counts) + within]
    for k in np.unique(lengths[(lengths > 0) & ~full]):
        first = starts[lengths == k]
        out[seg[lengths == k]] = xxh32_words([tok[first + j] for j in range(k)])
    return _fmix32(out), n_shingles


def shingle_hash_sets(
    texts: Sequence[str] | pl.Series, *, ngram: int = 5, shingle: Shingle = "word"
) -> list[np.ndarray]:
    """Per text, the sorted distinct 32-bit shingle hashes: the sets whose Jaccard MinHash estimates."""
    h, n_shingles = _shingle_hashes(*_token_hashes(tokenize(texts, shingle=shingle)), ngram)
    return [np.unique(part) for part in np.split(h, np.cumsum(n_shingles)[:-1])]


def minhash_signatures(
    texts: Sequence[str] | pl.Series,
    *,
    num_perm: int = 128,
    ngram: int = 5,
    shingle: Shingle = "word",
    seed: int = 0,
) -> np.ndarray:
    """(len(texts), num_perm) uint32 MinHash signatures, equal to datasketch's (see module docstring)."""
    a, b = permutations(num_perm, seed=seed)
    h, n_shingles = _shingle_hashes(*_token_hashes(tokenize(texts, shingle=shingle)), ngram)
    sig = np.full((len(n_shingles), num_perm), EMPTY, np.uint32)
    rows = np.flatnonzero(n_shingles > 0)  # texts with shingles, in order; their segments tile h
    ends = np.cumsum(n_shingles[rows])
    begins = ends - n_shingles[rows]
    part = sig[rows]
    buf = np.empty((num_perm, _CHUNK), np.uint32)
    a_col, b_col = a[:, None], b[:, None]
    for c0 in range(0, h.size, _CHUNK):
        c1 = min(c0 + _CHUNK, h.size)
        lo, hi = np.searchsorted(ends, c0, "right"), np.searchsorted(begins, c1, "left")
        block = buf[:, : c1 - c0]
        np.multiply(a_col, h[None, c0:c1], out=block)
        np.add(block, b_col, out=block)
        mins = np.minimum.reduceat(block, np.maximum(begins[lo:hi], c0) - c0, axis=1)
        np.minimum(part[lo:hi], mins.T, out=part[lo:hi])
    sig[rows] = part
    return sig


@dataclass(kw_only=True)
class MinHashSignatures:
    """Stage: (doc_id, text) -> (doc_id, signature: fixed_size_list<uint32, num_perm>), row for row."""

    name: ClassVar[str] = "dedup.minhash"
    version: ClassVar[int] = 1
    input_columns: ClassVar[tuple[str, ...]] = ("doc_id", "text")
    speed_only: ClassVar[frozenset[str]] = frozenset()
    holds_model: ClassVar[bool] = False

    num_perm: int = 128
    ngram: int = 5
    shingle: Shingle = "word"
    seed: int = 0

    def get_params(self) -> dict[str, JSONValue]:
        """All constructor arguments."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def output_schema(self) -> pa.Schema:
        """doc_id and the signature."""
        return signature_schema(self.num_perm)

    def __call__(self, batch: pa.Table) -> pa.Table:
        """Signatures of one batch."""
        sig = minhash_signatures(
            pl.from_arrow(batch.column("text")),  # type: ignore[arg-type]
            num_perm=self.num_perm,
            ngram=self.ngram,
            shingle=self.shingle,
            seed=self.seed,
        )
        flat = pa.FixedSizeListArray.from_arrays(pa.array(sig.ravel()), self.num_perm)
        return pa.table([batch.column("doc_id"), flat], schema=self.output_schema())


def signature_schema(num_perm: int) -> pa.Schema:
    """Arrow schema of a signature table (doc_id, signature)."""
    return pa.schema(
        [
            pa.field("doc_id", pa.string(), nullable=False),
            pa.field("signature", pa.list_(pa.uint32(), num_perm), nullable=False),
        ]
    )
