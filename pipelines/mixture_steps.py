"""Mixture steps: proxy runs on a mixture grid (calibrate.mixture), source weights (fit.mixture) and the
prediction for the final selection as written (predict).

calibrate.mixture runs `pipelines.calibrate.calibrate_mixtures`: every grid mixture at every pilot size
(nested samples of distinct documents, scaled down so that no pilot repeats a source's data), repeats, and
the OT distance of each pilot's own sample, all as executor tasks. fit.mixture fits Projektor
(`scaling.projektor.fit_projektor`: a mixture law per pilot size, a saturating size law across sizes) and
plans weights at the budget with `scaling.projektor.plan_weights`; predict trains the proxy on samples of
the selection itself and reports its target metric at the budget with the seed-to-seed spread.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import t as student_t

from curate.errors import FitWarning, InputError
from curate.hashing import JSONValue
from curate.io import write_table
from curate.manifest import Law, Prediction
from curate.records import write_record
from curate.stages import StageOutput
from pipelines.calibrate import OTTask, calibrate_mixtures, pilot_scale, run_seed, run_tasks
from pipelines.context import RunContext
from pipelines.proxy_data import calibration_pool, proxy_data, proxy_kind
from pipelines.refine import confirm, refine
from pipelines.score_step import read_scores
from pipelines.selection import doc_size, split_budget
from scaling.mixture import PER_PARAM, LawMethod, fit_mixture_law, n_params
from scaling.projektor import fit_projektor, plan_weights
from scaling.simplex import mixture_design

BOOTSTRAP_RUNS = 5  # the prediction interval's bootstrap runs, at least


@dataclass(frozen=True)
class MixtureFit:
    """fit.mixture's record: weights per source, how they were chosen, the law and its held-out errors.

    holdout_mae / mean_mae: the mixture law at the largest pilot on every 4th grid mixture (left out of the
    fit) and the mean predictor's; noise: the repeat spread of the projected curves; backtest_*: stage 2
    refitted without the largest pilot and projected to it (every curve); projection: budget / largest pilot.
    """

    weights: dict[str, float]
    method: str
    fallback: str | None
    n: int  # the budget in budget units (samples or tokens)
    law: Law
    holdout_mae: float
    mean_mae: float
    law_method: str
    pilot_sizes: list[int]
    noise: float
    backtest_mae: float | None
    backtest_bias: float | None
    projection: float
    alone: dict[str, float]  # the law's loss at the budget for each source alone
    mixed: float  # the law's loss at the budget for the weights chosen
    refined: str | None  # the candidate measured best at the budget (`pipelines.refine`), or None


def doc_units(ctx: RunContext, doc_ids: pl.Series) -> np.ndarray:
    """Budget units (1 sample, or estimated tokens) of each document of `doc_ids`, in order."""
    sizes = (
        ctx.output("ingest")
        .scan()
        .select("doc_id", size=doc_size(pl.col("n_chars"), unit=ctx.cfg.budget.unit))
    )
    frame = doc_ids.to_frame("doc_id").lazy().join(sizes, on="doc_id", how="left", maintain_order="left")
    return frame.collect()["size"].fill_null(1).to_numpy().astype(np.int64)


def scored_units(ctx: RunContext) -> pl.DataFrame:
    """doc_id, source and size (budget units) of every scored document."""
    scored = read_scores(ctx.output("score")).select("doc_id", "source").collect()
    return scored.with_columns(size=pl.Series(doc_units(ctx, scored["doc_id"])))


def docs_per_source(ctx: RunContext, weights: dict[str, float], budget: int) -> dict[str, int]:
    """Each source's share of the budget (`budget` units split by `weights`) in documents, at the mean
    size of its scored documents: what pruning and the quality plan size a source's selection by."""
    units = split_budget(weights, budget)
    if ctx.cfg.budget.unit == "samples":
        return units
    size = dict(scored_units(ctx).group_by("source").agg(pl.col("size").mean()).iter_rows())
    return {s: max(1, round(u / size[s])) if u and size.get(s) else 0 for s, u in units.items()}


def calibrate_mixture(ctx: RunContext) -> StageOutput:
    """Proxy runs of every design mixture at every pilot size (budget units; repeats), each with its own
    sample's OT: a design that grows linearly with the sources; a source smaller than its share of a pilot
    is repeated (counted in the step's `repeating`), never every pilot shrunk."""
    p, m = ctx.cfg.proxy, ctx.cfg.mixture
    sources = sorted(ctx.cfg.sources)
    params: dict[str, JSONValue] = {
        **p.model_dump(mode="json"),
        "unit": ctx.cfg.budget.unit,
        "ot": m.ot,
        "ot_max_points": m.ot_max_points,
        "probe_steps": m.probe_steps,
        "seed": ctx.cfg.seed,
    }

    def build(tmp: Path) -> dict[str, Any]:
        data = proxy_data(ctx, calibration_pool(ctx), eval_on="fit")
        pools = data.source_rows()
        missing = sorted(set(sources) - set(pools))
        if missing:
            raise InputError(f"source(s) {missing} have no documents the '{p.kind}' proxy can train on.")
        pools = {s: pools[s] for s in sources}
        units = doc_units(ctx, data.pool["doc_id"])
        held = [int(units[r].sum()) for r in pools.values()]
        per_doc = float(units.mean())
        # in units at the pools' mean document size; the ends rounded outwards so the span stays >= 10x
        wanted = [max(1, round(n * per_doc)) for n in p.pilot_sizes]
        wanted[0], wanted[-1] = (
            max(1, math.floor(p.pilot_sizes[0] * per_doc)),
            math.ceil(p.pilot_sizes[-1] * per_doc),
        )
        sizes = pilot_scale(held, wanted)
        if sizes != wanted:
            warnings.warn(
                f"calibrate.mixture: pilot sizes {wanted} {ctx.cfg.budget.unit} scaled to {sizes}: the pools "
                f"hold {sum(held)} {ctx.cfg.budget.unit} in all, less than the largest pilot.",
                FitWarning,
                stacklevel=2,
            )
        proportional = np.asarray(held, dtype=np.float64)
        grid = mixture_design(len(sources), per_source=p.mixtures_per_source, proportional=proportional,
                              seed=ctx.cfg.seed)  # fmt: skip
        passes = (  # the probe trains a fixed step budget per pilot; LMs one run with nested checkpoints
            [math.ceil(m.probe_steps * p.batch_size / n) for n in p.pilot_sizes]
            if proxy_kind(p.kind, "design") == "probe"
            else None
        )
        # OT only feeds the 'projektor' law: skip it when 'auto' could not pick that law on this design
        usable = m.law == "projektor" or (
            m.law == "auto" and len(grid) >= PER_PARAM * n_params("projektor", len(sources))
        )
        ot = (
            OTTask(data.x, data.x_eval, max_points=m.ot_max_points, seed=ctx.cfg.seed)
            if m.ot and usable
            else None
        )
        runs = calibrate_mixtures(
            data.task, pools, grid, sizes, executor=ctx.executor, repeats=p.repeats, passes=passes,
            units=units, ot=ot, seed=ctx.cfg.seed,
        )  # fmt: skip
        write_table(runs.to_arrow(), tmp / "runs.parquet")
        repeated = int((grid * sizes[-1] > np.asarray(held)).any(axis=1).sum())
        return {"runs": runs.height, "mixtures": len(grid), "repeating": repeated, "pilot_sizes": sizes,
                "unit": ctx.cfg.budget.unit, "ot": ot is not None}  # fmt: skip

    return ctx.commit(params, build)


def _holdout(
    runs: pl.DataFrame, sources: list[str], *, law: LawMethod, seed: int
) -> tuple[pl.DataFrame, float]:
    """Stage 1 at the largest pilot on every 4th grid mixture, fitted without them: (mixture, observed,
    predicted) and the mean predictor's MAE on them."""
    held = (pl.col("mixture") % 4) == 3
    top = runs.filter(pl.col("n") == pl.col("n").max())
    train = top.filter(~held)
    with warnings.catch_warnings():  # the fit on every mixture warns about the law's identification
        warnings.simplefilter("ignore", FitWarning)
        fit = fit_mixture_law(
            train.select(sources).to_numpy(), train["metric"].to_numpy(),
            ot=train["ot"].to_numpy() if "ot" in train.columns else None, method=law, sources=sources,
            seed=seed,
        )  # fmt: skip
    test = (
        top.filter(held).group_by("mixture", *sources).agg(observed=pl.col("metric").mean()).sort("mixture")
    )
    predicted = fit.predict(test.select(sources).to_numpy()) if test.height else np.zeros(0)
    train_mean = float(np.mean(train["metric"].to_numpy()))
    mean_mae = float(np.mean(np.abs(train_mean - test["observed"].to_numpy()))) if test.height else 0.0
    table = test.select(mixture=pl.format("mix{}", "mixture"), observed="observed").with_columns(
        predicted=pl.Series(predicted, dtype=pl.Float64)
    )
    return table, mean_mae


def fit_mixture(ctx: RunContext) -> StageOutput:
    """Source weights at the budget (Projektor's optimum, or a named baseline), with stage 1's held-out error
    against the mean predictor's (worse: fall back to the best grid run) and stage 2's backtest."""
    m = ctx.cfg.mixture
    n_budget = ctx.cfg.budget.value
    params: dict[str, JSONValue] = {**m.model_dump(mode="json"), "n": n_budget, "seed": ctx.cfg.seed}

    def build(tmp: Path) -> dict[str, Any]:
        runs = ctx.table("calibrate.mixture", "runs").collect()
        sources = sorted(ctx.cfg.sources)
        sizes = dict(
            scored_units(ctx).group_by("source").agg(pl.col("size").sum()).iter_rows()
        )  # proportional
        holdout, mean_mae = _holdout(runs, sources, law=m.law, seed=ctx.cfg.seed)
        mae = float((holdout["predicted"] - holdout["observed"]).abs().mean() or 0.0)  # type: ignore[arg-type]
        model = fit_projektor(
            runs,
            sources=sources,
            n=n_budget,
            method=m.law,
            max_projection=m.max_projection,
            seed=ctx.cfg.seed,
        )
        method, fallback = m.method, None
        if method == "projektor" and mae > mean_mae:
            method = "best_grid"
            fallback = (
                f"Projektor's held-out MAE {mae:.4g} is worse than the mean predictor's {mean_mae:.4g}; "
                "weights fall back to the best calibrated mixture (best_grid)"
            )
            warnings.warn(f"fit.mixture: {fallback}.", FitWarning, stacklevel=2)
        plan = plan_weights(model, runs, method=method, source_sizes=sizes, seed=ctx.cfg.seed)
        weights, refined = dict(plan.weights), None
        table = pl.DataFrame(
            schema={"candidate": pl.Int64, "round": pl.Int64, "label": pl.String,
                    **dict.fromkeys(sources, pl.Float64), "mean": pl.Float64, "sd": pl.Float64,
                    "lm_mean": pl.Float64, "lm_sd": pl.Float64}
        )  # fmt: skip
        seeds = max(3, ctx.cfg.proxy.seeds)
        if method == "projektor" and m.refine:
            pool = calibration_pool(ctx)
            data = proxy_data(ctx, pool, eval_on="fit")
            held = doc_units(ctx, data.pool["doc_id"])
            if n_budget <= int(held.sum()):  # the pools hold the budget: measure there
                table = refine(ctx, data, held, weights, runs, n=n_budget, seeds=seeds)
                kind = proxy_kind(ctx.cfg.proxy.kind, "design")
                refined = f"measured best at the budget of {table.height} candidates by the {kind} proxy"
                refined += f" ({seeds} seeds)"
                if proxy_kind(ctx.cfg.proxy.kind, "confirm") != kind:
                    lm = proxy_data(ctx, pool, eval_on="fit", role="confirm")
                    top = ctx.cfg.proxy.confirm
                    units = doc_units(ctx, lm.pool["doc_id"])
                    table = confirm(ctx, lm, units, table, n=n_budget, seeds=ctx.cfg.proxy.seeds, top=top)
                    refined += f", then of its best {min(top, table.height)} by the byte LM proxy"
                    refined += f" ({ctx.cfg.proxy.seeds} seeds)"
                else:
                    none = pl.lit(None, pl.Float64)
                    table = table.with_columns(lm_mean=none, lm_sd=none)
                best = table.row(0, named=True)
                weights = {s: float(best[s]) for s in sources}
                refined = f"'{best['label']}' " + refined
        write_table(table.to_arrow(), tmp / "refine.parquet")
        back = model.backtest()
        w = model.size_law.weights(n_budget)
        coef = {
            "alpha": model.size_law.alpha,
            "n0": model.size_law.n0,
            **{f"w.n{n}": float(x) for n, x in zip(model.sizes, w, strict=True)},
            **model.law.params(),
        }
        write_table(holdout.to_arrow(), tmp / "holdout.parquet")
        record = MixtureFit(
            weights=weights,
            method=method,
            fallback=fallback,
            n=n_budget,
            law=Law(
                form=f"stage 2: L(N) = E + A·(N + n0)^-alpha per pilot curve (alpha, n0 shared), projected "
                f"to N = {n_budget} as sum_k w_k L(N_k); stage 1: '{model.law.method}' mixture law on the "
                "projections",
                params=coef,
                fit_error=mae,
            ),
            holdout_mae=mae,
            mean_mae=mean_mae,
            law_method=model.law.method,
            pilot_sizes=list(model.sizes),
            noise=float(np.nan_to_num(model.law.noise)),
            backtest_mae=None if back is None else float(np.mean(np.abs(back))),
            backtest_bias=None if back is None else float(np.mean(back)),
            projection=n_budget / model.sizes[-1],
            alone={s: float(v) for s, v in zip(sources, model.predict(np.eye(len(sources))), strict=True)},
            mixed=float(model.predict(np.array([[weights[s] for s in sources]]))[0]),
            refined=refined,
        )
        write_record(record, tmp)
        return {"n": n_budget, "holdout_mae": mae, "mean_holdout_mae": mean_mae, "method": method,
                "refine_runs": table.height * seeds,
                "law": model.law.method, "law_cv_mae": model.law.cv_error}  # fmt: skip

    return ctx.commit(params, build)


def selection_sample(selection: pl.DataFrame, n: int, seed: int, *, bootstrap: bool = False) -> np.ndarray:
    """Indices into `selection` of `n` draws from its multiset (a document `repeats` times), in order; with
    `bootstrap`, each source's draws are resampled with replacement from that source's multiset (so a
    document repeated r times is r times as likely)."""
    units = np.repeat(np.arange(selection.height), selection["repeats"].to_numpy())
    rng = np.random.default_rng(seed)
    draws = units[rng.permutation(len(units))] if n >= len(units) else units[rng.choice(len(units), n, False)]
    if not bootstrap:
        return draws
    source = selection["source"].to_numpy()
    out = draws.copy()
    for s in np.unique(source[draws]):
        mine = source[draws] == s
        out[mine] = rng.choice(units[source[units] == s], size=int(mine.sum()), replace=True)
    return out


def predict_selection(ctx: RunContext) -> StageOutput:
    """The proxy's target metric for the selection as written (weights, buckets, repeats, pruning): a proxy
    run on draws of the selection at the budget, and bootstrap runs (each source's documents resampled) for
    the interval, which a deterministic proxy would otherwise leave at zero width."""
    p = ctx.cfg.proxy
    n_budget = ctx.record("fit.mixture", MixtureFit).n
    params: dict[str, JSONValue] = {**p.model_dump(mode="json"), "n": n_budget, "seed": ctx.cfg.seed}

    def build(tmp: Path) -> dict[str, Any]:
        selection = ctx.table("select", "selection").collect().sort("doc_id")
        labels = ctx.output("ingest").scan().select("doc_id", "label")
        frame = selection.lazy().join(labels, on="doc_id", how="left", maintain_order="left").collect()
        data = proxy_data(ctx, frame.select("doc_id", "source", "label"), eval_on="holdout", role="predict")
        row_of = dict(zip(data.pool["doc_id"].to_list(), data.pool["row"].to_list(), strict=True))
        rows = np.array([row_of.get(d, -1) for d in frame["doc_id"].to_list()], dtype=np.int64)
        n_draws = int(frame["repeats"].sum())  # the selection as written: every document `repeats` times
        runs = []
        for s in range(1 + max(p.seeds, BOOTSTRAP_RUNS)):  # run 0: the selection; 1..: bootstrap resamples
            pick = selection_sample(frame, n_draws, run_seed(ctx.cfg.seed, 7, s), bootstrap=s > 0)
            draws = rows[pick]
            draws = draws[draws >= 0]
            runs.append(
                {
                    "run": "selection" if s == 0 else f"bootstrap/{s}",
                    "rows": draws.tolist(),
                    "checkpoints": [len(draws)],
                    "n_unique": int(frame.height),
                    "seed": run_seed(ctx.cfg.seed, 8, s),
                }
            )
        curves = run_tasks(data.task, runs, executor=ctx.executor)
        write_table(curves.to_arrow(), tmp / "curves.parquet")
        last = curves.filter(pl.col("samples_seen") == pl.col("samples_seen").max().over("run"))
        value = float(last.filter(pl.col("run") == "selection")["eval_loss"][0])
        boot = last.filter(pl.col("run") != "selection")["eval_loss"].to_numpy()
        spread = float(np.std(boot, ddof=1))
        half = float(student_t.ppf(0.95, df=len(boot) - 1)) * spread
        prediction = Prediction(
            metric=f"proxy ({proxy_kind(p.kind, 'predict')}) eval loss on the target's held-out rows",
            value=value,
            interval=(value - half, value + half),
            method=(
                f"a proxy run trained on the final selection ({n_budget} {ctx.cfg.budget.unit}: its weights, "
                "buckets, pruning and repeats), evaluated on target rows that fitted no score and calibrated "
                "nothing; "
                f"interval: 90% t interval (df {len(boot) - 1}) of {len(boot)} bootstrap runs, each source's "
                "selected documents resampled with replacement, repeats kept. It covers which documents the "
                "selection happened to hold; not the proxy-to-model gap, nor the target sample's own noise"
            ),
        )
        write_record(prediction, tmp)
        return {"value": value, "bootstrap_sd": spread}

    return ctx.commit(params, build)
