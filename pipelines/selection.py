"""The plan turned into documents: the budget split by weight, and exact repeats per document.

Pure functions on frames (no Ray). The selection table they build realises the plan exactly: per source the
repeats x size sum to the source's integer share of the budget, within one document in token units.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import polars as pl

from curate.errors import InputError
from curate.manifest import BudgetUnit

CHARS_PER_TOKEN = 4  # token estimate of a document: ceil(n_chars / 4)


def split_budget(weights: Mapping[str, float], total: int) -> dict[str, int]:
    """Integer shares of `total` by `weights` (largest remainder, ties by name); they sum to `total`."""
    names = sorted(weights)
    raw = np.array([weights[n] for n in names], dtype=np.float64)
    raw = raw / raw.sum() * total
    base = np.floor(raw).astype(np.int64)
    short = int(total - base.sum())
    order = sorted(range(len(names)), key=lambda i: (-(raw[i] - base[i]), names[i]))
    for i in order[:short]:
        base[i] += 1
    return {n: int(b) for n, b in zip(names, base, strict=True)}


def doc_size(n_chars: pl.Expr, *, unit: BudgetUnit) -> pl.Expr:
    """Size of a document in budget units: 1 sample, or ceil(n_chars / 4) tokens (at least 1)."""
    if unit == "samples":
        return pl.lit(1, pl.Int64)
    return ((n_chars.cast(pl.Int64) + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN).clip(lower_bound=1)


def realise(pool: pl.DataFrame, target: int) -> pl.DataFrame:
    """Integer repeats per document of `pool` (doc_id, size; preference order) summing to `target` size units.

    Every document gets floor(target / total) passes; the remainder goes to the first documents in order, one
    extra pass each, while the running size stays within half a document of it. Returns doc_id, repeats > 0.
    """
    if pool.height == 0 and target > 0:
        raise InputError(f"cannot realise a share of {target} from an empty pool of documents.")
    sizes = pool["size"].to_numpy().astype(np.int64)
    total = int(sizes.sum())
    full, rest = divmod(int(target), total) if total else (0, 0)
    cum = np.cumsum(sizes)
    extra = (cum - sizes / 2.0) < rest  # nearest rounding of the partial last pass
    repeats = full + extra.astype(np.int64)
    out = pl.DataFrame({"doc_id": pool["doc_id"], "repeats": repeats})
    return out.filter(pl.col("repeats") > 0)


def selection_table(
    pools: Mapping[str, pl.DataFrame], targets: Mapping[str, int], *, budget: int
) -> pl.DataFrame:
    """The selection (doc_id, source, weight, repeats) for every source with a positive target.

    `pools[s]` has doc_id, size in preference order; weight = repeats x size / budget (a doc's budget share).
    """
    parts = []
    for name in sorted(targets):
        if targets[name] <= 0:
            continue
        pool = pools[name]
        chosen = realise(pool, targets[name]).join(pool.select("doc_id", "size"), on="doc_id")
        parts.append(
            chosen.select(
                "doc_id",
                pl.lit(name).alias("source"),
                (pl.col("repeats") * pl.col("size") / budget).alias("weight"),
                pl.col("repeats").cast(pl.Int64),
            )
        )
    schema = {"doc_id": pl.String, "source": pl.String, "weight": pl.Float64, "repeats": pl.Int64}
    if not parts:
        return pl.DataFrame(schema=schema)
    return pl.concat(parts).sort("doc_id")


def realised_share(selection: pl.DataFrame, sizes: pl.DataFrame) -> dict[str, int]:
    """Size units per source that `selection` trains on (sum of repeats x size); sizes has doc_id, size."""
    joined = (
        selection.join(sizes, on="doc_id").group_by("source").agg((pl.col("repeats") * pl.col("size")).sum())
    )
    return {s: int(v) for s, v in joined.iter_rows()}


def effective_repeats(target: int, pool_size_units: int) -> float:
    """Epochs over a selected pool: target size / pool size (0 when nothing is selected)."""
    return target / pool_size_units if pool_size_units else 0.0
