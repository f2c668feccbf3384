"""Calibration proxy runs, the one implementation: source mixtures at pilot sizes, and quality buckets.

A proxy run is one row of a task table (run id, the pool rows it trains on in order, checkpoints, seed),
mapped with the executor's `map_tasks`: Ray tasks on a cluster, in order in-process, same seeds, same
curves. The proxy is a task callable: `NgramTask` (a smoothed n-gram LM on token ids; unlabelled text, the
default) or `ProbeTask` (an MLP probe on embeddings; labelled data). OT values of the mixture grid are tasks
too. `calibrate_mixtures` feeds Projektor and the mixture laws; `calibrate_buckets` feeds QQT.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import polars as pl
import pyarrow as pa

from curate.stages import Executor
from scaling.mixture import mixture_counts
from scaling.ngram import NgramLM, TokenizedTexts
from scaling.ot import MixtureDistance
from scaling.proxy import train_probe

CURVE = {
    "run": pl.String,
    "samples_seen": pl.Int64,
    "epoch": pl.Float64,
    "eval_loss": pl.Float64,
    "eval_accuracy": pl.Float64,
}
_TASKS = pa.schema(
    [
        ("run", pa.string()),
        ("rows", pa.list_(pa.int64())),
        ("checkpoints", pa.list_(pa.int64())),
        ("n_unique", pa.int64()),
        ("seed", pa.int64()),
    ]
)


class ProxyTask(Protocol):
    """Trains one proxy on the rows of a one-row task table; returns its curve (CURVE columns)."""

    @property
    def error(self) -> pl.Expr:
        """The curve's error in (0, 1] that QQT fits (from eval_loss / eval_accuracy)."""
        ...

    def __call__(self, task: pa.Table) -> pa.Table: ...


@dataclass(frozen=True)
class NgramTask:
    """The n-gram LM proxy: counts the task's rows in order, eval loss (nats/token) at each checkpoint."""

    corpus: TokenizedTexts
    eval_corpus: TokenizedTexts
    order: int = 3

    @property
    def error(self) -> pl.Expr:
        """The eval loss over a uniform guess's (ln vocabulary size): below 1 for any smoothed model."""
        return pl.col("eval_loss") / math.log(self.corpus.vocab_size)

    def __call__(self, task: pa.Table) -> pa.Table:
        row = task.to_pylist()[0]
        rows = np.asarray(row["rows"], dtype=np.int64)
        out = []
        for n in row["checkpoints"]:
            loss = NgramLM(order=self.order).fit(self.corpus, rows[:n]).loss(self.eval_corpus)
            out.append(
                {"run": row["run"], "samples_seen": n, "epoch": n / row["n_unique"], "eval_loss": loss}
            )
        return pl.DataFrame(out, schema=CURVE).to_arrow()


@dataclass(frozen=True)
class ProbeTask:
    """The MLP probe proxy: one run per checkpoint n, trained on the task's first n rows (repeats included)
    with its learning rate decaying to 0 at n, so a curve point is a run trained for that budget.

    Defaults (AdamW lr 0.1, weight decay 0.5, batch 32) were chosen on a validation split of Wikipedia
    (never a bench's eval rows) as the setting whose curves fall at every added pass up to 8 passes, clean
    and 50%-noisy buckets alike, from the lowest loss at a quarter pass."""

    x: np.ndarray
    y: np.ndarray
    x_eval: np.ndarray
    y_eval: np.ndarray
    n_classes: int
    hidden: int = 128
    batch_size: int = 32
    lr: float = 0.1
    weight_decay: float = 0.5

    @property
    def error(self) -> pl.Expr:
        """The eval error rate, 1 - accuracy (the loss is unbounded when a probe is confidently wrong)."""
        return 1.0 - pl.col("eval_accuracy")

    def __call__(self, task: pa.Table) -> pa.Table:
        row = task.to_pylist()[0]
        rows = np.asarray(row["rows"], dtype=np.int64)
        out = []
        for n in row["checkpoints"]:
            run = train_probe(
                self.x[rows[:n]],
                self.y[rows[:n]],
                x_eval=self.x_eval,
                y_eval=self.y_eval,
                n_classes=self.n_classes,
                epochs=1,
                batch_size=self.batch_size,
                lr=self.lr,
                weight_decay=self.weight_decay,
                hidden=self.hidden,
                seed=row["seed"],
                device="cpu",
            )
            last = run.curve.row(-1, named=True)
            out.append(
                {
                    "run": row["run"],
                    "samples_seen": n,
                    "epoch": n / row["n_unique"],
                    "eval_loss": last["eval_loss"],
                    "eval_accuracy": last["eval_accuracy"],
                }
            )
        return pl.DataFrame(out, schema=CURVE).to_arrow()


def run_tasks(task: ProxyTask, runs: Sequence[Mapping[str, object]], *, executor: Executor) -> pl.DataFrame:
    """Every run's curve (CURVE columns), sorted by run and samples seen."""
    table = pa.Table.from_pylist([dict(r) for r in runs], schema=_TASKS)
    out = pl.DataFrame(executor.map_tasks(task, table), schema=CURVE) if runs else pl.DataFrame(schema=CURVE)
    return out.sort("run", "samples_seen")


def run_seed(seed: int, *parts: int) -> int:
    """One seed per (seed, parts...), the same in every process."""
    return int(np.random.SeedSequence([seed, *parts]).generate_state(1)[0] >> 1)


def epochs_of(pool: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """`n` rows of `pool` in training order: whole shuffled passes, then a partial one (repeats = epochs)."""
    full, rest = divmod(n, len(pool))
    passes = [rng.permutation(pool) for _ in range(full)]
    return np.concatenate([*passes, rng.choice(pool, size=rest, replace=False)]).astype(np.int64)


def mixture_runs(
    pools: Mapping[str, np.ndarray], grid: np.ndarray, sizes: Sequence[int], *, repeats: int, seed: int = 0
) -> tuple[list[dict[str, object]], pl.DataFrame]:
    """One run per (mixture, size, repeat): per source `mixture_counts(p, n)` rows (as epochs when its pool is
    smaller), shuffled together. Returns the task rows and their description (run, mixture, n, repeat, p)."""
    names = list(pools)
    runs: list[dict[str, object]] = []
    jobs = []
    for i, p in enumerate(grid):
        for n in sizes:
            for r in range(repeats):
                sd = run_seed(seed, int(n), i, r)
                rng = np.random.default_rng(sd)
                counts = mixture_counts(p, int(n))
                rows = np.concatenate(
                    [epochs_of(pools[s], int(c), rng) for s, c in zip(names, counts, strict=True) if c > 0]
                )
                rows = rows[rng.permutation(len(rows))]
                name = f"mix{i:03d}/n{n}/r{r}"
                runs.append(
                    {
                        "run": name,
                        "rows": rows.tolist(),
                        "checkpoints": [int(n)],
                        "n_unique": int(n),
                        "seed": sd,
                    }
                )
                jobs.append(
                    {
                        "run": name,
                        "mixture": i,
                        "n": int(n),
                        "repeat": r,
                        **dict(zip(names, map(float, p), strict=True)),
                    }
                )
    return runs, pl.DataFrame(jobs)


@dataclass(frozen=True)
class OTTask:
    """S_eps between mixture `mixtures[i]` and the target for a one-row task table (column `mixture` = i)."""

    distance: MixtureDistance
    mixtures: np.ndarray

    def __call__(self, task: pa.Table) -> pa.Table:
        i = int(task["mixture"][0].as_py())
        fresh = copy.deepcopy(
            self.distance
        )  # no warm start carried over from another task: same value anywhere
        return pa.table({"mixture": [i], "ot": [fresh.value(self.mixtures[i])]})


def mixture_ot(distance: MixtureDistance, mixtures: np.ndarray, *, executor: Executor) -> np.ndarray:
    """S_eps(mu_p, nu) per mixture row, one task each (the target's self term is solved once, before)."""
    distance.problem.target_self()
    tasks = pa.table({"mixture": list(range(len(mixtures)))})
    out = pl.DataFrame(executor.map_tasks(OTTask(distance, np.asarray(mixtures)), tasks)).sort("mixture")
    return out["ot"].to_numpy()


def calibrate_mixtures(
    task: ProxyTask,
    pools: Mapping[str, np.ndarray],
    grid: np.ndarray,
    sizes: Sequence[int],
    *,
    executor: Executor,
    repeats: int = 2,
    seed: int = 0,
) -> pl.DataFrame:
    """The mixture runs frame: run, mixture, n, repeat, one weight column per source, metric (eval loss)."""
    runs, jobs = mixture_runs(pools, grid, sizes, repeats=repeats, seed=seed)
    curves = run_tasks(task, runs, executor=executor)
    final = curves.group_by("run").agg(pl.col("eval_loss").sort_by("samples_seen").last().alias("metric"))
    return jobs.join(final, on="run", how="left").sort("mixture", "n", "repeat")


def bucket_runs(
    buckets: Mapping[str, np.ndarray], *, epochs: Sequence[float], max_rows: int, seeds: int, seed: int = 0
) -> tuple[list[dict[str, object]], pl.DataFrame]:
    """Per bucket and seed: a sample of at most `max_rows` rows, a training order of max(epochs) passes, and a
    checkpoint after each number of passes in `epochs` (fractions: part of the first); each task trains one
    run per checkpoint (the n-gram model's counts, the probe's own schedule). Returns the task rows and
    their description (run, pool, seed, pool_rows)."""
    runs: list[dict[str, object]] = []
    jobs = []
    for b, name in enumerate(sorted(buckets)):
        for s in range(seeds):
            sd = run_seed(seed, b, s)
            rng = np.random.default_rng(sd)
            rows = buckets[name]
            if len(rows) > max_rows:
                rows = np.sort(rng.choice(rows, size=max_rows, replace=False))
            order = epochs_of(rows, math.ceil(len(rows) * max(epochs)), rng)
            marks = sorted({max(1, round(len(rows) * e)) for e in epochs})
            run = f"bucket{b:03d}/s{s}"
            runs.append(
                {"run": run, "rows": order.tolist(), "checkpoints": marks, "n_unique": len(rows), "seed": sd}
            )
            jobs.append({"run": run, "pool": name, "seed": s, "pool_rows": len(rows)})
    return runs, pl.DataFrame(
        jobs, schema={"run": pl.String, "pool": pl.String, "seed": pl.Int64, "pool_rows": pl.Int64}
    )


def calibrate_buckets(
    task: ProxyTask,
    buckets: Mapping[str, np.ndarray],
    *,
    executor: Executor,
    epochs: Sequence[float],
    max_rows: int,
    seeds: int = 3,
    seed: int = 0,
) -> pl.DataFrame:
    """Bucket curves: pool, seed, pool_rows, samples_seen, epoch, eval_loss, eval_accuracy, and the task's
    error in (0, 1] that QQT fits (`scaling.qqt`)."""
    runs, jobs = bucket_runs(buckets, epochs=epochs, max_rows=max_rows, seeds=seeds, seed=seed)
    curves = run_tasks(task, runs, executor=executor).with_columns(error=task.error)
    return jobs.join(curves, on="run").drop("run").sort("pool", "seed", "samples_seen")
