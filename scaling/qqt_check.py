"""How a QQT fit's decisions fare against measured runs: the mean and standard error of every measured point,
the decision regret at each budget among the pools measured there, and the buckets that measurably harm.

A pool is a bucket or a union of buckets (`members` maps each measured pool to its buckets); curves hold a
row per run (pool, seed, samples_seen, error)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import polars as pl

from scaling.qqt import QQTFit

REGRET_SCHEMA = {"budget": pl.Int64, "pools": pl.Int64, "chosen": pl.String, "best": pl.String,
                 "regret": pl.Float64, "se": pl.Float64, "within": pl.Boolean}  # fmt: skip


def observed_means(curves: pl.DataFrame) -> pl.DataFrame:
    """pool, samples_seen, observed (mean over seeds), se (the standard error of that mean), seeds."""
    return curves.group_by("pool", "samples_seen").agg(
        observed=pl.col("error").mean(),
        se=pl.col("error").std(ddof=1) / pl.col("error").len().sqrt(),
        seeds=pl.col("error").len(),
    )


def decision_regret(fit: QQTFit, members: Mapping[str, Sequence[str]], means: pl.DataFrame) -> pl.DataFrame:
    """At every budget where a single bucket and a union were both measured: the pool of least predicted error
    among those measured there (chosen), the best observed one, the regret (observed chosen - best), the
    standard error of that difference and whether the regret is within 2 of them."""
    rows = []
    measured = means.filter(pl.col("pool").is_in(list(members)))
    for (n,), at in measured.group_by("samples_seen"):
        pools = sorted(at["pool"].to_list())
        sizes = {len(members[p]) for p in pools}
        if 1 not in sizes or sizes == {1}:
            continue
        chosen = min(pools, key=lambda p: fit.predict(list(members[p]), n))
        by = {r["pool"]: r for r in at.iter_rows(named=True)}
        best = min(pools, key=lambda p: by[p]["observed"])
        se = math.hypot(by[chosen]["se"], by[best]["se"]) if chosen != best else 0.0
        regret = by[chosen]["observed"] - by[best]["observed"]
        rows.append({"budget": int(n), "pools": len(pools), "chosen": chosen, "best": best, "regret": regret,
                     "se": se, "within": regret <= 2.0 * se})  # fmt: skip
    return pl.DataFrame(rows, schema=REGRET_SCHEMA).sort("budget")


def harmful_buckets(members: Mapping[str, Sequence[str]], means: pl.DataFrame) -> list[str]:
    """Buckets b such that for every measured pair of pools (U, U + b) and every budget both were measured
    at, U + b had the higher observed error (with at least one such comparison)."""
    sets = {p: frozenset(m) for p, m in members.items()}
    pool_of = {m: p for p, m in sets.items()}
    obs = {(p, n): y for p, n, y in means.select("pool", "samples_seen", "observed").iter_rows()}
    out = []
    for b in sorted({b for m in sets.values() for b in m}):
        worse = []
        for with_b, m in sets.items():
            without = pool_of.get(m - {b}) if b in m and len(m) > 1 else None
            worse += [
                obs[(with_b, n)] > y for (p, n), y in obs.items() if p == without and (with_b, n) in obs
            ]
        if worse and all(worse):
            out.append(b)
    return out
