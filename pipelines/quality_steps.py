"""Quality steps: pruning per source (prune), quality-bucket proxy curves (calibrate.quality) and the QQT
plan per source (fit.quality).

prune applies `pruning.policies` (Sorscher et al. 2022: keep-hard when abundant, keep-easy when scarce);
calibrate.quality cuts each source's pruned pool into quantile buckets of `[score] bucket_metric`, runs
`pipelines.calibrate.calibrate_buckets` (a run per bucket, rule union and seed) and measures the coverage
gap of every union of buckets (`scaling.coverage`); fit.quality fits QQT (Goyal et al. 2024) per source,
chooses its union law on the rule unions and picks the union of buckets for the source's share.
"""

from __future__ import annotations

import itertools
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curate.errors import FitError, FitWarning
from curate.hashing import JSONValue
from curate.io import write_table
from curate.manifest import Law
from curate.records import write_record
from curate.stages import StageOutput
from pipelines.calibrate import calibrate_buckets
from pipelines.context import RunContext
from pipelines.mixture_steps import MixtureFit, docs_per_source
from pipelines.proxy_data import ProxyData, calibration_pool, proxy_data, proxy_kind
from pipelines.score_step import read_scores
from pruning.policies import recommend_policy, select
from scaling.buckets import quality_buckets
from scaling.coverage import COVERAGE_SCHEMA, coverage_gaps
from scaling.qqt import PRIOR_TAU, QQTFit, fit_qqt
from scaling.qqt_union import GAMMAS, KAPPAS, fit_union_law

COVERAGE_ALL = 6  # a source with at most this many buckets gets the coverage gap of every union of them


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
    """One source's QQT choice: its buckets (0 = best), the predicted loss there with its interval, how the
    fit went (union rule, identifiability, fallbacks) and the buckets excluded with their reasons."""

    buckets: tuple[int, ...]
    error: float | None
    interval: tuple[float, float] | None
    note: str
    excluded: dict[str, str]


@dataclass(frozen=True)
class QualityPlan:
    """fit.quality's record: per source the chosen buckets and the fitted laws."""

    sources: dict[str, SourceQuality]
    laws: dict[str, Law]


def prune(ctx: RunContext) -> StageOutput:
    """Per source, the policy (auto: Sorscher's abundant/scarce rule at the source's share of the budget)
    keeps `keep_fraction` of the deduplicated documents, balanced per cluster or class."""
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
        n_docs = docs_per_source(ctx, fit.weights, fit.n)
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
    metric = ctx.cfg.score.bucket_metric
    kept = ctx.table("prune", "prune").filter("kept").select("doc_id").collect()
    table = (
        read_scores(ctx.output("score")).select("doc_id", "source", metric).collect().join(kept, on="doc_id")
    )
    return pl.concat(
        quality_buckets(table.filter(pl.col("source") == s), column=metric, n_buckets=ctx.cfg.score.n_buckets)
        for s in sorted(ctx.cfg.sources)
    ).filter(pl.col("bucket").is_not_null())


def bucket_epochs(ctx: RunContext) -> list[float]:
    """Passes at which a bucket's curve is measured: all of `[proxy] bucket_epochs` for the byte LM and the
    probe; for the n-gram proxy only those within the first epoch (a count model's repeats only sharpen its
    counts, so its curves say nothing of repetition: tau then comes from the prior)."""
    epochs = list(ctx.cfg.proxy.bucket_epochs)
    return [e for e in epochs if e <= 1.0] if proxy_kind(ctx.cfg.proxy.kind, "quality") == "ngram" else epochs


def _pool_table(table: pl.DataFrame) -> pl.DataFrame:
    """One row per calibration pool: each bucket of each source, and the held-out unions that choose the
    union law: its best bucket with the next (q0+q1, alike) and with the last (q0+qN, the most unlike)."""
    singles = table.group_by("source", "bucket").len("n_docs").sort("source", "bucket")
    rows = []
    for (source,), part in singles.group_by("source", maintain_order=True):
        buckets = part["bucket"].to_list()
        rows += [
            {"pool": f"{source}/q{b}", "source": source, "buckets": [b], "union": False} for b in buckets
        ]
        for other in sorted({buckets[1], buckets[-1]}) if len(buckets) > 2 else ():
            pair = [buckets[0], other]
            name = f"{source}/q{'+'.join(map(str, pair))}"
            rows.append({"pool": name, "source": source, "buckets": pair, "union": True})
    return pl.DataFrame(
        rows,
        schema={"pool": pl.String, "source": pl.String, "buckets": pl.List(pl.Int32), "union": pl.Boolean},
    )


def calibrate_quality(ctx: RunContext) -> StageOutput:
    """Quality buckets of each source's pruned pool and, for each source with a share of the budget, the proxy
    curves of every bucket and of two held-out unions (a run per pool and seed, each curve point a run trained
    that many passes)."""
    s, p = ctx.cfg.score, ctx.cfg.proxy
    params: dict[str, JSONValue] = {
        **p.model_dump(mode="json"),
        "bucket_metric": s.bucket_metric,
        "n_buckets": s.n_buckets,
        "seed": ctx.cfg.seed,
    }

    def build(tmp: Path) -> dict[str, Any]:
        table = bucket_table(ctx)
        data = proxy_data(ctx, calibration_pool(ctx), eval_on="fit", role="quality")
        weights = ctx.record("fit.mixture", MixtureFit).weights
        pools = _pool_table(table).filter(pl.col("source").is_in([s for s, w in weights.items() if w > 0]))
        members = {}
        for row in pools.iter_rows(named=True):
            ids = table.filter((pl.col("source") == row["source"]) & pl.col("bucket").is_in(row["buckets"]))
            rows = data.rows(ids["doc_id"])
            if len(rows):
                members[row["pool"]] = rows
        curves = calibrate_buckets(
            data.task,
            members,
            executor=ctx.executor,
            epochs=bucket_epochs(ctx),
            max_rows=p.lm_bucket_rows if proxy_kind(p.kind, "quality") == "lm" else p.bucket_rows,
            seeds=p.seeds,
            seed=ctx.cfg.seed,
        )
        sizes = table.group_by("source", "bucket").len("n_docs")
        coverage = _coverage(data, members, pools, sizes, seed=ctx.cfg.seed)
        write_table(table.select("doc_id", "source", "bucket").to_arrow(), tmp / "buckets.parquet")
        write_table(pools.to_arrow(), tmp / "pools.parquet")
        write_table(sizes.sort("source", "bucket").to_arrow(), tmp / "sizes.parquet")
        write_table(curves.to_arrow(), tmp / "curves.parquet")
        write_table(coverage.to_arrow(), tmp / "coverage.parquet")
        return {"pools": len(members), "runs": curves.select("pool", "seed").n_unique()}

    return ctx.commit(params, build)


def _coverage(
    data: ProxyData,
    members: dict[str, np.ndarray],
    pools: pl.DataFrame,
    sizes: pl.DataFrame,
    *,
    seed: int,
) -> pl.DataFrame:
    """source + `COVERAGE_SCHEMA`: per source, the coverage gap of every union of its buckets that QQT ranks
    (all of them up to `COVERAGE_ALL` buckets, else those of 2 or 3), in the proxy pool's embedding space
    against the target's eval rows."""
    parts = []
    singles = pools.filter(~pl.col("union") & pl.col("pool").is_in(list(members)))
    for (source,), part in singles.group_by("source", maintain_order=True):
        names = part["pool"].to_list()
        n_docs = dict(sizes.filter(pl.col("source") == source).select("bucket", "n_docs").iter_rows())
        full = {p: n_docs[b[0]] for p, b in part.select("pool", "buckets").iter_rows()}
        largest = len(names) if len(names) <= COVERAGE_ALL else 3
        unions = [c for k in range(2, largest + 1) for c in itertools.combinations(names, k)]
        gaps = coverage_gaps({p: data.x[members[p]] for p in names}, data.x_eval, full, unions, seed=seed)
        parts.append(gaps.with_columns(source=pl.lit(source)))
    return pl.concat(parts) if parts else pl.DataFrame(schema={**COVERAGE_SCHEMA, "source": pl.String})


def _union_law(
    ctx: RunContext,
    singles: pl.DataFrame,
    proxy_sizes: dict[str, int],
    gaps: dict[str, float],
    curves: pl.DataFrame,
    pools: pl.DataFrame,
    pool_of: dict[tuple[str, int], str],
) -> tuple[QQTFit, str]:
    """QQT on one source's bucket curves under its union law and why: the rule gamma is the config's, or
    (auto) chosen on the held-out union runs, shared when the curves hold no repetition (no rule changes a
    prediction they can check); the coverage coefficient kappa and the floor d are chosen on those runs too
    (`scaling.qqt_union.fit_union_law`); intervals widened by the error the law makes on them."""
    p, rule = ctx.cfg.proxy, ctx.cfg.quality.union_rule
    members = {
        r["pool"]: [pool_of[(r["source"], b)] for b in r["buckets"]]
        for r in pools.filter("union").iter_rows(named=True)
    }
    observed = curves.filter(pl.col("pool").is_in(list(members))).select(
        "pool", "seed", "samples_seen", "error"
    )
    if observed.is_empty():
        fit = fit_qqt(singles, proxy_sizes, n_bootstrap=p.bootstrap, seed=ctx.cfg.seed)
        return fit, "union rule shared, no coverage credit (no held-out union runs)"
    if rule != "auto":
        gammas, why = [1.0 if rule == "paper" else 0.0], f"union rule '{rule}' (config)"
    elif max(bucket_epochs(ctx)) <= 1.0:
        gammas, why = [0.0], "union rule shared (no repetition in the proxy's curves to choose by)"
    else:
        gammas, why = list(GAMMAS), "union rule gamma = {gamma:g}{edge} chosen on held-out unions"
    law = fit_union_law(
        singles,
        proxy_sizes,
        observed,
        members,
        gaps,
        gammas=gammas,
        n_bootstrap=p.bootstrap,
        seed=ctx.cfg.seed,
    )
    fit = law.fit
    edge = " (its range's edge)" if len(gammas) > 1 and fit.gamma in (GAMMAS[0], GAMMAS[-1]) else ""
    why = why.format(gamma=fit.gamma, edge=edge) + f"; coverage kappa = {fit.kappa:g}"
    why += " (its range's edge)" if fit.kappa >= KAPPAS[-1] else ""
    why += (
        " (no held-out union has a coverage gap: not identified)"
        if law.rule_table["kappa"].n_unique() == 1
        else ""
    )
    why += f"; floor d = {fit.d:.3g} chosen with them"
    return fit, why + f"; held-out union error {law.union_mare:.2%}"


def fit_quality(ctx: RunContext) -> StageOutput:
    """Per source: QQT on its bucket curves (proxy-sized pools, seeds), the union rule, then the fit moved to
    full bucket sizes and the union of usable buckets of lowest predicted loss at the source's share."""
    params: dict[str, JSONValue] = {
        "bootstrap": ctx.cfg.proxy.bootstrap,
        "union_rule": ctx.cfg.quality.union_rule,
        "seed": ctx.cfg.seed,
    }

    def build(tmp: Path) -> dict[str, Any]:
        curves = ctx.table("calibrate.quality", "curves").collect()
        pools = ctx.table("calibrate.quality", "pools").collect()
        sizes = ctx.table("calibrate.quality", "sizes").collect()
        coverage = ctx.table("calibrate.quality", "coverage").collect()
        singles = pools.filter(~pl.col("union")).select(
            "pool", "source", bucket=pl.col("buckets").list.first()
        )
        bucket_of = dict(singles.select("pool", "bucket").iter_rows())
        pool_of = {(s, b): p for p, s, b in singles.iter_rows()}
        fit_mix = ctx.record("fit.mixture", MixtureFit)
        n_docs = docs_per_source(ctx, fit_mix.weights, fit_mix.n)
        choice: dict[str, SourceQuality] = {}
        laws: dict[str, Law] = {}
        reports, unions = [], []
        for source in sorted(ctx.cfg.sources):
            mine = pools.filter((pl.col("source") == source) & ~pl.col("union"))
            if n_docs[source] == 0 or mine.is_empty():
                choice[source] = SourceQuality(
                    buckets=(), error=None, interval=None, note="no share of the budget", excluded={}
                )
                continue
            full = {
                pool_of[(source, b)]: n
                for b, n in sizes.filter(pl.col("source") == source).select("bucket", "n_docs").iter_rows()
            }
            names = mine["pool"].to_list()
            c = curves.filter(pl.col("pool").is_in(names)).select("pool", "seed", "samples_seen", "error")
            proxy = dict(
                curves.filter(pl.col("pool").is_in(names))
                .group_by("pool")
                .agg(pl.col("pool_rows").first())
                .iter_rows()
            )
            gaps = dict(coverage.filter(pl.col("source") == source).select("union", "gap").iter_rows())
            mine_all = pools.filter(pl.col("source") == source)
            try:
                fit, why = _union_law(ctx, c, proxy, gaps, curves, mine_all, pool_of)
            except FitError as exc:  # unusable curves: keep every bucket, say why
                note = f"QQT fit failed ({exc}); all buckets kept"
                warnings.warn(f"fit.quality: source '{source}': {note}.", FitWarning, stacklevel=2)
                choice[source] = SourceQuality(
                    buckets=tuple(sorted(bucket_of[n] for n in names)),
                    error=None,
                    interval=None,
                    note=note,
                    excluded={},
                )
                continue
            reports.append(_fitted(fit, c).with_columns(source=pl.lit(source)))
            planned = fit.with_pool_sizes(full)
            excluded = {
                p: r for p, r in planned.params.select("pool", "excluded").iter_rows() if r is not None
            }
            if not planned.usable:
                note = f"every bucket is flat or harmful ({excluded}); the best one by b kept"
                warnings.warn(f"fit.quality: source '{source}': {note}.", FitWarning, stacklevel=2)
                best_pool = min(names, key=lambda n: planned.theta.b[planned.names.index(n)])
                value = planned.predict_interval([best_pool], n_docs[source])
                chosen: list[str] = [best_pool]
            else:
                row = planned.best_union([n_docs[source]]).row(0, named=True)
                chosen, value = row["pools"], (row["error"], row["lo"], row["hi"])
                grid = sorted({max(1, round(n_docs[source] * f)) for f in (0.25, 0.5, 1.0, 2.0, 4.0)})
                unions.append(
                    planned.best_union(grid).select(
                        "budget",
                        source=pl.lit(source),
                        union=pl.lit(f"{source}: ") + pl.col("pools").list.join("+"),
                        predicted="error",
                    )
                )
            flags = (
                ("d identified" if fit.d_identified else "d not identified (grid best)")
                + ", tau "
                + ("fitted" if all(fit.tau_identified) else f"prior {PRIOR_TAU:.3g} where unobserved")
            )
            choice[source] = SourceQuality(
                buckets=tuple(sorted(bucket_of[p] for p in chosen)),
                error=float(value[0]),
                interval=None if math.isnan(value[1]) else (float(value[1]), float(value[2])),
                note=f"{why}; {flags}; fit rmse(log) {fit.rmse_log:.3g} vs seed spread {fit.seed_spread:.3g}",
                excluded=excluded,
            )
            laws[f"qqt/{source}"] = Law(
                form="qqt_goyal2024",
                params={
                    **planned.to_laws(),
                    "seed_spread": fit.seed_spread,
                    "d_identified": float(fit.d_identified),
                },
                fit_error=fit.rmse_log,
            )
        fitted = pl.concat(reports) if reports else pl.DataFrame(schema=FITTED)
        write_table(fitted.to_arrow(), tmp / "fitted.parquet")
        chosen_unions = pl.concat(unions) if unions else pl.DataFrame(schema=UNIONS)
        write_table(chosen_unions.to_arrow(), tmp / "unions.parquet")
        write_record(QualityPlan(sources=choice, laws=laws), tmp)
        return {"sources": len(choice)}

    return ctx.commit(params, build)


FITTED = {
    "bucket": pl.String,
    "samples_seen": pl.Int64,
    "observed": pl.Float64,
    "predicted": pl.Float64,
    "source": pl.String,
}
UNIONS = {"budget": pl.Int64, "source": pl.String, "union": pl.String, "predicted": pl.Float64}


def _fitted(fit: QQTFit, curves: pl.DataFrame) -> pl.DataFrame:
    """bucket, samples_seen, observed (mean over seeds), predicted: the report's curves."""
    mean = (
        curves.group_by("pool", "samples_seen")
        .agg(observed=pl.col("error").mean())
        .sort("pool", "samples_seen")
    )
    predicted = [fit.predict([p], n) for p, n in mean.select("pool", "samples_seen").iter_rows()]
    return mean.select(bucket="pool", samples_seen="samples_seen", observed="observed").with_columns(
        predicted=pl.Series(predicted, dtype=pl.Float64)
    )
