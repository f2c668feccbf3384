"""Sequential runs near the law's optimum: the mixture law proposes, the proxy measures at the budget.

A mixture law fitted on a design is an approximation; where the budget is within what the calibration pools
can train (no more units than they hold), the fit.mixture step measures a few candidates at the budget itself
with the calibration's own proxy task and eval set: the law's optimum, sharper and top-k versions of it, the
best measured design mixtures and blends of both. The candidate with the least mean proxy loss over the
seeds wins; the table of candidates is committed with the step and the report says which one won.
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
    """Every candidate (`candidates`) measured at `n` units with `seeds` runs each: candidate, label, one
    weight column per source, mean and sd of the proxy loss, sorted best first."""
    sources = sorted(law)
    pools = data.source_rows()
    pools = {s: pools[s] for s in sources}
    largest = runs.filter(pl.col("n") == pl.col("n").max())
    ranked = largest.group_by("mixture", *sources).agg(pl.col("metric").mean()).sort("metric", "mixture")
    labels, grid = candidates(
        np.array([law[s] for s in sources]), ranked.head(top).select(sources).to_numpy()
    )
    measured = calibrate_mixtures(
        data.task, pools, grid, [n], executor=ctx.executor, repeats=seeds, units=units, seed=ctx.cfg.seed + 17
    )
    stats = measured.group_by("mixture").agg(mean=pl.col("metric").mean(), sd=pl.col("metric").std())
    table = pl.DataFrame(
        {"candidate": np.arange(len(grid)), "label": labels, **{s: grid[:, i] for i, s in enumerate(sources)}}
    )
    return table.join(stats, left_on="candidate", right_on="mixture").sort("mean", "candidate")
