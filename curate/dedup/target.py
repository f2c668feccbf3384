"""Pool documents that copy a target document: the same text, or most word bigrams shared both ways.

A pool document that copies a target row gets the best target scores and is then evaluated on its own twin,
so the dedup step marks it (dup_kind `target_exact` or `target_near`, dup_of = the target's doc_id) and
nothing downstream trains on it. Exact: the same content hash. Near: for the target document sharing the most
distinct word bigrams with the pool document, that count over each side's distinct bigrams is at least
`min_overlap` on both sides (one or two words changed in a 20-word paragraph keep about 0.8; unrelated
paragraphs of one domain share under 0.2). Texts shorter than two words are matched exactly only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import polars as pl
import pyarrow as pa

from curate._validation import check_columns, check_interval
from curate.dedup.minhash import shingle_hash_sets
from curate.hashing import JSONValue
from curate.schema import DEDUP

NEAR_NGRAM = 2
MIN_OVERLAP = 0.5


@dataclass(frozen=True, eq=False)
class TargetIndex:
    """The target's content hashes and distinct word-bigram hashes, searchable by pool batches."""

    doc_ids: tuple[str, ...]
    exact: dict[bytes, str]
    keys: np.ndarray = field(repr=False)  # sorted bigram hashes (uint32), one entry per (target doc, bigram)
    rows: np.ndarray = field(repr=False)  # target row of each key
    sizes: np.ndarray = field(repr=False)  # distinct bigrams per target row

    @classmethod
    def build(cls, target: pl.DataFrame) -> TargetIndex:
        """Index a target frame (doc_id, text, content_hash)."""
        check_columns(
            target, {"doc_id": pl.String, "text": pl.String, "content_hash": pl.Binary}, what="target rows"
        )
        frame = target.sort("doc_id")
        exact: dict[bytes, str] = {}
        for doc_id, h in zip(frame["doc_id"].to_list(), frame["content_hash"].to_list(), strict=True):
            exact.setdefault(h, doc_id)
        sets = _bigram_sets(frame["text"])
        sizes = np.array([len(s) for s in sets], dtype=np.int64)
        keys = np.concatenate([*sets, np.zeros(0, np.uint32)])
        rows = np.repeat(np.arange(len(sets), dtype=np.int64), sizes)
        order = np.argsort(keys, kind="stable")
        return cls(tuple(frame["doc_id"].to_list()), exact, keys[order], rows[order], sizes)

    def copies(self, docs: pl.DataFrame, *, min_overlap: float = MIN_OVERLAP) -> pl.DataFrame:
        """DEDUP rows of `docs` (doc_id, text, content_hash), in order: dup_of = the copied target doc_id."""
        check_interval("min_overlap", min_overlap, 0.0, 1.0, caller="TargetIndex.copies", closed="right")
        hashes = docs["content_hash"].to_list()
        dup_of: list[str | None] = [self.exact.get(h) for h in hashes]
        kind: list[str | None] = ["target_exact" if d is not None else None for d in dup_of]
        sets = _bigram_sets(docs["text"])
        for i, s in enumerate(sets):
            if dup_of[i] is None and len(s) and len(self.keys):
                best = self._near(s, min_overlap)
                if best is not None:
                    dup_of[i], kind[i] = self.doc_ids[best], "target_near"
        return pl.DataFrame(
            {"doc_id": docs["doc_id"], "dup_of": dup_of, "dup_kind": kind, "cluster_id": dup_of},
            schema={c: pl.String for c in ("doc_id", "dup_of", "dup_kind", "cluster_id")},
        )

    def _near(self, bigrams: np.ndarray, min_overlap: float) -> int | None:
        """The target row sharing the most of `bigrams` when both overlaps reach `min_overlap`, else None."""
        lo = np.searchsorted(self.keys, bigrams, side="left")
        hi = np.searchsorted(self.keys, bigrams, side="right")
        hits = hi - lo
        if hits.sum() == 0 or np.count_nonzero(hits) < min_overlap * len(bigrams):
            return None
        matched = self.rows[np.concatenate([np.arange(a, b) for a, b in zip(lo, hi, strict=True) if b > a])]
        counts = np.bincount(matched, minlength=len(self.sizes))
        best = int(np.argmax(counts))  # ties: the smallest target row (doc_id order)
        shared = counts[best]
        if shared >= min_overlap * len(bigrams) and shared >= min_overlap * self.sizes[best]:
            return best
        return None


def _bigram_sets(texts: pl.Series) -> list[np.ndarray]:
    """Distinct word-bigram hashes per text (none for texts under two words)."""
    sets = shingle_hash_sets(texts.fill_null(""), ngram=NEAR_NGRAM, shingle="word")
    counts = texts.fill_null("").str.count_matches(r"\w+").to_list()
    return [s if n >= NEAR_NGRAM else np.zeros(0, np.uint32) for s, n in zip(sets, counts, strict=True)]


@dataclass(kw_only=True)
class TargetCopies:
    """Stage: (doc_id, text, content_hash) -> DEDUP rows marking the copies of target documents."""

    name: ClassVar[str] = "dedup.target"
    version: ClassVar[int] = 1
    input_columns: ClassVar[tuple[str, ...]] = ("doc_id", "text", "content_hash")
    speed_only: ClassVar[frozenset[str]] = frozenset()
    holds_model: ClassVar[bool] = False

    index: TargetIndex
    min_overlap: float = MIN_OVERLAP

    def get_params(self) -> dict[str, JSONValue]:
        """The overlap cut (the target's identity keys the step through its inputs)."""
        return {"min_overlap": self.min_overlap}

    def output_schema(self) -> pa.Schema:
        """schema.DEDUP."""
        return DEDUP

    def __call__(self, batch: pa.Table) -> pa.Table:
        frame = pl.from_arrow(batch.select(list(self.input_columns)))
        assert isinstance(frame, pl.DataFrame)
        return self.index.copies(frame, min_overlap=self.min_overlap).to_arrow().cast(DEDUP)
