"""The corpus-wide steps: ingest, text dedup (exact + fuzzy), embed (duplicates skipped), semantic dedup.

Each is `step(ctx) -> StageOutput` and calls the one library function of its concept; per-batch work goes
through the executor (Ray tasks and actors, or this process), so `curate run`, the stage commands, the
library calls and the benchmarks run the same code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from curate.centering import Centering, CenteringAccumulator
from curate.config import SourceConfig
from curate.dedup.passes import TextDedup, add_semantic, text_duplicates
from curate.dedup.table import SkipMarked, combine_duplicates
from curate.dedup.target import MIN_OVERLAP, TargetCopies, TargetIndex
from curate.embeddings import (
    Embed,
    check_same_space,
    default_cache_dir,
    distill_static,
    read_embeddings,
    read_space,
    resolve_kind,
)
from curate.errors import ConfigError, InputError, StageError
from curate.hashing import JSONValue, target_split
from curate.ingest import ingest_sources, resolve_source
from curate.io import parquet_files, write_table
from curate.records import write_record
from curate.report import IngestCounts
from curate.schema import DEDUP
from curate.stages import StageOutput, key_params, load_committed
from pipelines.context import RunContext


def _ingest(ctx: RunContext, sources: dict[str, SourceConfig], where: Path) -> StageOutput:
    fields = {(s.text_field, s.label_field) for s in sources.values()}
    if len(fields) > 1:
        raise ConfigError(
            "config keys 'sources.*.text_field' / 'label_field' must be the same for every source "
            f"(curate.ingest reads one field pair per call); got {sorted(fields, key=str)}."
        )
    text_field, label_field = fields.pop()
    globs = {name: str(ctx.cfg.resolve(src.path)) for name, src in sorted(sources.items())}
    n_files = sum(len(resolve_source(name, pattern)) for name, pattern in globs.items())
    report = ingest_sources(
        globs,
        where,
        text_field=text_field,
        label_field=label_field,
        max_chars=ctx.cfg.ingest.max_chars,
        executor=ctx.executor,
        on_progress=ctx.report("files", n_files),
        committed_only=ctx.committed_only,
    )
    for row in report.sources.iter_rows(named=True):
        if row["documents"] == 0:
            reasons = report.reasons.filter(pl.col("source") == row["source"])
            detail = ", ".join(f"{r}={n}" for _, r, n in reasons.iter_rows()) or "no rejects"
            raise InputError(
                f"source '{row['source']}' has no usable rows: {row['rows_read']} read, all rejected "
                f"({detail}); see `curate report {where}`."
            )
    out = load_committed(where, "ingest", report.key)
    if out is None:
        raise StageError(f"ingest did not commit under '{where}'.")
    return out


def ingest(ctx: RunContext) -> StageOutput:
    """Sources -> documents + rejects (rows read = kept + rejected), one task per shard group."""
    return _ingest(ctx, dict(ctx.cfg.sources), ctx.work)


def ingest_target(ctx: RunContext) -> StageOutput:
    """The target sample -> its own documents table under `work/target/` (never trained on)."""
    if ctx.cfg.target is None:
        raise ConfigError("config key 'target' is required for this step (a sample of the data you want).")
    return _ingest(ctx, {"target": ctx.cfg.target}, ctx.work / "target")


def target_rows(ctx: RunContext, part: Literal["fit", "holdout"]) -> pl.DataFrame:
    """The target's rows of one side of its split (doc_id, text, label, content_hash), in content-hash order:
    "fit" rows fit the target scores and are the calibration eval set, "holdout" rows score the prediction."""
    if ctx.cfg.target is None:
        raise ConfigError("config key 'target' is required for this step (a sample of the data you want).")
    rows = ctx.output("ingest.target").scan().select("doc_id", "text", "label", "content_hash")
    frame = rows.sort("content_hash", "doc_id").collect()
    fit, held = target_split(frame["content_hash"], ctx.cfg.target.holdout, seed=ctx.cfg.seed)
    return frame.filter(pl.Series(fit if part == "fit" else held))


def text_dedup_params(ctx: RunContext) -> TextDedup:
    """The [dedup] keys as the text passes' parameters."""
    d = ctx.cfg.dedup
    return TextDedup(
        exact=d.exact,
        fuzzy=d.fuzzy,
        threshold=d.fuzzy_threshold,
        num_perm=d.num_perm,
        ngram=d.ngram,
        shingle=d.shingle,
        seed=ctx.cfg.seed,
    )


def dedup_text(ctx: RunContext) -> StageOutput:
    """Exact then fuzzy duplicates of every document (before embedding): the DEDUP side table."""
    docs = ctx.output("ingest")
    params = text_dedup_params(ctx)

    def build(tmp: Path) -> dict[str, Any]:
        from pipelines.ray_executor import RayExecutor

        if isinstance(ctx.executor, RayExecutor):
            from pipelines.dedup_ray import text_duplicates_ray

            text_duplicates_ray(docs.files, tmp, params, executor=ctx.executor)
        else:
            frame = docs.scan().select("doc_id", "text", "content_hash").collect()
            write_table(text_duplicates(frame, params).to_arrow().cast(DEDUP), tmp / "part-00000.parquet")
        return _marked_counts(StageOutput("dedup.text", "", tmp))

    return ctx.commit(params.params(), build)


def _marked_counts(out: StageOutput) -> dict[str, Any]:
    counts = out.scan().group_by("dup_kind").len().collect()
    marked = {str(k): int(n) for k, n in counts.iter_rows() if k is not None}
    return {"rows": int(counts["len"].sum()), "duplicates": marked}


def check_sources_kept(ctx: RunContext, dedup: StageOutput) -> int:
    """Documents `dedup` keeps; InputError naming a configured source it leaves empty."""
    docs = ctx.output("ingest").scan().select("doc_id", "source")
    marked = dedup.scan().filter(pl.col("dup_of").is_not_null()).select("doc_id", "dup_kind")
    counts = (
        docs.join(marked, on="doc_id", how="left")
        .group_by("source")
        .agg(kept=pl.col("dup_kind").is_null().sum(), n=pl.len())
        .collect(engine="streaming")
    )
    kept = dict(counts.select("source", "kept").iter_rows())
    for source in sorted(ctx.cfg.sources):
        if kept.get(source, 0) == 0:
            raise InputError(
                f"source '{source}' is empty after dedup: every document duplicates another; remove it from "
                "[sources] or relax [dedup]."
            )
    return int(counts["kept"].sum())


def embed(ctx: RunContext) -> StageOutput:
    """Embeddings of the documents the text passes kept (duplicates are never embedded)."""
    dedup = ctx.output("dedup.text")
    kept = check_sources_kept(ctx, dedup)
    keep = SkipMarked(tuple(str(f) for f in dedup.files))
    return _embed(ctx, ctx.output("ingest"), keep=keep, total=kept)


def embed_target(ctx: RunContext) -> StageOutput:
    """Embeddings of the target sample, in the same space as the sources'."""
    counts = ctx.record("ingest.target", IngestCounts).sources
    return _embed(
        ctx, ctx.output("ingest.target"), keep=None, total=sum(c.documents for c in counts.values())
    )


def _embed(ctx: RunContext, docs: StageOutput, *, keep: SkipMarked | None, total: int) -> StageOutput:
    cfg = ctx.cfg.embed
    tier = resolve_kind(cfg.kind)
    cache = Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir()
    stage = Embed(embedder=tier, cache_dir=str(cache), batch_size=cfg.batch_size)

    def build(tmp: Path) -> dict[str, Any]:
        if tier == "static":
            distill_static(cache)  # once, before any worker loads it
        counts = ctx.executor.map_batches(
            stage, docs.files, tmp, keep=keep, on_progress=ctx.report("docs", total)
        )
        return {"rows_in": counts.rows_in, "rows_out": counts.rows_out, "rows_skipped": counts.rows_skipped}

    return ctx.commit({"stage": stage.name, "version": stage.version, **key_params(stage)}, build)


def center(ctx: RunContext) -> StageOutput:
    """The mean embedding of the deduplicated pool (the documents the dedup step keeps; never the target),
    from running sums over the parts:
    the centring of the space every score, prototype and OT distance uses (`curate.centering`)."""

    def build(tmp: Path) -> dict[str, Any]:
        acc = CenteringAccumulator()
        keep = SkipMarked(tuple(str(f) for f in ctx.output("dedup").files))
        for path in ctx.output("embed").files:
            for batch in pq.ParquetFile(path).iter_batches(columns=["doc_id", "embedding"]):
                acc.add(matrix(keep(pa.Table.from_batches([batch])).column("embedding")))
        centering = acc.result()
        write_record(centering, tmp)
        return {"rows": centering.n, "digest": centering.digest}

    return ctx.commit({}, build)


def matrix(column: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An (n, dim) float32 matrix from a fixed-size-list embedding column."""
    flat = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return flat.flatten().to_numpy(zero_copy_only=False).reshape(len(flat), flat.type.list_size)


def centred_embeddings(
    ctx: RunContext, step: str, ids: pl.Series | None = None
) -> tuple[list[str], np.ndarray]:
    """doc_ids and centred vectors of embedding step `step` (all rows, or the rows of `ids` in that order)."""
    all_ids, x, space = read_embeddings(ctx.output(step))
    check_same_space(space, read_space(ctx.output("embed")), what=f"step '{step}' and the pool's embeddings")
    if ids is not None:
        rows = pl.DataFrame({"doc_id": all_ids, "row": np.arange(len(all_ids))})
        picked = ids.to_frame("doc_id").join(rows, on="doc_id", how="left", maintain_order="left")["row"]
        if picked.null_count():
            raise StageError(
                f"embeddings of step '{step}' lack {picked.null_count()} of the documents asked for."
            )
        all_ids, x = ids.to_list(), x[picked.to_numpy()]
    return all_ids, ctx.record("center", Centering).apply(x)


def dedup(ctx: RunContext) -> StageOutput:
    """The final DEDUP table: the text passes' marks, then the pool's copies of target documents, then
    SemDeDup among the embedded documents left."""
    text = ctx.output("dedup.text")
    d, target = ctx.cfg.dedup, ctx.cfg.target is not None
    if not d.semantic and not target:
        return text
    params: dict[str, JSONValue] = {
        "semantic_eps": d.semantic_eps if d.semantic else None,
        "target_overlap": MIN_OVERLAP if target else None,
        "seed": ctx.cfg.seed,
    }

    def build(tmp: Path) -> dict[str, Any]:
        table = text.scan().collect()
        if target:
            rows = ctx.output("ingest.target").scan().select("doc_id", "text", "content_hash").collect()
            stage = TargetCopies(index=TargetIndex.build(rows))
            keep = SkipMarked(tuple(str(f) for f in text.files))
            ctx.executor.map_batches(stage, ctx.output("ingest").files, tmp / "target", keep=keep)
            table = combine_duplicates(table, pl.read_parquet(parquet_files(tmp / "target")))
        if d.semantic:
            ids, vectors, _ = read_embeddings(ctx.output("embed"))
            marked = table.filter(pl.col("dup_of").is_not_null())["doc_id"]
            left = ~pl.Series(ids).is_in(marked.implode()).to_numpy()
            table = add_semantic(
                table, pl.Series("doc_id", ids).filter(left), vectors[left], eps=d.semantic_eps,
                seed=ctx.cfg.seed,
            )  # fmt: skip
        write_table(table.sort("doc_id").to_arrow().cast(DEDUP), tmp / "part-00000.parquet")
        return _marked_counts(StageOutput("dedup", "", tmp))

    return ctx.commit(params, build)
