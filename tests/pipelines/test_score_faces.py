"""One truth for scores: `curate run` up to score and `score_dataset` on the kept documents agree, in the
centred space, with the target split both use; faces read the run a config selects in a shared work dir."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curate import corpora
from curate.api import read_documents, read_step, score_dataset, score_summary
from curate.cli import main
from curate.config import load_config
from curate.embeddings import read_embeddings
from pipelines.runner import PipelineRun, execute
from pipelines.score_step import read_scores

CONFIG = """seed = 3
[sources]
{sources}
[target]
path = "target/*.jsonl"
[embed]
kind = "static"
[score]
fit_rows = 100
"""
COLUMNS = ("cluster_id", "proto_dist", "target_z", "target_dist", "target_ngram", "target_lm", "lm_loss")


def write_corpus(root: Path, sources: tuple[str, ...] = ("geo", "rest")) -> Path:
    """geo: one Wikipedia topic with exact and near-duplicate copies of its own rows; rest: other topics;
    target: held-out rows of geo's topic. 250 documents in all, so fit_rows = 100 samples them."""
    docs = corpora.wiki(labelled_only=True, seed=1)
    geo = docs.filter(pl.col("label") == "Geography")["text"].to_list()[:150]
    rest = docs.filter(pl.col("label") != "Geography")["text"].to_list()[:90]
    near = [t.replace(" the ", " a ", 1) for t in geo[:5]]
    parts = {"geo": geo[:110] + geo[:5] + near, "rest": rest, "target": geo[110:150]}
    for name, texts in parts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "part.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    lines = "\n".join(f'{s} = "{s}/*.jsonl"' for s in sources)
    path = root / f"curate-{'-'.join(sources)}.toml"
    path.write_text(CONFIG.format(sources=lines))
    return path


@pytest.fixture(scope="module")
def scored(tmp_path_factory: pytest.TempPathFactory) -> PipelineRun:
    """The product path up to the score step, in-process."""
    root = tmp_path_factory.mktemp("faces")
    return execute(load_config(write_corpus(root)), work=root / "work", local=True, until=["score"])


def _kept(run: PipelineRun) -> pl.DataFrame:
    marked = run.outputs["dedup"].scan().filter(pl.col("dup_of").is_not_null()).select("doc_id")
    docs = run.outputs["ingest"].scan().select("doc_id", "text")
    return docs.join(marked, on="doc_id", how="anti").sort("doc_id").collect()


def test_run_and_score_dataset_give_the_same_scores(scored: PipelineRun) -> None:
    """The work dir's score table equals score_dataset on the kept documents (same target split, seed,
    fit_rows), every column to 1e-6."""
    kept = _kept(scored)
    assert scored.outputs["dedup"].info["duplicates"]["exact"] >= 5  # the planted copies were dropped
    assert kept.height > 100  # so fit_rows samples
    root = scored.outputs["ingest"].path.parents[2]
    frame = score_dataset(
        kept, target=str(root / "target" / "*.jsonl"), fit_rows=100, seed=3, holdout=0.5, embedder="static"
    )
    step = read_scores(scored.outputs["score"]).collect()
    joined = frame.join(step, on="doc_id", suffix="_step")
    assert joined.height == kept.height == step.height
    assert (joined["cluster_id"] == joined["cluster_id_step"]).all()
    for column in COLUMNS[1:]:
        np.testing.assert_allclose(
            joined[column].to_numpy(), joined[f"{column}_step"].to_numpy(), atol=1e-6, err_msg=column
        )


def _fit_rows_by_hand(texts: list[str], seed: int) -> list[bool]:
    """The target's fit side recomputed from the definition: blake2b-128 of the whitespace-folded NFC text,
    salted with the seed, below half of 2^64."""
    out = []
    for text in texts:
        h = hashlib.blake2b(" ".join(text.split()).encode(), digest_size=16).digest()
        draw = int.from_bytes(
            hashlib.blake2b(h + seed.to_bytes(8, "little"), digest_size=8).digest(), "little"
        )
        out.append(draw >= 2**63)
    return out


def test_target_dist_is_one_minus_cosine_in_the_centred_space(scored: PipelineRun) -> None:
    """target_dist = 1 - cos(z - mu, direction of the centred fit rows of the target), mu the kept pool's
    mean embedding: a NumPy recomputation from the committed embeddings."""
    kept = _kept(scored)
    ids, x, _ = read_embeddings(scored.outputs["embed"])
    rows = pl.DataFrame({"doc_id": ids, "row": np.arange(len(ids))}).join(kept, on="doc_id").sort("doc_id")
    z = x[rows["row"].to_numpy()].astype(np.float64)
    mu = z.mean(axis=0)
    t_ids, t_x, _ = read_embeddings(scored.outputs["embed.target"])
    t_docs = scored.outputs["ingest.target"].scan().select("doc_id", "text").collect()
    t_text = dict(zip(t_docs["doc_id"], t_docs["text"], strict=True))
    fit = np.array(_fit_rows_by_hand([t_text[i] for i in t_ids], seed=3))
    assert 0 < fit.sum() < len(fit)

    def centre(v: np.ndarray) -> np.ndarray:
        c = v.astype(np.float64) - mu
        return c / np.linalg.norm(c, axis=1, keepdims=True)

    direction = centre(t_x[fit]).mean(axis=0)
    direction /= np.linalg.norm(direction)
    expected = 1.0 - centre(z) @ direction
    step = read_scores(scored.outputs["score"]).collect().sort("doc_id")
    np.testing.assert_allclose(step["target_dist"].to_numpy(), expected, atol=1e-5)


def test_faces_read_the_run_their_config_selects(
    scored: PipelineRun, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A work dir holding runs of two configs: the library calls and `curate report` read the outputs of the
    config they are given, and the last run's without one."""
    root = scored.outputs["ingest"].path.parents[2]
    work = root / "work"
    both = root / "curate-geo-rest.toml"
    only = write_corpus(root, sources=("rest",))
    execute(load_config(only), work=work, local=True, until=["score"])  # the work dir's last run
    assert read_documents(work).collect()["source"].unique().to_list() == ["rest"]
    assert sorted(read_documents(work, config=both).collect()["source"].unique()) == ["geo", "rest"]
    assert sorted(score_summary(work, config=both)["source"].unique()) == ["geo", "rest"]
    assert score_summary(work)["source"].unique().to_list() == ["rest"]
    assert read_step(work, "score", config=both).key == scored.outputs["score"].key
    assert main(["report", str(work), "--config", str(both), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert sorted(report["sources"]) == ["geo", "rest"] and report["duplicates"]["geo"]["n_exact"] >= 5
    assert main(["report", str(work), "--json"]) == 0
    assert sorted(json.loads(capsys.readouterr().out)["sources"]) == ["rest"]
