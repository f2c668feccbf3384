"""The union law of QQT chosen on held-out union runs: the repetition rule gamma, the coverage coefficient
kappa (`scaling.coverage`) and the floor d, which single-pool curves rarely identify and unions pin down.

`choose_union_rule` picks (gamma, kappa) for a fitted QQT; `fit_union_law` also picks d: for every d of the
fit's grid (refined by halving the step around the best one, `REFINE` times) it fits the single pools with d
fixed (grid search without the polish: the profile only ranks d), chooses (gamma, kappa) on the unions and
keeps the d of least squared log error over the single pools' points and the unions' points together, then
repeats the single-pool fit (polished) at that d with its seed bootstrap. The unions that choose the law
must never be the ones a check is made on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from curate.errors import FitError
from scaling.coverage import union_key
from scaling.qqt import QQTFit, fit_qqt
from scaling.qqt_search import d_grid, mean_curves

__all__ = ["GAMMAS", "KAPPAS", "choose_union_rule", "fit_union_law"]
GAMMAS = np.linspace(0.0, 1.0, 5)  # union rules searched (0 and 1 are the physical ends: see scaling.qqt)
KAPPAS = np.linspace(0.0, 4.0, 41)  # coverage coefficients searched
REFINE = 3  # rounds of halving the d step around the best d of the grid


def choose_union_rule(
    fit: QQTFit,
    union_curves: pl.DataFrame,
    members: Mapping[str, Sequence[str]],
    union_sizes: Mapping[str, Mapping[str, int]],
    *,
    gammas: Sequence[float] | np.ndarray = GAMMAS,
) -> tuple[float, float, pl.DataFrame]:
    """The union rule gamma (among `gammas`) and coverage coefficient kappa (`KAPPAS`; only 0 when no union
    has a coverage gap in `fit.gaps`) that best predict held-out union runs (pool = union name, samples_seen,
    error): (gamma, kappa, table of every pair's mean absolute relative error and log-scale rmse; the
    chosen row's rmse is the model error of union predictions)."""
    mean = union_curves.group_by("pool", "samples_seen").agg(pl.col("error").mean()).sort("samples_seen")
    kappas = KAPPAS if any(fit.gaps.get(union_key(p), 0.0) > 0 for p in members.values()) else KAPPAS[:1]
    sizes = dict(zip(fit.names, fit.sizes, strict=True))
    rows = []
    for gamma in gammas:
        logs = []  # per union: (kappas, points) log(predicted / observed)
        for name, pools in members.items():
            at = mean.filter(pl.col("pool") == name)
            ruled = fit.with_pool_sizes({**sizes, **union_sizes[name]}).with_gamma(float(gamma))
            predicted = ruled.predict_kappas(pools, at["samples_seen"].to_numpy(), kappas)
            logs.append(np.log(predicted / at["error"].to_numpy()[None, :]))
        both = np.concatenate(logs, axis=1) if logs else np.full((len(kappas), 0), np.nan)
        for k, kappa in enumerate(kappas):
            rows.append(
                {
                    "gamma": float(gamma),
                    "kappa": float(kappa),
                    "mare": float(np.mean(np.abs(np.expm1(both[k])))) if both.size else math.nan,
                    "rmse_log": float(np.sqrt(np.mean(np.square(both[k])))) if both.size else math.nan,
                }
            )
    table = pl.DataFrame(rows)
    best = table.sort("mare", "kappa", "gamma").row(0, named=True)
    return float(best["gamma"]), float(best["kappa"]), table


@dataclass(frozen=True)
class UnionLaw:
    """A QQT fit under the union law chosen on held-out unions, and how it was chosen."""

    fit: QQTFit  # d, gamma, kappa set; intervals widened by the unions' error
    rule_table: pl.DataFrame  # gamma, kappa, mare, rmse_log at the chosen d
    d_table: pl.DataFrame  # d, gamma, kappa, sse (single pools + unions)
    union_mare: float  # the chosen law's mean absolute relative error on the unions


def fit_union_law(
    curves: pl.DataFrame,
    pool_sizes: Mapping[str, int],
    union_curves: pl.DataFrame,
    members: Mapping[str, Sequence[str]],
    gaps: Mapping[str, float],
    *,
    gammas: Sequence[float] | np.ndarray = GAMMAS,
    n_bootstrap: int = 30,
    seed: int = 0,
) -> UnionLaw:
    """QQT on the single pools' `curves` with d, gamma and kappa chosen together on the held-out
    `union_curves` (pool = union name; `members`: its pools, of `pool_sizes`), see the module doc."""
    if union_curves.is_empty():
        raise FitError("fit_union_law needs held-out union runs; got none.")
    union_sizes = {u: {m: pool_sizes[m] for m in ms} for u, ms in members.items()}
    n_single = curves.select("pool", "samples_seen").n_unique()
    n_union = union_curves.select("pool", "samples_seen").n_unique()
    tried: dict[float, tuple[float, float, float, dict[str, float], pl.DataFrame, float]] = {}

    def attempt(d: float) -> None:
        fit = fit_qqt(curves, pool_sizes, d=d, n_bootstrap=0, seed=seed, polish=False).with_coverage(gaps)
        gamma, kappa, table = choose_union_rule(fit, union_curves, members, union_sizes, gammas=gammas)
        row = table.filter((pl.col("gamma") == gamma) & (pl.col("kappa") == kappa)).row(0, named=True)
        sse = fit.rmse_log**2 * n_single + row["rmse_log"] ** 2 * n_union
        tried[d] = (sse, gamma, kappa, row, table, fit.seed_spread)

    for d in d_grid(mean_curves(curves, pool_sizes), None):
        attempt(d)
    for _ in range(REFINE):  # halve the step on each side of the best d so far
        ds = sorted(tried)
        k = min(range(len(ds)), key=lambda i: (tried[ds[i]][0], ds[i]))
        for other in (ds[k - 1] if k > 0 else None, ds[k + 1] if k + 1 < len(ds) else None):
            if other is not None:
                attempt((ds[k] + other) / 2.0)
    d = min(tried, key=lambda v: (tried[v][0], v))
    sse, gamma, kappa, row, table, spread = tried[d]
    noise = max(0.01, 0.0 if math.isnan(spread) else spread)
    identified = max(t[0] for t in tried.values()) - sse > (n_single + n_union) * noise**2
    fit = fit_qqt(curves, pool_sizes, d=d, n_bootstrap=n_bootstrap, seed=seed)
    fit = replace(fit, d_identified=identified).with_gamma(gamma).with_coverage(gaps, kappa)
    return UnionLaw(
        fit=fit.with_model_error(max(fit.model_error, row["rmse_log"])),
        rule_table=table,
        d_table=pl.DataFrame(
            [{"d": v, "gamma": t[1], "kappa": t[2], "sse": t[0]} for v, t in sorted(tried.items())]
        ),
        union_mare=float(row["mare"]),
    )
