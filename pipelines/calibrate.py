"""Calibration proxy runs of the pipeline: source mixtures at pilot sizes, and multi-epoch runs per bucket.

Every run is one row of a task table (its run id, the pool rows it trains on, epochs, seed), mapped with the
executor's `map_tasks`, so runs go to Ray tasks on a cluster and run in order in-process. The proxy model is
the shared one of `scaling.proxy` (an MLP probe on embeddings, or a tiny byte LM on texts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from curate.stages import Executor
from pipelines.plan import split_budget
from scaling.proxy import train_probe, train_tiny_lm

CURVE_COLUMNS = ("run", "samples_seen", "epoch", "eval_loss", "eval_accuracy")


def _curve(run: str, curve: pl.DataFrame) -> pa.Table:
    return (
        curve.select(pl.lit(run).alias("run"), *CURVE_COLUMNS[1:])
        .cast(
            {
                "samples_seen": pl.Int64,
                "epoch": pl.Float64,
                "eval_loss": pl.Float64,
                "eval_accuracy": pl.Float64,
            }
        )
        .to_arrow()
    )


@dataclass(frozen=True)
class ProbeTask:
    """Trains the MLP probe on the pool rows of one task row; returns its checkpoint curve on the target."""

    x: np.ndarray
    y: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray
    n_classes: int
    hidden: int
    batch_size: int
    lr: float

    def __call__(self, task: pa.Table) -> pa.Table:
        row = task.to_pylist()[0]
        rows = np.asarray(row["rows"], dtype=np.int64)
        run = train_probe(
            self.x[rows],
            self.y[rows],
            x_eval=self.x_eval,
            y_eval=self.y_eval,
            n_classes=self.n_classes,
            epochs=row["epochs"],
            batch_size=self.batch_size,
            lr=self.lr,
            hidden=self.hidden,
            checkpoints_per_epoch=row["checkpoints"],
            seed=row["seed"],
            device="cpu",
        )
        return _curve(row["run"], run.curve)


@dataclass(frozen=True)
class LMTask:
    """Trains the tiny byte LM on the texts of one task row; returns its checkpoint curve on the target."""

    texts: tuple[str, ...]
    eval_texts: tuple[str, ...]
    batch_size: int
    d_model: int = 64
    max_len: int = 128
    lr: float = 3e-3

    def __call__(self, task: pa.Table) -> pa.Table:
        row = task.to_pylist()[0]
        run = train_tiny_lm(
            [self.texts[i] for i in row["rows"]],
            eval_texts=self.eval_texts,
            epochs=row["epochs"],
            batch_size=self.batch_size,
            lr=self.lr,
            d_model=self.d_model,
            max_len=self.max_len,
            checkpoints_per_epoch=row["checkpoints"],
            seed=row["seed"],
            device="cpu",
        )
        return _curve(row["run"], run.curve)


def task_table(runs: Sequence[Mapping[str, object]]) -> pa.Table:
    """The task table of `runs` (run, rows, epochs, checkpoints, seed), one row per proxy run."""
    schema = pa.schema(
        [
            ("run", pa.string()),
            ("rows", pa.list_(pa.int64())),
            ("epochs", pa.int64()),
            ("checkpoints", pa.int64()),
            ("seed", pa.int64()),
        ]
    )
    return pa.Table.from_pylist([dict(r) for r in runs], schema=schema)


def run_tasks(
    task: ProbeTask | LMTask, runs: Sequence[Mapping[str, object]], *, executor: Executor
) -> pl.DataFrame:
    """Every run's checkpoint curve (run, samples_seen, epoch, eval_loss, eval_accuracy), sorted by run."""
    return pl.DataFrame(executor.map_tasks(task, task_table(runs))).sort("run", "samples_seen")


def mixture_grid(sources: Sequence[str], *, n_mixtures: int, seed: int = 0) -> np.ndarray:
    """(n_mixtures, k) mixtures on the simplex: uniform first, then Dirichlet(1) draws, rounded to 1e-3."""
    k = len(sources)
    rng = np.random.default_rng(seed)
    grid = [np.full(k, 1.0 / k)]
    while len(grid) < n_mixtures:
        p = np.round(rng.dirichlet(np.ones(k)), 3)
        p[np.argmax(p)] += 1.0 - p.sum()  # exact sum after rounding
        grid.append(p)
    return np.array(grid)


def mixture_runs(
    pools: Mapping[str, np.ndarray],
    grid: np.ndarray,
    sizes: Sequence[int],
    *,
    epochs: int,
    seed: int = 0,
) -> list[dict[str, object]]:
    """One run per (mixture, pilot size): per source, split_budget(p, n) pool rows drawn without replacement
    (with replacement when the pool is smaller); run id `mix<i>/n<n>`."""
    names = sorted(pools)
    streams = np.random.SeedSequence(seed).spawn(len(grid) * len(sizes))
    runs: list[dict[str, object]] = []
    for i, p in enumerate(grid):
        for j, n in enumerate(sizes):
            rng = np.random.default_rng(streams[i * len(sizes) + j])
            counts = split_budget(dict(zip(names, p, strict=True)), int(n))
            rows = [
                rng.choice(pools[s], size=c, replace=c > len(pools[s])) for s, c in counts.items() if c > 0
            ]
            runs.append(
                {
                    "run": f"mix{i:03d}/n{n}",
                    "rows": np.sort(np.concatenate(rows)).tolist(),
                    "epochs": epochs,
                    "checkpoints": 1,
                    "seed": seed + i,
                }
            )
    return runs


def bucket_runs(
    buckets: Mapping[str, np.ndarray], *, epochs: int, max_rows: int, seed: int = 0
) -> list[dict[str, object]]:
    """One multi-epoch run per bucket (pool name -> pool rows), at most `max_rows` rows each (seeded sample),
    two checkpoints per epoch, so one run gives a curve over repetitions."""
    rng = np.random.default_rng(seed)
    runs: list[dict[str, object]] = []
    for name in sorted(buckets):
        rows = buckets[name]
        if len(rows) > max_rows:
            rows = np.sort(rng.choice(rows, size=max_rows, replace=False))
        runs.append({"run": name, "rows": rows.tolist(), "epochs": epochs, "checkpoints": 2, "seed": seed})
    return runs
