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

from curate.centering import Centering
from curate.dedup.table import SkipMarked
from curate.hashing import JSONValue
from curate.io import scan_parquet, write_table
from curate.records import read_record, write_record
from curate.stages import StageOutput
from pipelines.context import RunContext, table_files
from pipelines.data_steps import centred_embeddings, check_sources_kept, matrix, target_rows
from pruning.scores import (
    LABELLED_SCORES,
    SCORE_COLUMNS,
    EmbeddingScoreStage,
    TextScoreStage,
    assemble_scores,
    fit_scores,
    labelled_scores,
    sample_filter,
)


def score(ctx: RunContext) -> StageOutput:
    """Scores of every kept document (embedding part, text part, labelled part), all in the centred space."""
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
        stage = EmbeddingScoreStage(model=model, transform=centering.apply)
        ctx.executor.map_batches(stage, emb.files, tmp / "embedding", keep=keep, on_progress=progress)
        ctx.executor.map_batches(
            TextScoreStage(model=model), docs.files, tmp / "text", keep=keep, on_progress=progress
        )
        labelled = _labelled(ctx, keep)
        write_table(labelled.to_arrow(), tmp / "labelled" / "part-00000.parquet")
        write_record(ScoreStats(z_stats=model.z_stats, rows=n_kept, labelled_rows=labelled.height), tmp)
        return {"rows": n_kept, "fit_rows": sample.height, "labelled_rows": labelled.height}

    return ctx.commit(params, build)


def _target(ctx: RunContext) -> tuple[np.ndarray | None, list[str] | None]:
    """The embeddings and texts of the target's fit rows (content-hash order), or (None, None) without one."""
    if ctx.cfg.target is None:
        return None, None
    rows = target_rows(ctx, "fit")
    _, vectors = centred_embeddings(ctx, "embed.target", rows["doc_id"])
    return vectors, rows["text"].to_list()


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
    """The score step's record: per target signal the (median, IQR) of the target's own scores; the
    documents scored and how many of them are labelled."""

    z_stats: dict[str, tuple[float, float]]
    rows: int
    labelled_rows: int


def read_scores(out: StageOutput) -> pl.LazyFrame:
    """One row per scored document: doc_id, source, label, cluster_id, proto_dist, class_proto_dist,
    target_dist, target_ngram, el2n, lm_loss and difficulty (EL2N when every document is labelled)."""
    text, embedding, labelled = (
        scan_parquet(table_files(out.path, name), what=f"score table '{name}'")
        for name in ("text", "embedding", "labelled")
    )
    stats = read_record(ScoreStats, out.path)
    every = stats.labelled_rows == stats.rows and stats.rows > 0
    return assemble_scores(text, embedding, labelled, stats.z_stats, every_labelled=every).sort("doc_id")


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
