"""Quality buckets: equal-count quantile buckets of a pool by one score column (Goyal et al. 2024 pools).

Bucket 0 holds the smallest scores, which is the best end for every Curate score (larger = harder/further).
"""

from __future__ import annotations

from typing import Literal

import polars as pl

from curate._validation import check_columns, check_interval, check_option
from curate.errors import InputError

Metric = Literal["error", "loss"]


def bucket_name(bucket: int) -> str:
    """The QQT pool name of bucket `bucket` ("q0" = smallest scores)."""
    return f"q{bucket}"


def quality_buckets(
    scores: pl.DataFrame, *, column: str, n_buckets: int = 4, id_column: str = "doc_id"
) -> pl.DataFrame:
    """`scores` with an Int32 `bucket` column: equal-count buckets by rank of `column` (ties by id column).

    Rows whose score is null or NaN get a null bucket (they join no pool); bucket sizes differ by at most one.
    """
    check_interval("n_buckets", n_buckets, 1, None, caller="quality_buckets")
    check_columns(scores, {id_column: None, column: None}, what="quality_buckets scores")
    if not scores.schema[column].is_numeric():
        raise InputError(f"quality_buckets column '{column}' must be numeric; got {scores.schema[column]}.")
    valid = pl.col(column).is_not_null() & pl.col(column).cast(pl.Float64).is_not_nan()
    ranked = (
        scores.with_row_index("_row")
        .filter(valid)
        .sort(column, id_column)
        .with_row_index("_rank")
        .select("_row", "_rank")
    )
    n = ranked.height
    if n == 0:
        raise InputError(f"quality_buckets column '{column}' has no finite score to bucket.")
    k = min(n_buckets, n)
    buckets = ranked.select("_row", (pl.col("_rank") * k // n).cast(pl.Int32).alias("bucket"))
    return scores.with_row_index("_row").join(buckets, on="_row", how="left").sort("_row").drop("_row")


def qqt_curves(curves: pl.DataFrame, *, pool_column: str = "pool", metric: Metric = "error") -> pl.DataFrame:
    """Proxy checkpoint curves -> QQT input (pool, samples_seen, error): 1 - eval_accuracy, or eval_loss."""
    check_option("metric", metric, ("error", "loss"), caller="qqt_curves")
    source = "eval_accuracy" if metric == "error" else "eval_loss"
    check_columns(curves, {pool_column: None, "samples_seen": int, source: float}, what="qqt_curves curves")
    value = 1.0 - pl.col(source) if metric == "error" else pl.col(source)
    return (
        curves.group_by(pl.col(pool_column).alias("pool"), "samples_seen")
        .agg(value.mean().alias("error"))
        .sort("pool", "samples_seen")
    )
