"""Sequential runs near the law's optimum: the mixture law proposes, the proxy measures at the budget.

A mixture law fitted on a design is an approximation; where the budget is within what the calibration pools
can train (no more units than they hold), the fit.mixture step measures candidates at the budget itself with
the calibration's own proxy task and eval set: the law's optimum, sharper and top-k versions of it, the best
measured design mixtures and blends of both; then a local round around the best (each source dropped, each
given more weight). The candidate with the least mean proxy loss over the seeds wins; with the hybrid
proxy, the byte LM then measures the design proxy's best few (`confirm`) and the least LM loss wins. The
table of candidates is committed with the step and the manifest says which one won.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

from pipelines.calibrate import calibrate_mixtures
from pipelines.context import RunContext
from pipelines.proxy_data import ProxyData


def candidates(law: np.ndarray, best: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Mixtures to measure: the law's optimum `law`, its sharpened (p^2, p^4) and top-2/3/5 versions, the
    best design mixtures `best` (rows) and the halfway blends of the law's optimum with each of them."""
    rows: list[tuple[str, np.ndarray]] = [("law optimum", law)]
    for power in (2, 4):
        rows.append((f"law optimum ^{power}", law**power))
    order = np.argsort(-law, kind="stable")
    for k in (2, 3, 5):
        if k < len(law):
            top = np.zeros_like(law)
            top[order[:k]] = law[order[:k]]
            rows.append((f"law optimum, top {k}", top))
    for i, row in enumerate(best):
        rows.append((f"design mixture #{i + 1}", row))
        rows.append((f"blend with design #{i + 1}", (law + row) / 2))
    labels, mixtures = [], []
    seen: set[tuple[float, ...]] = set()
    for label, row in rows:
        p = row / row.sum()
        key = tuple(np.round(p, 6))
        if row.sum() > 0 and key not in seen:
            seen.add(key)
            labels.append(label)
            mixtures.append(p)
    return labels, np.asarray(mixtures)


def neighbours(best: np.ndarray, names: list[str], *, step: float = 0.15) -> tuple[list[str], np.ndarray]:
    """A local round around `best`: each source it uses dropped, and each source given `step` more weight."""
    rows: list[tuple[str, np.ndarray]] = []
    for i, name in enumerate(names):
        if best[i] > 0 and (best > 0).sum() > 1:
            drop = best.copy()
            drop[i] = 0.0
            rows.append((f"without {name}", drop))
        more = (1 - step) * best
        more[i] += step
        rows.append((f"more {name}", more))
    return [r[0] for r in rows], np.asarray([r[1] / r[1].sum() for r in rows])


def confirm(
    ctx: RunContext, data: ProxyData, units: np.ndarray, table: pl.DataFrame, *, n: int, seeds: int, top: int
) -> pl.DataFrame:
    """`table` (refine's, best first) with lm_mean and lm_sd: the `top` best candidates measured by `data`'s
    proxy at `n` units, `seeds` runs each; those first, by lm_mean, the rest after in their order."""
    head = table.head(top)
    grid = head.select(sorted(ctx.cfg.sources)).to_numpy()
    stats = _measure(ctx, data, units, grid, n=n, seeds=seeds, seed=ctx.cfg.seed + 51)
    stats = stats.select(pl.col("mixture").cast(pl.Int64), lm_mean="mean", lm_sd="sd")
    head = head.with_row_index("mixture").with_columns(pl.col("mixture").cast(pl.Int64))
    measured = head.join(stats, on="mixture").drop("mixture").sort("lm_mean", "candidate")
    return pl.concat([measured, table.slice(top)], how="diagonal_relaxed")


def _measure(
    ctx: RunContext, data: ProxyData, units: np.ndarray, grid: np.ndarray, *, n: int, seeds: int, seed: int
) -> pl.DataFrame:
    """mixture, mean and sd of the proxy loss of each row of `grid` at `n` units, `seeds` runs each."""
    sources = sorted(ctx.cfg.sources)
    pools = {s: data.source_rows()[s] for s in sources}
    measured = calibrate_mixtures(
        data.task, pools, grid, [n], executor=ctx.executor, repeats=seeds, units=units, seed=seed
    )
    return measured.group_by("mixture").agg(mean=pl.col("metric").mean(), sd=pl.col("metric").std())


def refine(
    ctx: RunContext,
    data: ProxyData,
    units: np.ndarray,
    law: Mapping[str, float],
    runs: pl.DataFrame,
    *,
    n: int,
    seeds: int,
    top: int = 3,
) -> pl.DataFrame:
    """Every candidate measured at `n` units with `seeds` runs each, in two rounds (`candidates`, then the
    `neighbours` of the first round's best): candidate, round, label, one weight column per source, mean and
    sd of the proxy loss, sorted best first."""
    sources = sorted(law)
    largest = runs.filter(pl.col("n") == pl.col("n").max())
    ranked = largest.group_by("mixture", *sources).agg(pl.col("metric").mean()).sort("metric", "mixture")
    labels, grid = candidates(
        np.array([law[s] for s in sources]), ranked.head(top).select(sources).to_numpy()
    )
    tables: list[pl.DataFrame] = []
    for round_ in (1, 2):
        if round_ == 2:
            best = tables[0].sort("mean", "candidate").row(0, named=True)
            labels, grid = neighbours(np.array([best[s] for s in sources]), sources)
        stats = _measure(ctx, data, units, grid, n=n, seeds=seeds, seed=ctx.cfg.seed + 17 * round_)
        first = sum(t.height for t in tables)
        table = pl.DataFrame(
            {"candidate": first + np.arange(len(grid)), "round": round_, "label": labels,
             **{s: grid[:, i] for i, s in enumerate(sources)}}
        )  # fmt: skip
        tables.append(
            table.join(stats.with_columns(pl.col("mixture") + first), left_on="candidate", right_on="mixture")
        )
    return pl.concat(tables).sort("mean", "candidate")
