"""Fuzzy dedup: MinHash signatures -> LSH band keys -> candidate pairs -> verified Jaccard -> clusters.

Signatures are datasketch-equal (see `curate.dedup.minhash`); (bands, rows) come from `lsh_params`
(datasketch's rule); a candidate pair is a duplicate when its Jaccard is >= `threshold`, estimated from
the signatures (`verify="signature"`, default: no text needed after hashing) or exact over the shingle-hash
sets (`verify="exact"`). Clusters are connected components; the smallest doc_id of a cluster is kept.

Banding weights: datasketch weighs the false-positive and false-negative areas 0.5/0.5 because its index
returns candidates unverified. Here every candidate is verified, so a false positive costs one signature
comparison and only a false negative loses a duplicate: the default weighs them 0.2/0.8 (12 bands x 10 rows
at 0.8, 128 perms). On all 21,979 State of the Union paragraphs that lifts the recall of pairs with exact
Jaccard >= 0.8 from 0.92 (9 x 13) to 0.965 at precision 0.97 (signature check; 0.99 and 1.0 with
`verify="exact"`).
Texts without tokens (empty, punctuation only) never match; texts shorter than `ngram` tokens are one shingle.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl

from curate._validation import check_columns, check_interval, check_option
from curate.dedup.lsh import candidate_pairs, lsh_params, signature_jaccard
from curate.dedup.minhash import Shingle, minhash_signatures, shingle_hash_sets
from curate.dedup.table import dedup_rows, pair_clusters
from curate.errors import ConfigError, InputError

Verify = Literal["signature", "exact"]
_BATCH = 8192  # texts per signature batch: bounds the tokenizer's temporaries


def check_fuzzy_params(
    *, threshold: float, num_perm: int, ngram: int, shingle: str, verify: str, caller: str
) -> None:
    """Raise ConfigError naming the first bad fuzzy-dedup parameter."""
    check_interval("threshold", threshold, 0.0, 1.0, caller=caller, closed="right")
    for name, value, low in (("num_perm", num_perm, 2), ("ngram", ngram, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ConfigError(
                f"The '{name}' parameter of {caller}() must be an int >= {low}. Got {value!r} instead."
            )
    check_option("shingle", shingle, ("word", "char"), caller=caller)
    check_option("verify", verify, ("signature", "exact"), caller=caller)


def _check_docs(docs: pl.DataFrame, *, caller: str) -> None:
    check_columns(docs, {"doc_id": pl.String, "text": pl.String}, what=f"{caller}() input")
    if docs["doc_id"].null_count() or docs["doc_id"].is_duplicated().any():
        raise InputError(f"{caller}() input: 'doc_id' must be unique and non-null.")


def similar_pairs(
    docs: pl.DataFrame,
    *,
    threshold: float = 0.8,
    num_perm: int = 128,
    ngram: int = 5,
    shingle: Shingle = "word",
    seed: int = 0,
    verify: Verify = "signature",
    false_negative_weight: float = 0.8,
) -> pl.DataFrame:
    """Verified near-duplicate pairs: doc_id_a, doc_id_b (a before b in `docs`), jaccard (>= threshold)."""
    check_fuzzy_params(
        threshold=threshold,
        num_perm=num_perm,
        ngram=ngram,
        shingle=shingle,
        verify=verify,
        caller="similar_pairs",
    )
    check_interval("false_negative_weight", false_negative_weight, 0.0, 1.0, caller="similar_pairs")
    _check_docs(docs, caller="similar_pairs")
    texts = docs["text"].fill_null("")
    sig = np.empty((texts.len(), num_perm), np.uint32)
    for i in range(0, texts.len(), _BATCH):
        batch = texts[i : i + _BATCH]
        sig[i : i + _BATCH] = minhash_signatures(
            batch, num_perm=num_perm, ngram=ngram, shingle=shingle, seed=seed
        )
    bands, rows = lsh_params(
        threshold,
        num_perm,
        false_positive_weight=1.0 - false_negative_weight,
        false_negative_weight=false_negative_weight,
    )
    pairs = candidate_pairs(sig, bands=bands, rows=rows)
    if verify == "signature":
        jac = signature_jaccard(sig, pairs)
    else:
        jac = exact_jaccard(texts, pairs, ngram=ngram, shingle=shingle)
    ok = jac >= threshold
    ids = docs["doc_id"]
    return pl.DataFrame(
        {"doc_id_a": ids.gather(pairs[ok, 0]), "doc_id_b": ids.gather(pairs[ok, 1]), "jaccard": jac[ok]},
        schema={"doc_id_a": pl.String, "doc_id_b": pl.String, "jaccard": pl.Float64},
    )


def exact_jaccard(texts: pl.Series, pairs: np.ndarray, *, ngram: int, shingle: Shingle) -> np.ndarray:
    """Jaccard of each row pair over the two texts' sets of 32-bit shingle hashes."""
    rows = np.unique(pairs)
    sets = dict(
        zip(rows.tolist(), shingle_hash_sets(texts.gather(rows), ngram=ngram, shingle=shingle), strict=True)
    )
    out = np.empty(len(pairs), np.float64)
    for k, (i, j) in enumerate(pairs.tolist()):
        a, b = sets[i], sets[j]
        inter = np.intersect1d(a, b, assume_unique=True).size
        out[k] = inter / (a.size + b.size - inter) if a.size + b.size else 0.0
    return out


def fuzzy_duplicates(
    docs: pl.DataFrame,
    *,
    threshold: float = 0.8,
    num_perm: int = 128,
    ngram: int = 5,
    shingle: Shingle = "word",
    seed: int = 0,
    verify: Verify = "signature",
    false_negative_weight: float = 0.8,
) -> pl.DataFrame:
    """DEDUP table (doc_id, dup_of, dup_kind "fuzzy", cluster_id), one row per doc in `docs` order."""
    pairs = similar_pairs(
        docs,
        threshold=threshold,
        num_perm=num_perm,
        ngram=ngram,
        shingle=shingle,
        seed=seed,
        verify=verify,
        false_negative_weight=false_negative_weight,
    )
    return dedup_rows(docs["doc_id"], pair_clusters(pairs["doc_id_a"], pairs["doc_id_b"]), kind="fuzzy")
