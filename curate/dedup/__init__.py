"""Deduplication: exact (content hash), fuzzy (MinHash LSH), semantic (SemDeDup), merged in one side table.

Modules: `exact`, `minhash` (datasketch-equal signatures), `lsh` (banding), `fuzzy`, `semantic`, `table`
(clusters and the merge, first kind wins), `step` (the committed `dedup` step of a work dir and its summary).
"""

from curate.dedup.exact import mark_exact
from curate.dedup.fuzzy import fuzzy_duplicates, similar_pairs
from curate.dedup.semantic import semantic_duplicates
from curate.dedup.step import dedup_summary, dedup_work
from curate.dedup.table import combine_duplicates

__all__ = [
    "combine_duplicates",
    "dedup_summary",
    "dedup_work",
    "fuzzy_duplicates",
    "mark_exact",
    "semantic_duplicates",
    "similar_pairs",
]
