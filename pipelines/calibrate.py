"""Calibration proxy runs, the one implementation: source mixtures at pilot sizes, and quality buckets.

A proxy run is one row of a task table (run id, the pool rows it trains on in order, checkpoints, seed),
mapped with the executor's `map_tasks`: Ray tasks on a cluster, in order in-process, same seeds, same
curves. The proxy is a task callable: `NgramTask` (a smoothed n-gram LM on token ids; unlabelled text),
`LMTask` (a small byte-level transformer; unlabelled text, shows repetition) or `ProbeTask` (an MLP probe on
embeddings; labelled data). OT values of the mixture grid are tasks
too. `calibrate_mixtures` feeds Projektor and the mixture laws; `calibrate_buckets` feeds QQT.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import polars as pl
import pyarrow as pa

from curate.stages import Executor
from scaling.lm import VOCAB, ByteCorpus, LMShape, Schedule, lm_curve
from scaling.mixture import mixture_counts
from scaling.ngram import TokenizedTexts, ngram_curve
from scaling.ot import sinkhorn_divergence
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
    """The n-gram LM proxy: counts the task's rows in order; at each checkpoint the target loss (nats per
    token, averaged over target documents: `NgramLM.target_loss`)."""

    corpus: TokenizedTexts
    eval_corpus: TokenizedTexts
    order: int = 3

    @property
    def error(self) -> pl.Expr:
        """The eval loss over a uniform guess's (ln vocabulary size): below 1 for any smoothed model."""
        return pl.col("eval_loss") / math.log(self.corpus.vocab_size)

    def __call__(self, task: pa.Table) -> pa.Table:
        row = task.to_pylist()[0]
        run = ngram_curve(
            self.corpus,
            np.asarray(row["rows"], dtype=np.int64),
            eval_corpus=self.eval_corpus,
            checkpoints=row["checkpoints"],
            n_unique=row["n_unique"],
            order=self.order,
        )
        return _named(row["run"], run.curve)


def _named(run: str, curve: pl.DataFrame) -> pa.Table:
    """A proxy's curve (samples_seen, epoch, eval_loss, eval_accuracy) as CURVE rows of run `run`."""
    out = curve.select(pl.lit(run).alias("run"), "samples_seen", "epoch", "eval_loss", "eval_accuracy")
    return pl.DataFrame(out, schema=CURVE).to_arrow()


@dataclass(frozen=True)
class LMTask:
    """The byte-level transformer proxy (`scaling.lm`): one warmup-stable-decay trajectory over the task's
    rows, a decay branch ending at each checkpoint; the target metric is nats per byte averaged over target
    documents. Repeated rows are trained on again, so its curves pass one epoch."""

    corpus: ByteCorpus
    eval_corpus: ByteCorpus
    shape: LMShape
    schedule: Schedule

    @property
    def error(self) -> pl.Expr:
        """The eval loss over the untrained model's uniform guess (ln 258 nats a byte), at most 1."""
        return (pl.col("eval_loss") / math.log(VOCAB)).clip(upper_bound=1.0)

    def __call__(self, task: pa.Table) -> pa.Table:
        row = task.to_pylist()[0]
        curve = lm_curve(
            self.corpus,
            np.asarray(row["rows"], dtype=np.int64),
            eval_corpus=self.eval_corpus,
            checkpoints=row["checkpoints"],
            shape=self.shape,
            schedule=self.schedule,
            n_unique=row["n_unique"],
            seed=row["seed"],
        )
        return _named(row["run"], curve)


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


def pilot_scale(pool_units: Sequence[int], sizes: Sequence[int]) -> list[int]:
    """`sizes` (budget units) scaled down by one factor (ratios kept) when all pools together hold fewer
    units than the largest pilot (no mixture could fill it without repeats); unchanged otherwise."""
    total, top = float(sum(pool_units)), max(sizes)
    if total >= top:
        return sorted(int(n) for n in sizes)
    return [max(1, int(n * total / top)) for n in sorted(sizes)]


def mixture_sequence(
    pools: Mapping[str, np.ndarray],
    p: np.ndarray,
    sizes: Sequence[int],
    rng: np.random.Generator,
    units: np.ndarray | None = None,
) -> tuple[np.ndarray, list[int]]:
    """Pool rows in training order, and after how many rows each size n_k (budget units: a row's
    `units[row]`, 1 without them) is reached: the first rows hold `mixture_counts(p, n_k)` units of each
    source (nested samples). A source whose pool is smaller than its share repeats it in whole shuffled
    passes, as the selection at the budget would."""
    names = list(pools)
    top = mixture_counts(p, int(max(sizes)))
    drawn = []
    for s, need in zip(names, top, strict=True):
        size = float(units[pools[s]].sum()) if units is not None else float(len(pools[s]))
        passes = max(1, math.ceil(need / size)) if size > 0 else 1
        drawn.append(np.concatenate([rng.permutation(pools[s]) for _ in range(passes)]))
    cum = [np.cumsum(units[d]) if units is not None else np.arange(1, len(d) + 1) for d in drawn]
    blocks, have, marks = [], np.zeros(len(names), dtype=np.int64), []
    for n in sorted(sizes):
        want = np.array(
            [
                0 if u <= 0 else min(len(c), int(np.searchsorted(c, u, side="left")) + 1)
                for c, u in zip(cum, mixture_counts(p, int(n)), strict=True)
            ]
        )
        want = np.maximum(want, have)
        block = np.concatenate([d[h:w] for d, h, w in zip(drawn, have, want, strict=True)])
        blocks.append(rng.permutation(block))
        have = want
        marks.append(int(have.sum()))
    return np.concatenate(blocks).astype(np.int64), marks


def mixture_runs(
    pools: Mapping[str, np.ndarray],
    grid: np.ndarray,
    sizes: Sequence[int],
    *,
    repeats: int,
    passes: Sequence[int] | None = None,
    units: np.ndarray | None = None,
    seed: int = 0,
) -> tuple[list[dict[str, object]], pl.DataFrame]:
    """Per (mixture, repeat) one nested sample (`mixture_sequence`, sizes in budget units). Without `passes`
    (a count proxy) one run with a checkpoint at every size; with `passes` (one per size) one run per size
    training `passes[k]` shuffled passes over its rows (a fixed step budget). Returns the task rows and the
    points (run, samples_seen, mixture, n, repeat, one weight per source, rows: distinct training rows)."""
    names = list(pools)
    sizes = sorted(int(n) for n in sizes)
    runs: list[dict[str, object]] = []
    points = []
    for i, p in enumerate(grid):
        for r in range(repeats):
            sd = run_seed(seed, i, r)
            rng = np.random.default_rng(sd)
            seq, marks = mixture_sequence(pools, p, sizes, rng, units)
            weights = dict(zip(names, map(float, p), strict=True))
            if passes is None:
                name = f"mix{i:03d}/r{r}"
                distinct = len(np.unique(seq))
                runs.append({"run": name, "rows": seq.tolist(), "checkpoints": marks, "n_unique": distinct,
                             "seed": sd})  # fmt: skip
                points += [(name, k, i, n, r, weights, seq[:k]) for n, k in zip(sizes, marks, strict=True)]
                continue
            for n, k, times in zip(sizes, marks, passes, strict=True):
                name = f"mix{i:03d}/n{n}/r{r}"
                rows = np.concatenate([rng.permutation(seq[:k]) for _ in range(times)])
                distinct = len(np.unique(seq[:k]))
                runs.append({"run": name, "rows": rows.tolist(), "checkpoints": [k * times],
                             "n_unique": distinct, "seed": run_seed(seed, i, r, n)})  # fmt: skip
                points.append((name, k * times, i, n, r, weights, seq[:k]))
    frame = pl.DataFrame(
        [
            {"run": a, "samples_seen": b, "mixture": c, "n": d, "repeat": e, **w, "rows": rows.tolist()}
            for a, b, c, d, e, w, rows in points
        ],
        schema={"run": pl.String, "samples_seen": pl.Int64, "mixture": pl.Int64, "n": pl.Int64,
                "repeat": pl.Int64, **dict.fromkeys(names, pl.Float64), "rows": pl.List(pl.Int64)},
    )  # fmt: skip
    return runs, frame


@dataclass(frozen=True)
class OTTask:
    """S_eps between the uniform distribution on a sample's rows of `x` (column `rows`, at most `max_points`
    of them, seeded) and the target rows (at most `max_points`), for a one-row task table."""

    x: np.ndarray
    target: np.ndarray
    max_points: int
    seed: int = 0

    def __call__(self, task: pa.Table) -> pa.Table:
        row = task.to_pylist()[0]
        rows = np.asarray(row["rows"], dtype=np.int64)
        if len(rows) > self.max_points:
            rng = np.random.default_rng(run_seed(self.seed, len(rows), int(rows.sum())))
            rows = np.sort(rng.choice(rows, size=self.max_points, replace=False))
        value = sinkhorn_divergence(self.x[rows], self.target, max_points=self.max_points, seed=self.seed)
        return pa.table({"point": [row["point"]], "ot": [value]})


def mixture_ot(task: OTTask, samples: Sequence[np.ndarray], *, executor: Executor) -> np.ndarray:
    """S_eps of each sample (rows of task.x) against the target, one executor task each."""
    table = pa.table(
        {
            "point": list(range(len(samples))),
            "rows": [np.asarray(s, dtype=np.int64).tolist() for s in samples],
        },
        schema=pa.schema([("point", pa.int64()), ("rows", pa.list_(pa.int64()))]),
    )
    out = pl.DataFrame(executor.map_tasks(task, table)).sort("point")
    return out["ot"].to_numpy()


def calibrate_mixtures(
    task: ProxyTask,
    pools: Mapping[str, np.ndarray],
    grid: np.ndarray,
    sizes: Sequence[int],
    *,
    executor: Executor,
    repeats: int = 2,
    passes: Sequence[int] | None = None,
    units: np.ndarray | None = None,
    ot: OTTask | None = None,
    seed: int = 0,
) -> pl.DataFrame:
    """The mixture runs frame: run, mixture, n, repeat, one weight column per source, metric (the target eval
    loss after n budget units of distinct documents: `units` per task row, 1 without) and, with `ot`, the OT
    distance of each largest pilot's own training sample (null at the smaller sizes)."""
    runs, points = mixture_runs(pools, grid, sizes, repeats=repeats, passes=passes, units=units, seed=seed)
    curves = run_tasks(task, runs, executor=executor).select("run", "samples_seen", metric="eval_loss")
    frame = points.join(curves, on=["run", "samples_seen"], how="left")
    if ot is not None:  # the mixture law at the budget reads the OT of the largest pilots only
        frame = frame.with_row_index("i")
        top = frame.filter(pl.col("n") == max(sizes))
        values = pl.DataFrame({"i": top["i"], "ot": mixture_ot(ot, top["rows"].to_list(), executor=executor)})
        frame = frame.join(values, on="i", how="left").drop("i")
    return frame.drop("rows", "samples_seen").sort("mixture", "n", "repeat")


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
