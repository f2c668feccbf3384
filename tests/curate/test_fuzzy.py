"""Fuzzy dedup: datasketch-equal MinHash, datasketch's LSH parameters, precision/recall vs exact Jaccard."""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import xxhash
from datasketch import MinHash
from datasketch.lsh import _optimal_param
from hypothesis import given
from hypothesis import strategies as st
from polars.testing import assert_frame_equal
from scipy.sparse import csr_matrix

from curate import corpora
from curate.api import find_duplicates
from curate.cli import main
from curate.dedup.fuzzy import fuzzy_duplicates, similar_pairs
from curate.dedup.lsh import lsh_params
from curate.dedup.minhash import (
    MinHashSignatures,
    minhash_signatures,
    permutations,
    shingle_hash,
    shingles,
    xxh32_words,
)
from curate.dedup.passes import dedup_summary
from curate.dedup.table import combine_duplicates
from curate.errors import ConfigError, InputError, SchemaError

EDGE_TEXTS = ["", "   ", "!!! ...", "one", "two words", "a b c d", "a b c d e", "Ünïcödé  naïve café, déjà"]


def _docs(texts: list[str], prefix: str = "d") -> pl.DataFrame:
    ids = [f"{prefix}{i:05d}" for i in range(len(texts))]
    return pl.DataFrame({"doc_id": ids, "text": texts}, schema={"doc_id": pl.String, "text": pl.String})


def _truth_pairs(texts: list[str], threshold: float) -> set[tuple[int, int]]:
    """Pairs with exact word-5-gram Jaccard >= threshold: Python re tokens, sets, one sparse product."""
    sets = []
    for t in texts:
        toks = re.findall(r"\w+", unicodedata.normalize("NFC", t).lower())
        grams = {tuple(toks[i : i + 5]) for i in range(len(toks) - 4)} if len(toks) >= 5 else {tuple(toks)}
        sets.append(grams if toks else set())
    vocab: dict[tuple[str, ...], int] = {}
    rows, cols = [], []
    for i, s in enumerate(sets):
        for g in s:
            rows.append(i)
            cols.append(vocab.setdefault(g, len(vocab)))
    x = csr_matrix((np.ones(len(rows), np.int32), (rows, cols)), shape=(len(sets), len(vocab)))
    inter = (x @ x.T).tocoo()
    size = np.array([len(s) for s in sets])
    upper = inter.row < inter.col
    i, j, n = inter.row[upper], inter.col[upper], inter.data[upper]
    ok = n / (size[i] + size[j] - n) >= threshold
    return set(zip(i[ok].tolist(), j[ok].tolist(), strict=True))


@pytest.mark.parametrize("k", [1, 2, 3, 4, 5, 8, 9, 13])
def test_xxh32_words_equals_xxhash(k: int) -> None:
    """The vectorised xxh32 equals the xxhash library on 4k-byte inputs, seeded and not."""
    words = np.random.default_rng(k).integers(0, 2**32, (40, k), dtype=np.uint32)
    for seed in (0, 17):
        expected = [xxhash.xxh32_intdigest(row.astype("<u4").tobytes(), seed) for row in words]
        np.testing.assert_array_equal(xxh32_words(list(words.T), seed=seed), np.array(expected, np.uint32))


@pytest.mark.parametrize(
    ("shingle", "ngram", "num_perm", "seed"),
    [("word", 5, 128, 0), ("word", 3, 64, 3), ("word", 1, 32, 1), ("char", 5, 64, 0)],
)
def test_signatures_equal_datasketch(shingle: str, ngram: int, num_perm: int, seed: int) -> None:
    """Every signature value equals datasketch.MinHash fed the same shingles with hashfunc=shingle_hash."""
    texts = corpora.sotu_paragraphs(40, seed=1)["text"].to_list() + EDGE_TEXTS
    sig = minhash_signatures(texts, num_perm=num_perm, ngram=ngram, shingle=shingle, seed=seed)  # type: ignore[arg-type]
    assert sig.shape == (len(texts), num_perm) and sig.dtype == np.uint32
    for row, text in zip(sig, texts, strict=True):
        ref = MinHash(num_perm=num_perm, seed=seed, hashfunc=shingle_hash)
        for s in shingles(text, ngram=ngram, shingle=shingle):  # type: ignore[arg-type]
            ref.update(s)
        np.testing.assert_array_equal(row, ref.hashvalues)


def test_permutations_and_lsh_params_equal_datasketch() -> None:
    """Permutation parameters and (bands, rows) are datasketch's for the same seed, threshold and weights."""
    a, b = permutations(128, seed=5)
    ref = MinHash(num_perm=128, seed=5).permutations
    np.testing.assert_array_equal(np.stack([a, b]), ref)
    for threshold, num_perm, fn in [(0.8, 128, 0.5), (0.5, 64, 0.5), (0.8, 128, 0.8), (0.9, 32, 0.3)]:
        assert lsh_params(
            threshold, num_perm, false_positive_weight=1 - fn, false_negative_weight=fn
        ) == _optimal_param(threshold, num_perm, 1 - fn, fn)


def test_shingles_of_short_and_empty_texts() -> None:
    """Fewer tokens than ngram: one shingle of the whole sequence; no tokens: no shingles."""
    assert shingles("Hello, World", ngram=5) == [("hello", "world")]
    assert shingles("  ...  ", ngram=5) == []
    assert shingles("a b c d e f", ngram=5) == [("a", "b", "c", "d", "e"), ("b", "c", "d", "e", "f")]
    assert shingles("Ab  c", ngram=3, shingle="char") == [("a", "b", " "), ("b", " ", "c")]


def test_short_and_empty_texts_have_defined_matches() -> None:
    """Empty and punctuation-only texts never match (not even each other); equal short texts do."""
    docs = _docs(["", "  ", "...", "Hello!", "hello", "world", "a b c", "A B C", "a b c d"])
    out = fuzzy_duplicates(docs)
    dup_of = dict(zip(out["doc_id"], out["dup_of"], strict=True))
    assert dup_of == {
        "d00000": None,
        "d00001": None,
        "d00002": None,
        "d00003": None,
        "d00004": "d00003",
        "d00005": None,
        "d00006": None,
        "d00007": "d00006",
        "d00008": None,
    }
    assert out.filter(pl.col("doc_id").is_in(["d00000", "d00001", "d00002"]))["cluster_id"].null_count() == 3


@pytest.mark.parametrize("corpus", ["bbc", "sotu"])
def test_pairs_precision_recall_against_exact_jaccard(corpus: str) -> None:
    """On whole real corpora with natural near-duplicates, pairs reach precision and recall >= 0.95 at 0.8."""
    df = corpora.bbc_news() if corpus == "bbc" else corpora.sotu_paragraphs()
    docs = _docs(df["text"].to_list())
    truth = _truth_pairs(docs["text"].to_list(), 0.8)
    pairs = similar_pairs(docs, threshold=0.8)
    index = {d: i for i, d in enumerate(docs["doc_id"])}
    found = {(index[a], index[b]) for a, b in zip(pairs["doc_id_a"], pairs["doc_id_b"], strict=True)}
    hits = len(found & truth)
    assert len(truth) > 100  # the corpora hold natural near-duplicates (DATA.md)
    assert hits / len(found) >= 0.95
    assert hits / len(truth) >= 0.95
    exact = similar_pairs(docs, threshold=0.8, verify="exact")
    exact_found = {(index[a], index[b]) for a, b in zip(exact["doc_id_a"], exact["doc_id_b"], strict=True)}
    assert exact_found <= truth and len(exact_found) / len(truth) >= 0.97


def _edit_words(text: str, rng: np.random.Generator, n: int) -> str:
    words = text.split()
    for i in rng.choice(len(words), size=n, replace=False):
        words[i] = "zzz" + words[i]
    return " ".join(words)


def _swap_sentences(text: str) -> str:
    parts = re.split(r"(?<=\.)\s+", text.strip())
    parts[1], parts[-2] = parts[-2], parts[1]
    return " ".join(parts)


def test_injected_near_copies_are_found() -> None:
    """Copies of long articles (3 words edited, or two sentences swapped) join their original's cluster."""
    news = corpora.bbc_news(300, seed=3)
    originals = news.filter(pl.col("text").str.split(" ").list.len() >= 300)["text"].to_list()[:100]
    rng = np.random.default_rng(0)
    copies = [_edit_words(t, rng, 3) if i % 2 else _swap_sentences(t) for i, t in enumerate(originals[:40])]
    docs = pl.concat([_docs(originals, "a"), _docs(copies, "b")])
    out = fuzzy_duplicates(docs)
    cluster = dict(zip(out["doc_id"], out["cluster_id"], strict=True))
    for i in range(len(copies)):
        assert cluster[f"b{i:05d}"] is not None and cluster[f"b{i:05d}"] == cluster[f"a{i:05d}"]
    assert out.filter(pl.col("doc_id").str.starts_with("b"))["dup_kind"].to_list() == ["fuzzy"] * len(copies)


def test_kept_doc_is_smallest_doc_id_and_rows_keep_order() -> None:
    """A chain of near-copies forms one cluster kept at its smallest doc_id; rows come back in input order."""
    base = corpora.sotu_paragraphs(1, seed=4)["text"][0] + " and some closing words to make it longer"
    texts = [base, base + " yes", base, "unrelated text"]
    docs = pl.DataFrame({"doc_id": ["z9", "m5", "c1", "x0"], "text": texts})
    out = fuzzy_duplicates(docs)
    assert out.to_dict(as_series=False) == {
        "doc_id": ["z9", "m5", "c1", "x0"],
        "dup_of": ["c1", "c1", None, None],
        "dup_kind": ["fuzzy", "fuzzy", None, None],
        "cluster_id": ["c1", "c1", "c1", None],
    }


def test_signature_stage_matches_function() -> None:
    """The MinHashSignatures stage returns doc_id and the same signatures, row for row."""
    docs = _docs(corpora.bbc_news(20, seed=2)["text"].to_list() + EDGE_TEXTS)
    stage = MinHashSignatures(num_perm=64, seed=2)
    out = stage(docs.to_arrow())
    assert out.schema == stage.output_schema()
    assert out.column("doc_id").to_pylist() == docs["doc_id"].to_list()
    got = np.array(out.column("signature").to_pylist(), np.uint32)
    np.testing.assert_array_equal(got, minhash_signatures(docs["text"], num_perm=64, seed=2))


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"threshold": 0.0}, ConfigError, r"'threshold' parameter of similar_pairs\(\) must be .* in \(0"),
        ({"threshold": 1.5}, ConfigError, r"'threshold' .* Got 1.5 instead"),
        ({"threshold": float("nan")}, ConfigError, r"'threshold' .* Got nan instead"),
        ({"num_perm": 1}, ConfigError, r"'num_perm' .* must be an int >= 2\. Got 1 instead"),
        ({"num_perm": 64.0}, ConfigError, r"'num_perm' .* must be an int"),
        ({"ngram": 0}, ConfigError, r"'ngram' .* must be an int >= 1"),
        ({"shingle": "sentence"}, ConfigError, r"'shingle' .* must be one of 'word', 'char'"),
        ({"verify": "maybe"}, ConfigError, r"'verify' .* must be one of"),
        ({"false_negative_weight": 1.2}, ConfigError, r"'false_negative_weight'"),
    ],
)
def test_bad_parameters_are_named(kwargs: dict[str, object], exc: type[Exception], match: str) -> None:
    """Each bad parameter raises ConfigError naming it, the allowed range and what came."""
    with pytest.raises(exc, match=match):
        similar_pairs(_docs(["a b c"]), **kwargs)  # type: ignore[arg-type]


def test_bad_inputs_are_named() -> None:
    """A frame without text, or with repeated doc_ids, is refused with the column named."""
    with pytest.raises(SchemaError, match=r"lacks column\(s\) text"):
        fuzzy_duplicates(pl.DataFrame({"doc_id": ["a"], "body": ["x"]}))
    with pytest.raises(InputError, match="'doc_id' must be unique"):
        fuzzy_duplicates(pl.DataFrame({"doc_id": ["a", "a"], "text": ["x", "y"]}))
    with pytest.raises(ConfigError, match=r"'threshold' parameter of find_duplicates\(\)"):
        find_duplicates(_docs(["x"]), method="fuzzy", threshold=0.0)


def test_empty_frame_gives_empty_table() -> None:
    """No documents, no rows (and no error)."""
    out = fuzzy_duplicates(_docs([]))
    assert out.height == 0 and out.columns == ["doc_id", "dup_of", "dup_kind", "cluster_id"]


def test_combine_first_kind_wins() -> None:
    """A doc marked by exact keeps that mark even if fuzzy marks it; cluster_id follows the marking table."""
    ids = ["a", "b", "c", "d"]
    exact = pl.DataFrame(
        {"doc_id": ids, "dup_of": [None, "a", None, None], "dup_kind": [None, "exact", None, None]}
    ).with_columns(cluster_id=pl.Series(["a", "a", None, None]))
    fuzzy = pl.DataFrame(
        {"doc_id": ids, "dup_of": [None, "c", None, "c"], "dup_kind": [None, "fuzzy", None, "fuzzy"]}
    ).with_columns(cluster_id=pl.Series([None, "c", "c", "c"]))
    out = combine_duplicates(exact, fuzzy)
    assert out.to_dict(as_series=False) == {
        "doc_id": ids,
        "dup_of": [None, "a", None, "c"],
        "dup_kind": [None, "exact", None, "fuzzy"],
        "cluster_id": ["a", "a", "c", "c"],
    }


def test_find_duplicates_on_frame_exact_and_fuzzy() -> None:
    """find_duplicates returns doc_id, dup_of, dup_kind in input order for both text methods."""
    texts = corpora.bbc_news(30, seed=5)["text"].to_list()
    docs = _docs([*texts, texts[3], _edit_words(texts[4], np.random.default_rng(1), 2)])
    exact = find_duplicates(docs, method="exact")
    fuzzy = find_duplicates(docs, method="fuzzy")
    assert exact.columns == ["doc_id", "dup_of", "dup_kind"] and exact["doc_id"].equals(docs["doc_id"])
    assert exact.filter(pl.col("dup_of").is_not_null()).rows() == [("d00030", "d00003", "exact")]
    marked = fuzzy.filter(pl.col("dup_of").is_not_null()).rows()
    assert ("d00030", "d00003", "fuzzy") in marked and ("d00031", "d00004", "fuzzy") in marked


def test_work_dir_dedup_commits_once_and_summarises(tmp_path: Path) -> None:
    """`curate dedup WORK --method exact --method fuzzy` commits one side table row per document; the library
    call with the same methods reuses it; the summary adds up."""
    from curate.api import dedup_documents, ingest

    texts = corpora.bbc_news(40, seed=6)["text"].to_list()
    rows = {
        "news": [*texts[:20], texts[0], _edit_words(texts[1], np.random.default_rng(2), 2)],
        "more": texts[20:],
    }
    for source, items in rows.items():
        (tmp_path / source).mkdir()
        lines = "\n".join(json.dumps({"text": t}) for t in items)
        (tmp_path / source / "part.jsonl").write_text(lines + "\n", encoding="utf-8")
    work = tmp_path / "work"
    docs_out = ingest({s: str(tmp_path / s) for s in rows}, work)
    assert main(["dedup", str(work), "--method", "exact", "--method", "fuzzy", "--local"]) == 0
    out = dedup_documents(work, methods=["exact", "fuzzy"])
    assert dedup_documents(work, methods=["exact", "fuzzy"]).info["finished_at"] == out.info["finished_at"]
    table = out.scan().collect()
    docs = pl.read_parquet(docs_out.path / "part-*.parquet")
    assert table.height == docs.height and table["doc_id"].is_sorted()
    counts = dict(table["dup_kind"].drop_nulls().value_counts().iter_rows())
    assert counts["exact"] == 1 and counts["fuzzy"] >= 1
    summary = dedup_summary(out.scan(), docs.lazy())
    news = summary.filter(pl.col("source") == "news").row(0, named=True)
    dup_ids = table.filter(pl.col("dup_kind").is_not_null())["doc_id"]
    dup_bytes = docs.filter(pl.col("doc_id").is_in(dup_ids.implode()))["text"].str.len_bytes().sum()
    assert news["n_docs"] == 22 and news["n_exact"] == 1 and news["bytes_removed"] == dup_bytes
    assert summary["n_docs"].sum() == docs.height


def test_dedup_documents_needs_an_ingest(tmp_path: Path) -> None:
    """A work dir without sources is refused with the command to run; a bad method is named."""
    from curate.api import dedup_documents

    with pytest.raises(InputError, match="has no sources yet; run `curate ingest"):
        dedup_documents(tmp_path)
    with pytest.raises(ConfigError, match="'methods' parameter of dedup_documents"):
        dedup_documents(tmp_path, methods=["fuzzy", "fast"])  # type: ignore[list-item]


def test_same_seed_same_result_other_seed_same_obvious_pairs() -> None:
    """Identical frames for one seed; another seed still finds the planted copies."""
    texts = corpora.sotu_paragraphs(200, seed=7)["text"].to_list()
    docs = _docs([*texts, *(t + " indeed" for t in texts[:10])])
    assert_frame_equal(fuzzy_duplicates(docs, seed=1), fuzzy_duplicates(docs, seed=1))
    other = fuzzy_duplicates(docs, seed=2)
    assert other.filter(pl.col("doc_id") >= "d00200")["dup_of"].to_list() == [f"d{i:05d}" for i in range(10)]


@given(
    st.lists(
        st.lists(st.sampled_from(["red", "green", "blue", "cat", "dog", "sun"]), min_size=0, max_size=12),
        min_size=1,
        max_size=25,
    )
)
def test_dedup_table_invariants(word_lists: list[list[str]]) -> None:
    """Any input: one row per doc, in order; a dup points to its cluster's kept doc, the smallest doc_id."""
    docs = _docs([" ".join(w) for w in word_lists])
    out = fuzzy_duplicates(docs, num_perm=32)
    assert out["doc_id"].to_list() == docs["doc_id"].to_list()
    kept = set(out.filter(pl.col("dup_of").is_null())["doc_id"])
    for row in out.iter_rows(named=True):
        if row["dup_of"] is not None:
            assert (
                row["dup_of"] in kept and row["dup_of"] < row["doc_id"] and row["cluster_id"] == row["dup_of"]
            )
            assert row["dup_kind"] == "fuzzy"
    sizes = out.drop_nulls("cluster_id").group_by("cluster_id").len()
    assert (sizes["len"] >= 2).all()
    assert set(sizes["cluster_id"]) <= kept
