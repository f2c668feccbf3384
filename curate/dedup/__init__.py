"""Deduplication: exact (content hash), fuzzy (MinHash LSH), semantic (SemDeDup), merged in one side table.

Modules: `exact`, `minhash` (datasketch-equal signatures), `lsh` (banding), `fuzzy`, `semantic`, `table`
(clusters, the merge, first kind wins, the executors' skip filter), `passes` (the passes in order, in
process, and their summary; `pipelines.dedup_ray` is their Ray twin).
"""

from curate.dedup.exact import mark_exact
from curate.dedup.fuzzy import fuzzy_duplicates, similar_pairs
from curate.dedup.passes import TextDedup, add_semantic, dedup_summary, text_duplicates
from curate.dedup.semantic import semantic_duplicates
from curate.dedup.table import combine_duplicates

__all__ = [
    "TextDedup",
    "add_semantic",
    "combine_duplicates",
    "dedup_summary",
    "fuzzy_duplicates",
    "mark_exact",
    "semantic_duplicates",
    "similar_pairs",
    "text_duplicates",
]
