"""Quality steps: pruning per source (prune), quality-bucket proxy curves (calibrate.quality) and the QQT
plan per source (fit.quality).

prune applies `pruning.policies` (Sorscher et al. 2022: keep-hard when abundant, keep-easy when scarce);
calibrate.quality cuts each source's pruned pool into quantile buckets of `[score] bucket_metric` and runs
`pipelines.calibrate.calibrate_buckets` (a run per bucket and seed, checkpoints at whole epochs);
fit.quality fits QQT (Goyal et al. 2024) per source and picks the union of buckets for the source's share.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from curate.errors import FitError, FitWarning
from curate.hashing import JSONValue
from curate.io import write_table
from curate.manifest import Law
from curate.records import write_record
from curate.stages import StageOutput
from pipelines.calibrate import calibrate_buckets
from pipelines.context import RunContext
from pipelines.mixture_steps import MixtureFit
from pipelines.proxy_data import calibration_pool, proxy_data
from pipelines.score_step import read_scores
from pipelines.selection import split_budget


@dataclass(frozen=True)
class SourcePrune:
    """How one source was pruned: policy, the score cut it implies, candidates before pruning."""

    policy: str
    threshold: float | None
    n_pool: int
    keep_fraction: float


@dataclass(frozen=True)
class PrunePlan:
    """prune's record: the per-source pruning."""

    sources: dict[str, SourcePrune]


@dataclass(frozen=True)
class SourceQuality:
    """One source's QQT choice: its buckets (0 = best), the predicted error there, why (fallbacks)."""

    buckets: tuple[int, ...]
    error: float | None
    note: str | None


@dataclass(frozen=True)
class QualityPlan:
    """fit.quality's record: per source the chosen buckets and the fitted laws."""

    sources: dict[str, SourceQuality]
    laws: dict[str, Law]


def prune(ctx: RunContext) -> StageOutput:
    """Per source, the policy (auto: Sorscher's abundant/scarce rule at the source's share of the budget)
    keeps `keep_fraction` of the deduplicated documents, balanced per cluster or class."""
    from pruning.policies import recommend_policy, select

    s = ctx.cfg.score
    params: dict[str, JSONValue] = {
        "policy": s.policy,
        "balance": s.balance,
        "keep_fraction": s.keep_fraction,
        "prune_metric": s.prune_metric,
        "seed": ctx.cfg.seed,
    }

    def build(tmp: Path) -> dict[str, Any]:
        table = read_scores(ctx.output("score")).collect()
        fit = ctx.record("fit.mixture", MixtureFit)
        n_docs = split_budget(fit.weights, fit.n)
        parts, plans = [], {}
        for source in sorted(ctx.cfg.sources):
            pool = table.filter(pl.col("source") == source)
            policy = s.policy
            if policy == "auto":
                policy = recommend_policy(pool.height, max(1, n_docs[source])).policy
            threshold = None
            keep = 1.0 if policy == "all" else s.keep_fraction
            if policy == "all":
                chosen = pool.select("doc_id", kept=pl.lit(True), drop_reason=pl.lit(None, pl.String))
            else:
                chosen = select(
                    pool,
                    keep_fraction=keep,
                    policy=policy,
                    balance=s.balance,
                    score=s.prune_metric,
                    seed=ctx.cfg.seed,
                )
                kept = pool.join(chosen.filter("kept"), on="doc_id")[s.prune_metric]
                if policy != "random" and not kept.is_empty():
                    threshold = float(kept.min() if policy == "keep_hard" else kept.max())  # type: ignore[arg-type]
            parts.append(chosen.with_columns(source=pl.lit(source)))
            plans[source] = SourcePrune(
                policy=policy, threshold=threshold, n_pool=pool.height, keep_fraction=keep
            )
        write_table(pl.concat(parts).sort("doc_id").to_arrow(), tmp / "prune.parquet")
        write_record(PrunePlan(sources=plans), tmp)
        return {"sources": len(plans)}

    return ctx.commit(params, build)


def bucket_table(ctx: RunContext) -> pl.DataFrame:
    """doc_id, source, bucket of every pruned-in document (bucket_metric quantiles per source, 0 = best)."""
    from scaling.buckets import quality_buckets

    metric = ctx.cfg.score.bucket_metric
    kept = pl.read_parquet(ctx.output("prune").path / "prune.parquet").filter("kept").select("doc_id")
    table = (
        read_scores(ctx.output("score")).select("doc_id", "source", metric).collect().join(kept, on="doc_id")
    )
    return pl.concat(
        quality_buckets(table.filter(pl.col("source") == s), column=metric, n_buckets=ctx.cfg.score.n_buckets)
        for s in sorted(ctx.cfg.sources)
    ).filter(pl.col("bucket").is_not_null())


def calibrate_quality(ctx: RunContext) -> StageOutput:
    """Quality buckets of each source's pruned pool and their proxy curves (a run per bucket and seed)."""
    s, p = ctx.cfg.score, ctx.cfg.proxy
    params: dict[str, JSONValue] = {
        **p.model_dump(mode="json"),
        "bucket_metric": s.bucket_metric,
        "n_buckets": s.n_buckets,
        "seed": ctx.cfg.seed,
    }

    def build(tmp: Path) -> dict[str, Any]:
        table = bucket_table(ctx)
        data = proxy_data(ctx, calibration_pool(ctx))
        members = {}
        for (source, bucket), part in table.group_by("source", "bucket"):
            rows = data.rows(part["doc_id"])
            if len(rows):
                members[f"{source}/q{bucket}"] = rows
        curves = calibrate_buckets(
            data.task,
            members,
            executor=ctx.executor,
            epochs=p.epochs,
            max_rows=p.bucket_rows,
            seeds=p.seeds,
            seed=ctx.cfg.seed,
        )
        pools = (
            table.group_by("source", "bucket")
            .len("n_docs")
            .with_columns(pool=pl.format("{}/q{}", "source", "bucket"))
            .sort("source", "bucket")
        )
        write_table(table.select("doc_id", "source", "bucket").to_arrow(), tmp / "buckets.parquet")
        write_table(pools.to_arrow(), tmp / "pools.parquet")
        write_table(curves.to_arrow(), tmp / "curves.parquet")
        return {"pools": len(members), "runs": curves.select("pool", "seed").n_unique()}

    return ctx.commit(params, build)


def fit_quality(ctx: RunContext) -> StageOutput:
    """Per source: QQT on its bucket curves (proxy-sized pools) moved to full bucket sizes, and the best
    union of its top buckets at the source's share of the budget."""
    from scaling.qqt import fit_qqt

    params: dict[str, JSONValue] = {"bootstrap": ctx.cfg.proxy.bootstrap, "seed": ctx.cfg.seed}

    def build(tmp: Path) -> dict[str, Any]:
        cal = ctx.output("calibrate.quality").path
        curves = pl.read_parquet(cal / "curves.parquet")
        pools = pl.read_parquet(cal / "pools.parquet")
        fit_mix = ctx.record("fit.mixture", MixtureFit)
        n_docs = split_budget(fit_mix.weights, fit_mix.n)
        choice: dict[str, SourceQuality] = {}
        laws: dict[str, Law] = {}
        unions, fitted = [], []
        for source in sorted(ctx.cfg.sources):
            pp = pools.filter(pl.col("source") == source)
            if n_docs[source] == 0 or pp.is_empty():
                choice[source] = SourceQuality(buckets=(), error=None, note="no share of the budget")
                continue
            names = pp["pool"].to_list()
            bucket_of = dict(zip(names, pp["bucket"].to_list(), strict=True))
            c = (
                curves.filter(pl.col("pool").is_in(names))
                .group_by("pool", "samples_seen")
                .agg(error=pl.col("eval_loss").mean())
            )
            sizes = dict(
                curves.filter(pl.col("pool").is_in(names))
                .group_by("pool")
                .agg(pl.col("pool_rows").first())
                .iter_rows()
            )
            try:
                fit = fit_qqt(c, sizes, n_bootstrap=ctx.cfg.proxy.bootstrap, seed=ctx.cfg.seed)
            except FitError as exc:  # e.g. curves that do not decrease: keep every bucket, say why
                note = f"QQT fit failed ({exc}); all buckets kept"
                warnings.warn(f"fit.quality: source '{source}': {note}.", FitWarning, stacklevel=2)
                choice[source] = SourceQuality(
                    buckets=tuple(sorted(bucket_of.values())), error=None, note=note
                )
                continue
            predicted = [fit.predict([q], int(n)) for q, n in c.select("pool", "samples_seen").iter_rows()]
            fitted.append(
                c.select(bucket="pool", samples_seen="samples_seen", observed="error").with_columns(
                    predicted=pl.Series(predicted, dtype=pl.Float64)
                )
            )
            fit = fit.with_pool_sizes(dict(zip(names, pp["n_docs"].to_list(), strict=True)))
            best = fit.best_union([n_docs[source]]).row(0, named=True)
            chosen = tuple(sorted(bucket_of[p] for p in best["pools"]))
            choice[source] = SourceQuality(buckets=chosen, error=float(best["error"]), note=None)
            laws[f"qqt/{source}"] = Law(
                form="qqt_goyal2024", params=fit.law.params, fit_error=fit.law.rmse_log
            )
            grid = sorted({max(1, round(n_docs[source] * f)) for f in (0.25, 0.5, 1.0, 2.0, 4.0)})
            unions.append(
                fit.unions(grid).select(
                    "budget", union=pl.format("{} top-{}", pl.lit(source), "n_pools"), predicted="error"
                )
            )
        if unions:
            write_table(pl.concat(unions).to_arrow(), tmp / "unions.parquet")
            write_table(pl.concat(fitted).to_arrow(), tmp / "fitted.parquet")
        write_record(QualityPlan(sources=choice, laws=laws), tmp)
        return {"sources": len(choice)}

    return ctx.commit(params, build)
