"""`curate.score_dataset`, the score step and `curate score`, on real Wikipedia text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curate.api import embed_texts, ingest, read_step, score_dataset, score_documents, score_summary
from curate.cli import main
from curate.errors import InputError, SchemaError

SCORES_DTYPES = {
    "doc_id": pl.String,
    "cluster_id": pl.Int32,
    "proto_dist": pl.Float32,
    "class_proto_dist": pl.Float32,
    "target_z": pl.Float32,
    "target_dist": pl.Float32,
    "target_ngram": pl.Float32,
    "target_lm": pl.Float32,
    "el2n": pl.Float32,
    "lm_loss": pl.Float32,
    "difficulty": pl.Float32,
}


@pytest.fixture(scope="module")
def docs(wiki_docs: pl.DataFrame) -> pl.DataFrame:
    """60 labelled Wikipedia summaries, plus one empty text."""
    head = wiki_docs.slice(200, 60).rename({"id": "doc_id"})
    empty = pl.DataFrame({"doc_id": ["empty"], "text": [""], "label": ["People"]})
    return pl.concat([head.select("doc_id", "text", "label"), empty])


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory, docs: pl.DataFrame) -> Path:
    """A work dir with two ingested sources (jsonl with text and label) and a target shard beside it."""
    root = tmp_path_factory.mktemp("score")
    for name, part in (("a", docs.slice(0, 30)), ("b", docs.slice(30, 20))):
        (root / "src" / name).mkdir(parents=True)
        part.select("text", "label").write_ndjson(root / "src" / name / "part.jsonl")
    (root / "target").mkdir()
    docs.slice(50, 10).select("text").write_ndjson(root / "target" / "t.jsonl")
    ingest({"a": str(root / "src" / "a"), "b": str(root / "src" / "b")}, root / "work", label_field="label")
    return root


def test_score_dataset_on_a_frame_matches_an_independent_target_distance(docs: pl.DataFrame) -> None:
    """One row per document with every score column; target_dist = 1 - cos(z, mean target direction) in
    the space centred on the frame's own mean (NumPy recomputation)."""
    target = docs["text"].slice(50, 10).to_list()
    pool = docs.head(50)
    got = score_dataset(pool, target=target, label_field="label", holdout=0.0, seed=0, embedder="static")
    assert got.schema == pl.Schema(SCORES_DTYPES)
    assert got["doc_id"].to_list() == pool["doc_id"].to_list()
    z = embed_texts(pool["text"].to_list(), embedder="static").astype(np.float64)
    t = embed_texts(target, embedder="static").astype(np.float64)
    mean = z.mean(axis=0)

    def centre(x: np.ndarray) -> np.ndarray:
        c = x - mean
        return c / np.linalg.norm(c, axis=1, keepdims=True)

    direction = centre(t).mean(axis=0)
    direction /= np.linalg.norm(direction)
    np.testing.assert_allclose(got["target_dist"].to_numpy(), 1.0 - centre(z) @ direction, atol=1e-5)
    assert got.select("target_z", "target_ngram", "target_lm", "el2n").null_count().row(0) == (0, 0, 0, 0)
    assert got["difficulty"].to_list() == got["el2n"].to_list()  # every row labelled: EL2N
    assert got["proto_dist"].is_between(0.0, 2.0).all()


def test_score_cli_commits_once_and_prints_deciles(
    work: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`curate score WORK --target GLOB` scores every kept document, prints per-source deciles, and the
    library call with the same settings reuses the committed step."""
    target = str(work / "target" / "*.jsonl")
    assert main(["score", str(work / "work"), "--target", target, "--local"]) == 0
    printed = capsys.readouterr().out
    assert "proto_dist" in printed and "target_z" in printed
    committed = read_step(work / "work", "score")
    summary = score_summary(work / "work")
    by_source = summary.filter(pl.col("score") == "proto_dist").select("source", "n").rows()
    kept = pl.read_parquet(work / "work" / "embed" / "*" / "part-*.parquet").height
    assert sum(n for _, n in by_source) == kept
    assert [sum(h) for h in summary["hist"]] == list(summary["n"] - summary["n_null"])

    def boom(*_: object, **__: object) -> None:
        raise AssertionError("a committed score step must not refit")

    monkeypatch.setattr("pruning.scores.fit_scores", boom)
    assert score_documents(work / "work", target=target).key == committed.key


def test_unlabelled_scores_use_the_ngram_loss(docs: pl.DataFrame) -> None:
    """Without labels, difficulty is the n-gram LM's per-document loss; no class prototypes, no EL2N."""
    got = score_dataset(docs.head(40).drop("label"), seed=1, embedder="static")
    assert got["difficulty"].to_list() == got["lm_loss"].to_list()
    assert got["lm_loss"].null_count() == 0
    assert (
        got["class_proto_dist"].null_count() == got["el2n"].null_count() == got["target_z"].null_count() == 40
    )


@pytest.mark.parametrize(
    ("data", "kwargs", "exc", "match"),
    [
        (pl.DataFrame(schema={"doc_id": pl.String, "text": pl.String}), {}, InputError, r"holds no rows"),
        (pl.DataFrame({"doc_id": ["a"]}), {}, SchemaError, r"score_dataset\(\) data lacks column\(s\) text"),
        (pl.DataFrame({"doc_id": ["a", "a"], "text": ["x", "y"]}), {}, InputError, r"each doc_id once"),
        (pl.DataFrame({"doc_id": ["a"], "text": ["x"]}), {"label_field": "topic"}, SchemaError, r"topic"),
        (
            pl.DataFrame({"doc_id": ["a"], "text": ["x"]}),
            {"target": ["  "]},
            InputError,
            r"no non-empty text",
        ),
    ],
)
def test_score_dataset_rejects_bad_input(
    data: pl.DataFrame, kwargs: dict[str, object], exc: type, match: str
) -> None:
    """Empty data, missing columns, duplicate doc_ids and an empty target raise errors naming them."""
    with pytest.raises(exc, match=match):
        score_dataset(data, **kwargs)  # type: ignore[arg-type]


def test_score_work_dir_errors_name_the_problem(tmp_path: Path) -> None:
    """A work dir without an ingest is refused by the library call and the CLI (exit 2)."""
    with pytest.raises(InputError, match=r"has no sources yet; run `curate ingest"):
        score_documents(tmp_path)
    assert main(["score", str(tmp_path), "--local"]) == 2
