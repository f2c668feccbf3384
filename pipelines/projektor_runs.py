"""Projektor calibration runs: a simplex-lattice mixture grid × pilot sizes × repeats of the shared probe.

Every proxy run and every OT value is one task of the executor (`RayExecutor`: parallel Ray tasks; the local
executor runs them in order), through the task machinery of pipelines.calibrate. A run draws its training
set without replacement per source (scaling.mixture.sample_mixture) and reports the probe's best-checkpoint
target metric. The result is the runs frame of scaling.projektor (n, one column per source, ot, metric)
plus run, mixture, repeat and seed; fit_projektor takes the median over repeats.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa

from curate._validation import check_interval, check_option
from curate.errors import InputError
from curate.stages import Executor
from pipelines.calibrate import ProbeTask, run_tasks
from scaling.mixture import sample_mixture
from scaling.ot import MixtureDistance
from scaling.projektor import MetricKind
from scaling.simplex import simplex_grid


@dataclass(frozen=True)
class OTTask:
    """S_ε between mixture `mixtures[i]` and the target for a one-row task table (column `mixture` = i)."""

    distance: MixtureDistance
    mixtures: np.ndarray

    def __call__(self, task: pa.Table) -> pa.Table:
        i = int(task["mixture"][0].as_py())
        return pa.table({"mixture": [i], "ot": [self.distance.value(self.mixtures[i])]})


def job_seed(seed: int, n: int, mixture: int, repeat: int) -> int:
    """One seed per (n, mixture, repeat), the same in every process."""
    return int(np.random.SeedSequence([seed, n, mixture, repeat]).generate_state(1)[0] >> 1)


def proxy_runs(
    pools: Mapping[str, tuple[np.ndarray, np.ndarray]],
    target: tuple[np.ndarray, np.ndarray],
    mixtures: np.ndarray,
    sizes: Sequence[int],
    *,
    executor: Executor,
    repeats: int = 3,
    epochs: int = 10,
    hidden: int = 128,
    batch_size: int = 64,
    lr: float = 1e-3,
    n_classes: int | None = None,
    metric: MetricKind = "loss",
    seed: int = 0,
) -> pl.DataFrame:
    """A probe run per (mixture, size, repeat): run, mixture, n, a column per source, repeat, seed, metric."""
    check_interval("repeats", repeats, 1, None, caller="proxy_runs")
    check_option("metric", metric, ("loss", "accuracy"), caller="proxy_runs")
    sources = list(pools)
    if mixtures.ndim != 2 or mixtures.shape[1] != len(sources):
        raise InputError(f"mixtures must have one column per source {sources}; got shape {mixtures.shape}.")
    offsets = np.cumsum([0] + [len(pools[s][1]) for s in sources])
    x = np.concatenate([pools[s][0] for s in sources]).astype(np.float32)
    y = np.concatenate([pools[s][1] for s in sources]).astype(np.int64)
    k = n_classes or int(max(y.max(), target[1].max())) + 1
    jobs, tasks = [], []
    for i, p in enumerate(mixtures):
        for n in sizes:
            for r in range(repeats):
                sd = job_seed(seed, int(n), i, r)
                rows = sample_mixture(np.diff(offsets).tolist(), p, int(n), seed=sd)
                run = f"mix{i:03d}/n{n}/r{r}"
                glob = np.concatenate([o + rw for o, rw in zip(offsets[:-1], rows, strict=True)])
                tasks.append(
                    {"run": run, "rows": glob.tolist(), "epochs": epochs, "checkpoints": 1, "seed": sd}
                )
                jobs.append(
                    {
                        "run": run,
                        "mixture": i,
                        "n": int(n),
                        **dict(zip(sources, map(float, p), strict=True)),
                        "repeat": r,
                        "seed": sd,
                    }
                )
    task = ProbeTask(
        x=x,
        y=y,
        x_eval=target[0].astype(np.float32),
        y_eval=target[1].astype(np.int64),
        n_classes=k,
        hidden=hidden,
        batch_size=batch_size,
        lr=lr,
    )
    curves = run_tasks(task, tasks, executor=executor)
    column = "eval_loss" if metric == "loss" else "eval_accuracy"
    best = curves.group_by("run").agg(
        (pl.col(column).min() if metric == "loss" else pl.col(column).max()).alias("metric")
    )
    return pl.DataFrame(jobs).join(best, on="run", how="left").sort("mixture", "n", "repeat")


def mixture_ot(distance: MixtureDistance, mixtures: np.ndarray, *, executor: Executor) -> np.ndarray:
    """S_ε(μ_p, ν) per mixture row, one task each (the target's self term is solved once, before)."""
    distance.problem.target_self()
    tasks = pa.table({"mixture": list(range(len(mixtures)))})
    out = pl.DataFrame(executor.map_tasks(OTTask(distance, np.asarray(mixtures)), tasks)).sort("mixture")
    return out["ot"].to_numpy()


def calibrate_mixtures(
    pools: Mapping[str, tuple[np.ndarray, np.ndarray]],
    target: tuple[np.ndarray, np.ndarray],
    *,
    distance: MixtureDistance,
    executor: Executor,
    pilot_sizes: Sequence[int] = (1000, 1500),
    divisions: int = 4,
    mixtures: np.ndarray | None = None,
    repeats: int = 3,
    epochs: int = 10,
    hidden: int = 128,
    batch_size: int = 64,
    lr: float = 1e-3,
    metric: MetricKind = "loss",
    seed: int = 0,
) -> pl.DataFrame:
    """The Projektor runs frame over the simplex lattice (or `mixtures`) at `pilot_sizes`, `repeats` each.

    pools and target are (embeddings, int class ids); distance must list the same sources in the same order.
    """
    sources = list(pools)
    if tuple(distance.sources) != tuple(sources):
        raise InputError(f"distance sources {list(distance.sources)} differ from the pools {sources}.")
    if len(pilot_sizes) < 2 or any(b <= a for a, b in itertools.pairwise(pilot_sizes)):
        raise InputError(f"pilot_sizes must be >= 2 increasing sizes; got {list(pilot_sizes)}.")
    grid = simplex_grid(len(sources), divisions=divisions) if mixtures is None else np.asarray(mixtures)
    ot_values = mixture_ot(distance, grid, executor=executor)
    runs = proxy_runs(
        pools,
        target,
        grid,
        pilot_sizes,
        executor=executor,
        repeats=repeats,
        epochs=epochs,
        hidden=hidden,
        batch_size=batch_size,
        lr=lr,
        metric=metric,
        seed=seed,
    )
    return runs.join(pl.DataFrame({"mixture": np.arange(len(grid)), "ot": ot_values}), on="mixture")
