"""Quality-bucket plan (Goyal et al. 2024): split a pool into score buckets, run one multi-epoch proxy per
bucket as parallel tasks, fit QQT and pick the bucket union per budget.

The proxy runs are the calibration tasks of `pipelines.calibrate` (MLP probe on embeddings when labels exist,
tiny byte LM otherwise), mapped by the executor's `map_tasks`: Ray tasks with a RayExecutor, in order with
the LocalExecutor; same seeds, same curves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from curate._validation import check_interval
from curate.errors import InputError
from curate.stages import Executor, LocalExecutor
from pipelines.calibrate import LMTask, ProbeTask, bucket_runs, run_tasks
from scaling.buckets import Metric, bucket_name, qqt_curves, quality_buckets
from scaling.qqt import QQTFit, fit_qqt

CALIBRATION_RUN = "_all"  # proxy run on every bucket row together; its best error calibrates d


@dataclass(frozen=True, slots=True, kw_only=True)
class BucketPlan:
    """The QQT plan of one pool: bucket curves, the fit (at full bucket sizes) and the union per budget."""

    score: str
    buckets: pl.DataFrame  # doc_id, bucket (Int32, null = unscored or held out for evaluation)
    curves: pl.DataFrame  # pool, samples_seen, error (mean over proxy seeds)
    fit: QQTFit
    plan: pl.DataFrame  # budget, n_pools, pools, error, lo, hi

    def laws(self) -> dict[str, dict[str, object]]:
        """The manifest's `laws` entry for this plan (JSON-able; see QQTFit.to_laws)."""
        return self.fit.to_laws()


def plan_buckets(
    scores: pl.DataFrame,
    *,
    score: str,
    budgets: Sequence[int],
    vectors: np.ndarray | None = None,
    labels: Sequence[str | None] | None = None,
    texts: Sequence[str] | None = None,
    n_buckets: int = 4,
    epochs: int = 8,
    max_rows: int = 2000,
    n_eval: int = 500,
    n_bootstrap: int = 50,
    executor: Executor | None = None,
    seed: int = 0,
) -> BucketPlan:
    """Bucket `scores` (doc_id + `score`) into quantiles, train a proxy per bucket, fit QQT, plan `budgets`.

    With `labels` (aligned with `scores` rows) the proxy is the MLP probe on `vectors` (metric 1 - accuracy),
    otherwise the tiny byte LM on `texts` (metric: next-byte loss). `n_eval` seeded rows are held out as the
    evaluation set; each bucket trains on at most `max_rows` of its rows, and the plan is made at full size.
    One more run on all bucket rows calibrates d (the proxy's floor) as its best error.
    """
    check_interval("n_eval", n_eval, 1, None, caller="plan_buckets")
    check_interval("max_rows", max_rows, 3, None, caller="plan_buckets")
    n = scores.height
    if labels is not None and (vectors is None or len(labels) != n or len(vectors) != n):
        raise InputError(f"plan_buckets needs vectors and labels for each of the {n} score rows.")
    if labels is None and (texts is None or len(texts) != n):
        raise InputError(f"plan_buckets needs labels (with vectors) or texts for each of the {n} score rows.")
    if n_eval >= n // 2:
        raise InputError(f"plan_buckets needs more than 2 x n_eval = {2 * n_eval} rows to bucket; got {n}.")
    rng = np.random.default_rng(seed)
    held = np.zeros(n, dtype=bool)
    held[rng.choice(n, size=n_eval, replace=False)] = True
    if labels is not None:
        held &= np.array([y is not None for y in labels])  # an unlabelled row cannot be scored by the probe
    pool = scores.select("doc_id", score).with_columns(
        pl.when(pl.Series(held)).then(None).otherwise(pl.col(score)).alias(score)
    )
    buckets = quality_buckets(pool, column=score, n_buckets=n_buckets).select("doc_id", "bucket")
    ids = buckets["bucket"].to_numpy()
    rows = {bucket_name(b): np.flatnonzero(ids == b) for b in range(n_buckets) if (ids == b).any()}
    eval_rows = np.flatnonzero(held)
    task: ProbeTask | LMTask
    metric: Metric
    if labels is not None and vectors is not None:
        names = sorted({y for y in labels if y is not None})
        y = np.array([names.index(v) if v is not None else -1 for v in labels], dtype=np.int64)
        rows = {k: v[y[v] >= 0] for k, v in rows.items()}
        task = ProbeTask(
            x=np.asarray(vectors, dtype=np.float32), y=np.maximum(y, 0), x_eval=vectors[eval_rows],
            y_eval=y[eval_rows], n_classes=len(names), hidden=128, batch_size=32, lr=1e-2,
        )  # fmt: skip
        metric = "error"
    else:
        all_texts = tuple(texts or ())
        task = LMTask(texts=all_texts, eval_texts=tuple(all_texts[i] for i in eval_rows), batch_size=32)
        metric = "loss"
    # d (irreducible error) is not identified by single-bucket curves (bench/qqt_real.py): calibrate it as the
    # best error of one run on all bucket rows together, run alongside the bucket runs
    everything = np.sort(np.concatenate(list(rows.values())))
    runs = bucket_runs(rows, epochs=epochs, max_rows=max_rows, seed=seed)
    runs += bucket_runs(
        {CALIBRATION_RUN: everything}, epochs=epochs, max_rows=max_rows * len(rows), seed=seed
    )
    done = qqt_curves(
        run_tasks(task, runs, executor=executor or LocalExecutor(progress=False)),
        pool_column="run",
        metric=metric,
    )
    curves = done.filter(pl.col("pool") != CALIBRATION_RUN)
    floor = float(done.filter(pl.col("pool") == CALIBRATION_RUN)["error"].min())  # type: ignore[arg-type]
    d = floor if floor < float(curves["error"].min()) else None  # type: ignore[arg-type]
    trained = {k: min(len(v), max_rows) for k, v in rows.items()}  # bucket_runs samples max_rows
    fit = fit_qqt(curves, trained, d=d, n_bootstrap=n_bootstrap, seed=seed).with_pool_sizes(
        {k: len(v) for k, v in rows.items()}
    )
    return BucketPlan(score=score, buckets=buckets, curves=curves, fit=fit, plan=fit.best_union(budgets))
