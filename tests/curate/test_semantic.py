"""SemDeDup: greedy doc_id-order marking inside spherical k-means clusters, checked against brute force."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from curate import api, corpora
from curate.dedup.semantic import DEFAULT_EPS, semantic_duplicates
from curate.errors import ConfigError, InputError


def _brute_force(ids: list[str], x: np.ndarray, eps: float) -> dict[str, str | None]:
    """One cluster: in doc_id order, a doc duplicates its most similar earlier kept doc if cos > 1 - eps."""
    x = x / np.linalg.norm(x, axis=1, keepdims=True)
    kept: list[int] = []
    out: dict[str, str | None] = {}
    for i in sorted(range(len(ids)), key=lambda k: ids[k]):
        sims = [(float(x[i] @ x[k]), ids[k]) for k in kept]
        best = max(sims, key=lambda t: t[0]) if sims else None
        if best is not None and best[0] > 1 - eps:
            out[ids[i]] = best[1]
        else:
            kept.append(i)
            out[ids[i]] = None
    return out


def _planted(n: int = 120, dim: int = 24, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim))
    x[n - 20 :] = x[:20] + 0.05 * rng.normal(size=(20, dim))  # 20 near-copies, cos ~0.99
    x[n - 5 :] = x[n - 25 : n - 20] + 0.05 * rng.normal(size=(5, dim))  # copies of copies
    ids = [f"doc{(i * 37) % n:04d}" for i in range(n)]  # doc_id order differs from row order
    return ids, x.astype(np.float32)


def test_one_cluster_equals_brute_force() -> None:
    """With one cluster the marks equal a brute-force greedy pass in doc_id order."""
    ids, x = _planted()
    out = semantic_duplicates(ids, x, n_clusters=1)
    assert dict(zip(out["doc_id"], out["dup_of"], strict=True)) == _brute_force(ids, x, DEFAULT_EPS)
    assert out["doc_id"].to_list() == ids
    assert out.filter(pl.col("dup_of").is_not_null()).height >= 20


def test_clusters_find_planted_copies_and_are_deterministic() -> None:
    """With k-means clusters every planted copy is marked; same seed, same frame; row order is irrelevant."""
    ids, x = _planted()
    out = semantic_duplicates(ids, x, n_clusters=4, seed=3)
    assert_frame_equal(out, semantic_duplicates(ids, x, n_clusters=4, seed=3))
    truth = _brute_force(ids, x, DEFAULT_EPS)
    assert {d for d, v in truth.items() if v} == set(out.filter(pl.col("dup_of").is_not_null())["doc_id"])
    perm = np.random.default_rng(1).permutation(len(ids))
    shuffled = semantic_duplicates([ids[i] for i in perm], x[perm], n_clusters=4, seed=3)
    assert_frame_equal(out.sort("doc_id"), shuffled.sort("doc_id"))
    kept_with_dups = set(out["dup_of"].drop_nulls())
    for row in out.iter_rows(named=True):
        expected = row["dup_of"] or (row["doc_id"] if row["doc_id"] in kept_with_dups else None)
        assert row["cluster_id"] == expected
        assert row["dup_kind"] == ("semantic" if row["dup_of"] else None)


@pytest.fixture(scope="module")
def edited_paragraphs() -> tuple[pl.DataFrame, np.ndarray]:
    """60 real SOTU paragraphs plus 8 copies with two words changed, embedded once with packaged MiniLM."""
    from curate.embeddings import load_embedder

    texts = corpora.sotu_paragraphs(60, seed=11)["text"].to_list()
    copies = [t.replace(" the ", " a ", 2) + " Thank you." for t in texts[:8]]
    docs = pl.DataFrame({"doc_id": [f"p{i:03d}" for i in range(68)], "text": texts + copies})
    vectors = load_embedder("minilm", device="cpu").encode(docs["text"].to_list())
    return docs, vectors


def test_real_edited_copies_are_semantic_duplicates(
    edited_paragraphs: tuple[pl.DataFrame, np.ndarray], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Edited copies of real paragraphs are marked at the default eps, and only they are."""
    docs, vectors = edited_paragraphs
    out = semantic_duplicates(docs["doc_id"], vectors, n_clusters=3)
    marked = dict(out.filter(pl.col("dup_of").is_not_null()).select("doc_id", "dup_of").iter_rows())
    assert marked == {f"p{60 + i:03d}": f"p{i:03d}" for i in range(8)}
    monkeypatch.setattr(api, "embed_texts", lambda texts, **_: vectors)
    found = api.find_duplicates(docs, method="semantic")
    assert found.columns == ["doc_id", "dup_of", "dup_kind"]
    assert dict(found.filter(pl.col("dup_of").is_not_null()).select("doc_id", "dup_of").iter_rows()) == marked


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"eps": 0.0}, ConfigError, r"'eps' parameter of semantic_duplicates\(\) must be a number in \(0"),
        ({"eps": 2.5}, ConfigError, r"'eps' .* Got 2.5 instead"),
        ({"n_clusters": 0}, ConfigError, r"'n_clusters' .* must be an int >= 1\. Got 0"),
        ({"ids": ["a", "b"]}, InputError, r"got 2 doc_ids but 3 embedding rows"),
        ({"ids": ["a", "a", "b"]}, InputError, r"'doc_id' must be unique"),
        ({"x": np.array([[1.0, np.nan], [0, 1], [1, 1]])}, InputError, r"NaN or infinite values in 1 row"),
    ],
)
def test_bad_inputs_are_named(kwargs: dict[str, object], exc: type[Exception], match: str) -> None:
    """Bad eps, cluster count, lengths, ids or vectors raise errors naming what was wrong."""
    ids = kwargs.pop("ids", ["a", "b", "c"])
    x = kwargs.pop("x", np.eye(3, 2))
    with pytest.raises(exc, match=match):
        semantic_duplicates(ids, x, **kwargs)  # type: ignore[arg-type]


def test_work_dir_runs_semantic_after_exact_and_fuzzy(
    edited_paragraphs: tuple[pl.DataFrame, np.ndarray], tmp_path: Path
) -> None:
    """The dedup step marks exact copies first, embeds only what the text passes kept, then SemDeDup marks
    only those; the summary adds up."""
    import json

    from curate.api import dedup_documents, embed_documents, ingest, read_step
    from curate.dedup.passes import dedup_summary

    docs, _ = edited_paragraphs
    texts = (
        docs["text"].to_list()[:20] + docs["text"].to_list()[60:64] + [docs["text"][0]]
    )  # 4 edited, 1 exact
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in texts) + "\n")
    work = tmp_path / "work"
    ingest({"sotu": str(tmp_path / "src")}, work)
    embed_documents(work, embedder="minilm")  # exact and fuzzy (the defaults) skip 4 copies here
    out = dedup_documents(work, methods=["semantic", "exact"])
    embedded = read_step(work, "embed")
    assert (embedded.info["rows_out"], embedded.info["rows_skipped"]) == (
        24,
        1,
    )  # the exact copy is not embedded
    table = out.scan().collect()
    counts = dict(table["dup_kind"].drop_nulls().value_counts().iter_rows())
    assert counts == {"exact": 1, "semantic": 4}
    summary = dedup_summary(
        out.scan(), pl.read_parquet(tmp_path / "work" / "ingest" / "*" / "part-*.parquet").lazy()
    )
    row = summary.row(0, named=True)
    assert (row["n_docs"], row["n_exact"], row["n_semantic"], row["n_fuzzy"]) == (25, 1, 4, 0)
