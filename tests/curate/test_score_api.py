"""`curate.score_dataset`, the committed `scores` side table and `curate score`, on real Wikipedia text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curate.api import embed_texts, ingest, score_dataset, score_documents, score_summary
from curate.cli import main
from curate.embeddings import EmbeddingSpace
from curate.errors import EmbeddingSpaceError, InputError, SchemaError
from curate.stages import latest_committed

SCORES_DTYPES = {
    "doc_id": pl.String,
    "cluster_id": pl.Int32,
    "proto_dist": pl.Float32,
    "class_proto_dist": pl.Float32,
    "difficulty": pl.Float32,
    "target_sim": pl.Float32,
}


@pytest.fixture(scope="module")
def docs(wiki_docs: pl.DataFrame) -> pl.DataFrame:
    """24 labelled Wikipedia summaries cut to 200 characters, plus one empty text."""
    head = wiki_docs.slice(200, 24).rename({"id": "doc_id"}).with_columns(pl.col("text").str.slice(0, 200))
    empty = pl.DataFrame({"doc_id": ["empty"], "text": [""], "label": ["People"]})
    return pl.concat([head.select("doc_id", "text", "label"), empty])


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, docs: pl.DataFrame) -> Path:
    """A work dir with two ingested sources (jsonl with text and label) and a target shard beside it."""
    root = tmp_path_factory.mktemp("score")
    for name, part in (("a", docs.head(14)), ("b", docs.slice(14, 10))):
        (root / "src" / name).mkdir(parents=True)
        part.select("text", "label").write_ndjson(root / "src" / name / "part.jsonl")
    (root / "target").mkdir()
    docs.slice(0, 5).select("text").write_ndjson(root / "target" / "t.jsonl")
    ingest({"a": str(root / "src" / "a"), "b": str(root / "src" / "b")}, root / "work", label_field="label")
    return root


def test_score_dataset_on_a_frame_matches_an_independent_target_distance(docs: pl.DataFrame) -> None:
    """One row per document with the SCORES columns; target_sim = 1 - cos(z, mean target direction)."""
    target = docs["text"].head(5).to_list()
    got = score_dataset(docs, target=target, label_column="label", seed=0, embedder="minilm")
    assert got.schema == pl.Schema(SCORES_DTYPES)
    assert got["doc_id"].to_list() == docs["doc_id"].to_list()
    z = embed_texts(docs["text"].to_list(), embedder="minilm").astype(np.float64)
    t = embed_texts(target, embedder="minilm").astype(np.float64)
    mean = t.mean(axis=0) / np.linalg.norm(t.mean(axis=0))
    np.testing.assert_allclose(got["target_sim"].to_numpy(), 1.0 - z @ mean, atol=1e-5)
    assert got.select(pl.all().null_count()).row(0) == (0,) * 6
    assert got.filter(pl.col("doc_id") == "empty")["proto_dist"].item() == pytest.approx(1.0)
    assert got["proto_dist"].is_between(0.0, 2.0).all()


def test_score_cli_commits_the_side_table_once_and_prints_histograms(
    work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`curate score` writes one row per document, prints per-source deciles, and a rerun does no work."""
    args = ["score", str(work / "work"), "--embedder", "minilm", "--label-field", "label"]
    assert main([*args, "--target", str(work / "target" / "*.jsonl")]) == 0
    printed = capsys.readouterr().out
    assert "proto_dist" in printed and "target_sim" in printed
    committed = latest_committed(work / "work", "scores")
    assert committed is not None
    scores = committed.scan().collect()
    documents = latest_committed(work / "work", "ingest")
    assert documents is not None
    assert sorted(scores["doc_id"]) == sorted(documents.scan().collect()["doc_id"])
    assert scores["target_sim"].null_count() == 0
    summary = score_summary(work / "work")
    assert summary.select("source", "score").rows() == [
        (s, c) for s in ("a", "b") for c in ("proto_dist", "class_proto_dist", "difficulty", "target_sim")
    ]
    assert summary.filter(pl.col("score") == "proto_dist")["n"].to_list() == [14, 10]
    assert [sum(h) for h in summary["hist"]] == list(summary["n"] - summary["n_null"])

    def boom(*_: object, **__: object) -> None:
        raise AssertionError("a committed score step must not refit")

    monkeypatch.setattr("pruning.prototypes.PrototypeScorer.fit", boom)
    again = score_documents(
        work / "work", target=str(work / "target" / "*.jsonl"), label_field="label", embedder="minilm"
    )
    assert again.key == committed.key


def test_score_work_dir_without_labels_uses_the_tiny_lm_loss(work: Path) -> None:
    """Unlabelled documents get difficulty from the tiny LM and no class_proto_dist or target_sim."""
    got = score_dataset(work / "work", embedder="minilm", seed=1)
    assert got.height == 24
    assert got["difficulty"].null_count() == 0
    assert got["class_proto_dist"].null_count() == got["target_sim"].null_count() == 24


def test_target_in_another_embedding_space_is_refused() -> None:
    """A data space that the target's embedder does not reproduce raises EmbeddingSpaceError."""
    from curate.api import _embed_target

    other = EmbeddingSpace("minilm", "someone-else", 384)
    with pytest.raises(EmbeddingSpaceError, match=r"score target mixes two embedding spaces"):
        _embed_target(["a text"], other, None)


@pytest.mark.parametrize(
    ("data", "kwargs", "exc", "match"),
    [
        (pl.DataFrame(schema={"doc_id": pl.String, "text": pl.String}), {}, InputError, r"holds no rows"),
        (pl.DataFrame({"doc_id": ["a"]}), {}, SchemaError, r"score_dataset\(\) data lacks column\(s\) text"),
        (pl.DataFrame({"doc_id": ["a", "a"], "text": ["x", "y"]}), {}, InputError, r"each doc_id once"),
        (pl.DataFrame({"doc_id": ["a"], "text": ["x"]}), {"label_column": "topic"}, SchemaError, r"topic"),
    ],
)
def test_score_dataset_rejects_bad_frames(
    data: pl.DataFrame, kwargs: dict[str, str], exc: type, match: str
) -> None:
    """Empty data, missing columns and duplicate doc_ids raise before any model is loaded."""
    with pytest.raises(exc, match=match):
        score_dataset(data, **kwargs)  # type: ignore[arg-type]


def test_score_work_dir_errors_name_the_problem(work: Path, tmp_path: Path) -> None:
    """No ingest output, or a label field the documents lack, raise a CurateError naming it."""
    with pytest.raises(InputError, match=r"has no committed ingest output"):
        score_documents(tmp_path)
    with pytest.raises(SchemaError, match=r"lacks column\(s\) topic"):
        score_documents(work / "work", label_field="topic")
    assert main(["score", str(tmp_path)]) == 2
