"""The score step: fit every score on a bounded, seeded sample, then score each kept document batch by batch.

The fit (prototypes, target direction, target classifier, n-gram LM) holds at most `[score] fit_rows`
documents on the driver; the two batch scorers run through the executor over the embeddings and the
documents (duplicates skipped), so no step gathers the corpus. Labelled pools add EL2N and class
prototypes in-process over their labelled rows. `read_scores` joins the parts into one frame per document.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from curate.centering import Centering, fit_centering
from curate.dedup.table import SkipMarked
from curate.embeddings import EmbedderKind
from curate.errors import InputError
from curate.hashing import JSONValue
from curate.io import parquet_files, write_table
from curate.records import read_record, write_record
from curate.stages import StageOutput
from pipelines.context import RunContext
from pipelines.data_steps import centred_embeddings, check_sources_kept, matrix
from pruning.scores import (
    LABELLED_SCORES,
    SCORE_COLUMNS,
    EmbeddingScoreStage,
    TextScoreStage,
    fit_scores,
    labelled_scores,
    target_z,
)

PARTS = ("embedding", "text")


def sample_filter(n_rows: int, fit_rows: int, seed: int) -> pl.Expr:
    """A seeded, order-free sample of about `fit_rows` of `n_rows` documents, chosen by hash of doc_id."""
    if n_rows <= fit_rows:
        return pl.lit(True)
    cut = int(fit_rows / n_rows * 2**32)
    return (pl.col("doc_id").hash(seed=seed) % (2**32)) < cut


def score(ctx: RunContext) -> StageOutput:
    """Scores of every kept document (embedding part, text part, labelled part)."""
    s = ctx.cfg.score
    params: dict[str, JSONValue] = {"n_clusters": s.n_clusters, "fit_rows": s.fit_rows, "seed": ctx.cfg.seed}

    def build(tmp: Path) -> dict[str, Any]:
        docs, emb, final = ctx.output("ingest"), ctx.output("embed"), ctx.output("dedup")
        keep = SkipMarked(tuple(str(f) for f in final.files))
        n_kept = check_sources_kept(ctx, final)
        kept = (
            emb.scan()
            .select("doc_id")
            .join(
                final.scan().filter(pl.col("dup_of").is_not_null()).select("doc_id"), on="doc_id", how="anti"
            )
        )
        pick = kept.filter(sample_filter(n_kept, s.fit_rows, ctx.cfg.seed))
        sample = (
            pick.join(emb.scan(), on="doc_id")
            .join(docs.scan().select("doc_id", "text"), on="doc_id")
            .sort("doc_id")
            .collect()
        )
        centering = ctx.record("center", Centering)
        t_vectors, t_texts = _target(ctx)
        model = fit_scores(
            sample["doc_id"].to_list(),
            centering.apply(matrix(sample["embedding"].to_arrow())),
            sample["text"].to_list(),
            target_vectors=t_vectors,
            target_texts=t_texts,
            k=s.n_clusters or None,
            seed=ctx.cfg.seed,
        )
        progress = ctx.report("docs", 2 * n_kept)
        ctx.executor.map_batches(
            EmbeddingScoreStage(model=model), emb.files, tmp / "embedding", keep=keep, on_progress=progress
        )
        ctx.executor.map_batches(
            TextScoreStage(model=model), docs.files, tmp / "text", keep=keep, on_progress=progress
        )
        labelled = _labelled(ctx, keep)
        write_table(labelled.to_arrow(), tmp / "labelled" / "part-00000.parquet")
        write_record(ScoreStats(z_stats=model.z_stats), tmp)
        return {"rows": n_kept, "fit_rows": sample.height, "labelled_rows": labelled.height}

    return ctx.commit(params, build)


def _target(ctx: RunContext) -> tuple[np.ndarray | None, list[str] | None]:
    """The target's embeddings and texts (same order), or (None, None) without a target."""
    if ctx.cfg.target is None:
        return None, None
    ids, vectors = centred_embeddings(ctx, "embed.target")
    texts = ctx.output("ingest.target").scan().select("doc_id", "text").collect()
    texts = pl.DataFrame({"doc_id": ids}).join(texts, on="doc_id", how="left", maintain_order="left")
    return vectors, texts["text"].fill_null("").to_list()


def _labelled(ctx: RunContext, keep: SkipMarked) -> pl.DataFrame:
    """EL2N and class prototypes of the kept labelled documents (empty without two labelled classes)."""
    labelled = ctx.output("ingest").scan().filter(pl.col("label").is_not_null()).select("doc_id", "label")
    ids = ctx.output("embed").scan().select("doc_id").join(labelled, on="doc_id").sort("doc_id").collect()
    kept = pl.from_arrow(keep(ids.to_arrow()))
    assert isinstance(kept, pl.DataFrame)
    if kept.is_empty():
        return pl.DataFrame(schema=LABELLED_SCORES)
    doc_ids, x = centred_embeddings(ctx, "embed", kept["doc_id"])
    return labelled_scores(doc_ids, x, kept["label"].to_list(), seed=ctx.cfg.seed)


@dataclass(frozen=True)
class ScoreStats:
    """The score step's record: per target signal the (median, IQR) of the target's own scores."""

    z_stats: dict[str, tuple[float, float]]


def read_scores(out: StageOutput) -> pl.LazyFrame:
    """One row per scored document: doc_id, source, label, cluster_id, proto_dist, class_proto_dist,
    target_dist, target_ngram, el2n, lm_loss and difficulty (EL2N when every document is labelled)."""
    parts = [pl.scan_parquet([str(f) for f in parquet_files(out.path / p)]) for p in PARTS]
    labelled = pl.scan_parquet(str(out.path / "labelled" / "part-00000.parquet"))
    n_rows, n_labelled = int(out.info["rows"]), int(out.info["labelled_rows"])
    frame = parts[1].join(parts[0], on="doc_id").join(labelled, on="doc_id", how="left")
    hardness = pl.col("el2n") if n_labelled == n_rows and n_rows else pl.col("lm_loss")
    stats = read_record(ScoreStats, out.path).z_stats
    return frame.with_columns(target_z(stats), difficulty=hardness).sort("doc_id")


def score_frame(
    data: pl.DataFrame,
    *,
    target: list[str] | None,
    label_field: str | None = None,
    n_clusters: int | None = None,
    seed: int = 0,
    embedder: EmbedderKind = "auto",
) -> pl.DataFrame:
    """The score step's scores for an in-memory frame (doc_id, text[, label_field]), in its row order."""
    from curate._validation import check_columns
    from curate.embeddings import load_embedder

    required = {"doc_id": pl.String, "text": pl.String, **({label_field: None} if label_field else {})}
    check_columns(data, required, what="score_dataset() data")
    if data.is_empty():
        raise InputError("score_dataset() data holds no rows; give at least one document.")
    if data["doc_id"].n_unique() != data.height:
        raise InputError(f"score_dataset() data must hold each doc_id once; got {data.height} rows.")
    model = load_embedder(embedder)
    texts = data["text"].fill_null("").to_list()
    raw = model.encode(texts)
    centering = fit_centering(raw)  # the pool's own mean, as the center step fits it
    x = centering.apply(raw)
    t_vectors = None
    if target is not None:
        if not any(t.strip() for t in target):
            raise InputError("score target holds no non-empty text; give target documents with text.")
        t_vectors = centering.apply(model.encode(target))
    ids = data["doc_id"].to_list()
    fitted = fit_scores(ids, x, texts, target_vectors=t_vectors, target_texts=target, k=n_clusters, seed=seed)
    labels = (
        data[label_field].cast(pl.String) if label_field else pl.Series([None] * data.height, dtype=pl.String)
    )
    batch = pa.table({"doc_id": ids, "source": [""] * data.height, "label": labels.to_arrow(), "text": texts})
    text = pl.from_arrow(fitted.text_scores(batch))
    emb = pl.from_arrow(fitted.embedding_scores(pa.array(ids, pa.string()), x))
    assert isinstance(text, pl.DataFrame) and isinstance(emb, pl.DataFrame)
    labelled = labelled_scores(ids, x, labels.to_list(), seed=seed)
    frame = text.drop("source", "label").join(emb, on="doc_id", maintain_order="left")
    frame = frame.join(labelled, on="doc_id", how="left", maintain_order="left")
    every = labelled.height == data.height
    hardness = pl.col("el2n") if every else pl.col("lm_loss")
    return frame.with_columns(target_z(fitted.z_stats), difficulty=hardness).select(
        "doc_id", *SCORE_COLUMNS_OUT
    )


SCORE_COLUMNS_OUT = (
    "cluster_id",
    "proto_dist",
    "class_proto_dist",
    "target_z",
    "target_dist",
    "target_ngram",
    "target_lm",
    "el2n",
    "lm_loss",
    "difficulty",
)


def summarize_scores(scores: pl.LazyFrame) -> pl.DataFrame:
    """Per source and score: n, n_null, mean, min, deciles q10..q90, max, and a 10-bin histogram between
    that score's min and max over all sources."""
    long = (
        scores.select("doc_id", "source", *SCORE_COLUMNS)
        .unpivot(index=["doc_id", "source"], on=list(SCORE_COLUMNS), variable_name="score")
        .with_columns(pl.col("value").cast(pl.Float64).fill_nan(None))
        .collect()
    )
    span = long.group_by("score").agg(lo=pl.col("value").min(), hi=pl.col("value").max())
    binned = long.join(span, on="score").with_columns(
        bin=((pl.col("value") - pl.col("lo")) / (pl.col("hi") - pl.col("lo")) * 10)
        .fill_nan(0.0)
        .floor()
        .clip(0, 9)
        .cast(pl.Int32)
    )
    deciles = [pl.col("value").quantile(q / 10, "linear").alias(f"q{q * 10}") for q in range(1, 10)]
    order = {name: i for i, name in enumerate(SCORE_COLUMNS)}
    return (
        binned.group_by("source", "score")
        .agg(
            *deciles,
            n=pl.len(),
            n_null=pl.col("value").null_count(),
            mean=pl.col("value").mean(),
            min=pl.col("value").min(),
            max=pl.col("value").max(),
            hist=pl.concat_list([(pl.col("bin") == b).sum() for b in range(10)]),
        )
        .sort(pl.col("source"), pl.col("score").replace_strict(order, return_dtype=pl.Int32))
        .select(
            "source",
            "score",
            "n",
            "n_null",
            "mean",
            "min",
            *(f"q{q}" for q in range(10, 100, 10)),
            "max",
            "hist",
        )
    )
