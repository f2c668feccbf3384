"""The last steps: the selection table (select) and the manifest, exports and report (publish).

select realises the plan exactly: per source, the pruned documents of its chosen buckets (best first),
repeated so that their total size is the source's integer share of the budget (`pipelines.selection`).
publish writes manifest.json (with the prediction made for that selection), selection.parquet, the exports
and report.html, committed together; every row read ends in one accounting reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from curate.config import CurateConfig
from curate.errors import StageError
from curate.exports import file_sha256, write_exports, write_selection
from curate.hashing import JSONValue
from curate.html_report import ReportData, write_report
from curate.manifest import (
    Budget,
    Filter,
    MixtureManifest,
    Prediction,
    Provenance,
    Selection,
    SourcePlan,
    write_manifest,
)
from curate.records import write_record
from curate.report import IngestCounts, IngestReport
from curate.stages import CODE_VERSION, StageOutput
from pipelines.context import RunContext
from pipelines.mixture_steps import MixtureFit
from pipelines.proxy_data import proxy_statement
from pipelines.quality_steps import PrunePlan, QualityPlan
from pipelines.score_step import read_scores
from pipelines.selection import doc_size, realised_share, selection_table, split_budget


@dataclass(frozen=True)
class SourceSelection:
    """What select took from one source: documents, size units, epochs over them."""

    n_selected: int
    units: int
    repeats: float
    tokens: int  # estimated tokens trained, repeats included


@dataclass(frozen=True)
class SelectionSummary:
    """select's record: per source what was taken, the planned shares, and the table's sha256."""

    sha256: str
    sources: dict[str, SourceSelection]
    targets: dict[str, int]


def sizes(ctx: RunContext) -> pl.DataFrame:
    """doc_id, size (budget units) of every ingested source document."""
    unit = ctx.cfg.budget.unit
    return ctx.output("ingest").scan().select("doc_id", size=doc_size(pl.col("n_chars"), unit=unit)).collect()


def select(ctx: RunContext) -> StageOutput:
    """The selection table: per source, its chosen buckets' pruned documents in score order, repeated to
    exactly its share of the budget."""
    b, metric = ctx.cfg.budget, ctx.cfg.score.bucket_metric
    params: dict[str, JSONValue] = {"unit": b.unit, "value": b.value}

    def build(tmp: Path) -> dict[str, Any]:
        fit = ctx.record("fit.mixture", MixtureFit)
        targets = split_budget(fit.weights, b.value)
        quality = ctx.record("fit.quality", QualityPlan)
        kept = ctx.table("prune", "prune").filter("kept").select("doc_id").collect()
        table = (
            ctx.table("calibrate.quality", "buckets")
            .collect()
            .join(kept, on="doc_id")
            .join(read_scores(ctx.output("score")).select("doc_id", metric).collect(), on="doc_id")
            .join(sizes(ctx), on="doc_id")
        )
        pools = {}
        for source in sorted(ctx.cfg.sources):
            chosen = list(quality.sources[source].buckets)
            pool = table.filter((pl.col("source") == source) & pl.col("bucket").is_in(chosen))
            pools[source] = pool.sort(metric, "doc_id").select("doc_id", "size")
        sel = selection_table(pools, targets, budget=b.value)
        tokens = (
            ctx.output("ingest").scan().select("doc_id", tokens=doc_size(pl.col("n_chars"), unit="tokens"))
        )
        written = (
            sel.lazy()
            .join(table.lazy().select("doc_id", "size"), on="doc_id")
            .join(tokens, on="doc_id")
            .group_by("source")
            .agg(pl.len(), pl.col("size").sum(), (pl.col("tokens") * pl.col("repeats")).sum())
            .collect()
        )
        rows = {s: (int(n), int(u), int(t)) for s, n, u, t in written.iter_rows()}
        summary = {}
        for source in sorted(ctx.cfg.sources):  # what is written: rows, their units, passes, tokens
            n, units, trained = rows.get(source, (0, 0, 0))
            summary[source] = SourceSelection(
                n_selected=n, units=units, repeats=targets[source] / units if units else 0.0, tokens=trained
            )
        got = realised_share(sel, table.select("doc_id", "size"))
        for source, want in targets.items():
            slack = 0 if b.unit == "samples" else int(pools[source]["size"].max() or 0)  # type: ignore[arg-type]
            if want and abs(got.get(source, 0) - want) > slack:
                raise StageError(
                    f"selection for '{source}' realises {got.get(source, 0)} {b.unit}, planned {want}."
                )
        sha = write_selection(sel, tmp / "selection.parquet")
        write_record(SelectionSummary(sha256=sha, sources=summary, targets=targets), tmp)
        return {"rows": sel.height}

    return ctx.commit(params, build)


def accounting(ctx: RunContext, selection: pl.DataFrame) -> pl.DataFrame:
    """source, reason, n: every row read ends in one reason (ingest rejects, duplicates, pruned, bucket not
    chosen, kept), so per source the counts sum to the rows read."""
    rejects = IngestReport.from_stage(ctx.output("ingest")).reasons.select("source", "reason", n="rows")
    docs = ctx.output("ingest").scan().select("doc_id", "source")
    dups = (
        ctx.output("dedup")
        .scan()
        .filter(pl.col("dup_kind").is_not_null())
        .join(docs, on="doc_id")
        .group_by("source", "dup_kind")
        .len("n")
        .collect()
    )
    pruned = ctx.table("prune", "prune").collect()
    dropped = pruned.filter(~pl.col("kept")).group_by("source", "drop_reason").len("n")
    kept = pruned.filter("kept").select("doc_id", "source")
    in_union = kept.join(selection.select("doc_id"), on="doc_id")
    outside = kept.join(in_union, on="doc_id", how="anti").group_by("source").len("n")
    final = in_union.group_by("source").len("n")
    n = pl.col("n").cast(pl.Int64)
    parts = [
        rejects.with_columns(n),
        dups.select("source", reason=pl.format("dup_{}", "dup_kind"), n=n),
        dropped.select("source", reason=pl.format("pruned_{}", "drop_reason"), n=n),
        outside.select("source", reason=pl.lit("not_selected"), n=n),
        final.select("source", reason=pl.lit("kept"), n=n),
    ]
    return pl.concat(parts).sort("source", "reason")


def manifest_config(cfg: CurateConfig) -> dict[str, JSONValue]:
    """The config as recorded in provenance: the keys that change the result (not [ray], no speed knobs)."""
    data = cfg.dump()
    data.pop("ray")
    data["embed"] = {"kind": data["embed"]["kind"]}
    return data


def _provenance_inputs(*records: IngestCounts) -> dict[str, str]:
    """Input shard -> blake2b digest, from the ingest steps' records (`<source>/<relpath>@<digest>`)."""
    pairs = (item.rsplit("@", 1) for record in records for item in record.inputs)
    return dict(sorted((path, digest) for path, digest in pairs))


def build_manifest(ctx: RunContext) -> MixtureManifest:
    """The manifest of this run: per-source plans, budget, the selection's prediction, laws, provenance."""
    cfg = ctx.cfg
    fit = ctx.record("fit.mixture", MixtureFit)
    plans = ctx.record("prune", PrunePlan).sources
    quality = ctx.record("fit.quality", QualityPlan)
    summary = ctx.record("select", SelectionSummary)
    docs = ctx.output("ingest")
    n_docs = dict(docs.scan().group_by("source").len().collect().iter_rows())
    # a weight too small for one document of the budget selects nothing: the manifest states the mix written
    weights = {n: w if summary.sources[n].n_selected > 0 else 0.0 for n, w in fit.weights.items()}
    total = sum(weights.values())
    sources = tuple(
        SourcePlan(
            name=name,
            n_docs=int(n_docs.get(name, 0)),
            n_kept=summary.sources[name].n_selected,
            weight=weights[name] / total,
            repeats=summary.sources[name].repeats,
            filters=(
                Filter(
                    score=cfg.score.prune_metric,
                    policy=plans[name].policy,  # type: ignore[arg-type]
                    keep_fraction=plans[name].keep_fraction,
                    threshold=plans[name].threshold,
                ),
            ),
            buckets=quality.sources[name].buckets,
            tokens=summary.sources[name].tokens,
            note=_why(name, weights[name] / total, fit)
            + (f"; quality buckets: {quality.sources[name].note}" if quality.sources[name].buckets else ""),
        )
        for name in sorted(cfg.sources)
    )
    prediction = ctx.record("predict", Prediction)
    weights_note = fit.method if fit.fallback is None else f"{fit.method} (fallback: {fit.fallback})"
    if fit.refined is not None:
        weights_note += f", refined: {fit.refined}"
    return MixtureManifest(
        sources=sources,
        budget=Budget(unit=cfg.budget.unit, value=cfg.budget.value),
        prediction=Prediction(
            metric=prediction.metric,
            value=prediction.value,
            interval=prediction.interval,
            method=f"{prediction.method}; weights by {weights_note}; {proxy_statement(cfg.proxy)}",
        ),
        laws={"projektor": fit.law, **quality.laws},
        selection=Selection(path="selection.parquet", sha256=summary.sha256),
        provenance=Provenance(
            inputs=_provenance_inputs(
                ctx.record("ingest", IngestCounts), ctx.record("ingest.target", IngestCounts)
            ),
            config=manifest_config(cfg),
            code_version=CODE_VERSION,
            seed=cfg.seed,
        ),
    )


def _why(name: str, weight: float, fit: MixtureFit) -> str:
    """One sentence on a source's share: the law's loss for it alone against the mix's, or a baseline."""
    how = fit.method if fit.fallback is None else f"{fit.method} (a fallback)"
    alone = f"alone {fit.alone[name]:.4g} vs the mix's {fit.mixed:.4g} (predicted loss at the budget)"
    if weight > 0:
        return f"weight {weight:.3f} by {how}; {alone}"
    if fit.weights.get(name, 0.0) > 0:
        return f"no share: its weight {fit.weights[name]:.2g} rounds to no document of the budget; {alone}"
    return f"no share: {how} gives it none; {alone}"


def publish(ctx: RunContext) -> StageOutput:
    """manifest.json, selection.parquet, the exports and report.html, committed together."""
    cfg = ctx.cfg
    params: dict[str, JSONValue] = {"config": manifest_config(cfg), "code_version": CODE_VERSION}

    def build(tmp: Path) -> dict[str, Any]:
        selection = ctx.table("select", "selection").collect()
        manifest = build_manifest(ctx)
        write_manifest(manifest, tmp / "manifest.json")
        paths = write_exports(manifest, selection, tmp)
        if file_sha256(paths["selection"]) != manifest.selection.sha256:
            raise StageError("the exported selection.parquet differs from the one the manifest pins.")
        metrics = {cfg.score.bucket_metric, cfg.score.prune_metric}
        write_report(
            ReportData(
                manifest=manifest,
                accounting=accounting(ctx, selection),
                scores=read_scores(ctx.output("score")).select("source", *sorted(metrics)).collect(),
                qqt_curves=ctx.table("fit.quality", "fitted").collect(),
                qqt_choice=ctx.table("fit.quality", "unions").collect(),
                projektor_holdout=ctx.table("fit.mixture", "holdout").collect(),
                title=f"Curate run: {len(cfg.sources)} sources, budget {cfg.budget.value} {cfg.budget.unit}",
            ),
            tmp / "report.html",
        )
        return {"files": sorted(p.name for p in tmp.iterdir())}

    return ctx.commit(params, build)
