"""Mixture steps: proxy runs on a mixture grid (calibrate.mixture), source weights (fit.mixture) and the
prediction for the final selection as written (predict).

calibrate.mixture runs `pipelines.calibrate.calibrate_mixtures` (grid x pilot sizes x repeats, as executor
tasks) and the OT of each grid mixture (executor tasks); fit.mixture fits Projektor (Kang et al. 2023) or a
named baseline through `scaling.mixture.plan_weights`; predict trains the proxy on samples of the selection
itself and reports its target metric at the budget with the seed-to-seed spread.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from curate.errors import FitWarning, InputError
from curate.hashing import JSONValue
from curate.io import write_table
from curate.manifest import Law, Prediction
from curate.records import write_record
from curate.stages import StageOutput
from pipelines.calibrate import calibrate_mixtures, mixture_ot, run_seed, run_tasks
from pipelines.context import RunContext
from pipelines.proxy_data import calibration_pool, proxy_data
from pipelines.score_step import read_scores
from scaling.simplex import simplex_grid

Z90 = 1.6448536269514722


@dataclass(frozen=True)
class MixtureFit:
    """fit.mixture's record: weights per source, how they were chosen, the law and its held-out error."""

    weights: dict[str, float]
    method: str
    fallback: str | None
    n: int  # the budget in documents
    law: Law
    holdout_mae: float
    mean_mae: float


def budget_docs(ctx: RunContext) -> int:
    """The budget in documents: samples as given, tokens over the mean kept document's token size."""
    from pipelines.selection import doc_size

    b = ctx.cfg.budget
    if b.unit == "samples":
        return b.value
    docs = ctx.output("ingest").scan().select("doc_id", size=doc_size(pl.col("n_chars"), unit=b.unit))
    sizes = read_scores(ctx.output("score")).select("doc_id").join(docs, on="doc_id").collect()["size"]
    return max(1, round(b.value / float(sizes.mean())))  # type: ignore[arg-type]


def calibrate_mixture(ctx: RunContext) -> StageOutput:
    """Proxy runs of every grid mixture at every pilot size (repeats), and each mixture's OT distance."""
    p = ctx.cfg.proxy
    sources = sorted(ctx.cfg.sources)
    params: dict[str, JSONValue] = {
        **p.model_dump(mode="json"),
        "ot_max_points": ctx.cfg.mixture.ot_max_points,
        "seed": ctx.cfg.seed,
    }

    def build(tmp: Path) -> dict[str, Any]:
        data = proxy_data(ctx, calibration_pool(ctx))
        pools = data.source_rows()
        missing = sorted(set(sources) - set(pools))
        if missing:
            raise InputError(f"source(s) {missing} have no documents the '{p.kind}' proxy can train on.")
        grid = simplex_grid(len(sources), divisions=p.grid_divisions)
        runs = calibrate_mixtures(
            data.task, pools, grid, p.pilot_sizes, executor=ctx.executor, repeats=p.repeats, seed=ctx.cfg.seed
        )
        distance = data.distance(max_points=ctx.cfg.mixture.ot_max_points, seed=ctx.cfg.seed)
        ot = mixture_ot(distance, grid, executor=ctx.executor)
        runs = runs.join(pl.DataFrame({"mixture": np.arange(len(grid)), "ot": ot}), on="mixture")
        write_table(runs.to_arrow(), tmp / "runs.parquet")
        return {"runs": runs.height, "mixtures": len(grid)}

    return ctx.commit(params, build)


def fit_mixture(ctx: RunContext) -> StageOutput:
    """Source weights (Projektor's optimum, or a named baseline) at the budget, with Projektor's held-out
    error on every 4th grid mixture against the mean predictor's (worse: fall back to the best grid run)."""
    from scaling.mixture import plan_weights
    from scaling.projektor import fit_projektor

    m = ctx.cfg.mixture
    n_budget = budget_docs(ctx)
    params: dict[str, JSONValue] = {**m.model_dump(mode="json"), "n": n_budget, "seed": ctx.cfg.seed}

    def build(tmp: Path) -> dict[str, Any]:
        runs = pl.read_parquet(ctx.output("calibrate.mixture").path / "runs.parquet")
        sources = sorted(ctx.cfg.sources)
        sizes = dict(read_scores(ctx.output("score")).group_by("source").len().collect().iter_rows())
        held = (pl.col("mixture") % 4) == 3
        n1 = int(runs["n"].max())  # type: ignore[arg-type]
        model = fit_projektor(runs.filter(~held), sources=sources)
        test = runs.filter(held & (pl.col("n") == n1))
        predicted = np.array(
            [model.predict(n1, [r[s] for s in sources]).value for r in test.iter_rows(named=True)]
        )
        observed = test["metric"].to_numpy()
        mae = float(np.mean(np.abs(predicted - observed))) if len(observed) else 0.0
        train_mean = float(runs.filter(~held & (pl.col("n") == n1))["metric"].mean())  # type: ignore[arg-type]
        mean_mae = float(np.mean(np.abs(train_mean - observed))) if len(observed) else 0.0
        method, fallback = m.method, None
        if method == "projektor" and mae > mean_mae:
            method = "best_grid"
            fallback = (
                f"Projektor's held-out MAE {mae:.4g} is worse than the mean predictor's {mean_mae:.4g}; "
                "weights fall back to the best calibrated mixture (best_grid)"
            )
            warnings.warn(f"fit.mixture: {fallback}.", FitWarning, stacklevel=2)
        plan = plan_weights(
            runs, sources=sources, n=n_budget, method=method, source_sizes=sizes, seed=ctx.cfg.seed
        )
        full = fit_projektor(runs, sources=sources)
        coef = {f"n{f.n}.c{i}": float(c) for f in full.fits for i, c in enumerate(f.coef)}
        write_table(
            test.select(mixture="run", observed="metric")
            .with_columns(predicted=pl.Series(predicted, dtype=pl.Float64))
            .to_arrow(),
            tmp / "holdout.parquet",
        )
        record = MixtureFit(
            weights=dict(plan.weights),
            method=method,
            fallback=fallback,
            n=n_budget,
            law=Law(form="projektor_kang2023_stage1", params=coef, fit_error=mae),
            holdout_mae=mae,
            mean_mae=mean_mae,
        )
        write_record(record, tmp)
        return {"n": n_budget, "holdout_mae": mae, "mean_holdout_mae": mean_mae, "method": method}

    return ctx.commit(params, build)


def selection_sample(selection: pl.DataFrame, n: int, seed: int) -> np.ndarray:
    """Indices into `selection` of `n` draws from its multiset (a document `repeats` times), in order."""
    units = np.repeat(np.arange(selection.height), selection["repeats"].to_numpy())
    rng = np.random.default_rng(seed)
    if n >= len(units):
        return units[rng.permutation(len(units))]
    return units[rng.choice(len(units), size=n, replace=False)]


def predict_selection(ctx: RunContext) -> StageOutput:
    """The proxy's target metric for the selection as written (weights, buckets, repeats, pruning): proxy
    runs trained on draws of the selection at the budget (and the pilot sizes below it), over seeds."""
    p = ctx.cfg.proxy
    n_budget = ctx.record("fit.mixture", MixtureFit).n
    params: dict[str, JSONValue] = {**p.model_dump(mode="json"), "n": n_budget, "seed": ctx.cfg.seed}

    def build(tmp: Path) -> dict[str, Any]:
        selection = pl.read_parquet(ctx.output("select").path / "selection.parquet").sort("doc_id")
        labels = ctx.output("ingest").scan().select("doc_id", "label")
        frame = selection.lazy().join(labels, on="doc_id", how="left", maintain_order="left").collect()
        data = proxy_data(ctx, frame.select("doc_id", "source", "label"))
        row_of = dict(zip(data.pool["doc_id"].to_list(), data.pool["row"].to_list(), strict=True))
        rows = np.array([row_of.get(d, -1) for d in frame["doc_id"].to_list()], dtype=np.int64)
        sizes = sorted({*(s for s in p.pilot_sizes if s < n_budget), n_budget})
        runs = []
        for s in range(p.seeds):
            draws = rows[selection_sample(frame, n_budget, run_seed(ctx.cfg.seed, 7, s))]
            draws = draws[draws >= 0]
            runs.append(
                {
                    "run": f"selection/s{s}",
                    "rows": draws.tolist(),
                    "checkpoints": [min(n, len(draws)) for n in sizes],
                    "n_unique": int(frame.height),
                    "seed": run_seed(ctx.cfg.seed, 8, s),
                }
            )
        curves = run_tasks(data.task, runs, executor=ctx.executor)
        write_table(curves.to_arrow(), tmp / "curves.parquet")
        at = curves.filter(pl.col("samples_seen") == pl.col("samples_seen").max())["eval_loss"].to_numpy()
        spread = float(np.std(at, ddof=1)) if len(at) > 1 else 0.0
        value = float(np.mean(at))
        prediction = Prediction(
            metric=f"proxy ({p.kind}) eval loss on the target",
            value=value,
            interval=(value - Z90 * spread, value + Z90 * spread),
            method=(
                f"proxy runs trained on {n_budget} draws of the final selection (its weights, buckets, "
                f"pruning and repeats), mean over {len(at)} seeds; interval: 90% normal band of the "
                "seed spread"
            ),
        )
        write_record(prediction, tmp)
        return {"value": value, "seed_sd": spread}

    return ctx.commit(params, build)
