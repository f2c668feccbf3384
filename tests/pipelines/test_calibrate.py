"""Calibration runs: what each proxy run trains on (mixtures, buckets, epochs), the task wrappers against
direct calls of the proxies, and the same frames on both executors."""

from __future__ import annotations

from collections import Counter

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from curate import corpora
from curate.stages import Executor
from pipelines.calibrate import (
    LMTask,
    NgramTask,
    OTTask,
    ProbeTask,
    bucket_runs,
    calibrate_buckets,
    calibrate_mixtures,
    epochs_of,
    mixture_runs,
    pilot_scale,
    run_seed,
    run_tasks,
)
from pipelines.proxy_data import proxy_kind
from scaling.lm import LMShape, Schedule, encode, lm_curve
from scaling.mixture import mixture_counts
from scaling.ngram import NgramLM, tokenize
from scaling.ot import sinkhorn_divergence
from scaling.proxy import train_probe
from scaling.simplex import simplex_grid


@pytest.fixture(scope="module")
def ngram_task() -> NgramTask:
    """An n-gram proxy over 240 real Wikipedia summaries, evaluated on 40 others."""
    texts = corpora.wiki(280, seed=3)["text"].to_list()
    return NgramTask(corpus=tokenize(texts[:240]), eval_corpus=tokenize(texts[240:]))


def test_epochs_of_makes_whole_passes_then_a_partial_one() -> None:
    """n = 2.5 pool sizes: every row twice, half of them a third time; each pass is a permutation."""
    pool = np.arange(100, 110)
    rows = epochs_of(pool, 25, np.random.default_rng(0))
    assert len(rows) == 25
    assert sorted(rows[:10]) == sorted(rows[10:20]) == list(pool)
    assert set(Counter(rows.tolist()).values()) <= {2, 3} and len(set(rows[20:])) == 5


def test_mixture_runs_are_nested_samples_without_repeats() -> None:
    """A count-proxy run per (mixture, repeat): its first n rows hold mixture_counts(p, n) distinct rows of
    each source for every pilot size n, with a checkpoint there; repeats draw differently."""
    pools = {"a": np.arange(0, 30), "b": np.arange(30, 60), "c": np.arange(60, 100)}
    grid = simplex_grid(3, divisions=2)
    runs, points = mixture_runs(pools, grid, [5, 10, 25], repeats=2, seed=0)
    assert len(runs) == len(grid) * 2 and points.height == len(grid) * 2 * 3
    for run in runs:
        rows = np.asarray(run["rows"])
        assert run["checkpoints"] == [5, 10, 25] and len(set(rows.tolist())) == len(rows) == 25
    for point in points.iter_rows(named=True):
        prefix = np.asarray(runs[[r["run"] for r in runs].index(point["run"])]["rows"])[: point["n"]]
        assert point["rows"] == prefix.tolist()
        counts = mixture_counts([point["a"], point["b"], point["c"]], point["n"])
        assert [int(np.isin(prefix, pool).sum()) for pool in pools.values()] == counts.tolist()
    assert runs[0]["rows"] != runs[1]["rows"]


def test_mixture_runs_with_passes_train_each_size_apart() -> None:
    """With passes, one run per size: `passes` shuffled passes over the size's distinct rows, a checkpoint at
    their end, and the smaller size's rows inside the larger's."""
    pools = {"a": np.arange(0, 30), "b": np.arange(30, 60)}
    runs, points = mixture_runs(pools, np.array([[0.5, 0.5]]), [4, 20], repeats=1, passes=[5, 2], seed=1)
    small, big = runs
    assert small["checkpoints"] == [20] and big["checkpoints"] == [40]
    assert set(Counter(small["rows"]).values()) == {5} and len(set(small["rows"])) == 4
    assert set(Counter(big["rows"]).values()) == {2} and set(small["rows"]) <= set(big["rows"])
    assert points["samples_seen"].to_list() == [20, 40]


def test_a_short_pool_repeats_in_whole_passes() -> None:
    """A mixture asking more rows of a source than its pool holds repeats that pool in shuffled passes: the
    first 10 rows are one pass, the next 10 another."""
    pools = {"a": np.arange(0, 10), "b": np.arange(10, 100)}
    runs, _ = mixture_runs(pools, np.array([[1.0, 0.0]]), [2, 20], repeats=1)
    rows = runs[0]["rows"]
    assert runs[0]["checkpoints"] == [2, 20] and runs[0]["n_unique"] == 10
    assert sorted(rows[2:]) != sorted(range(18))  # not a truncated pass
    assert sorted(rows) == sorted([*range(10), *range(10)])


def test_mixture_runs_in_tokens_reach_each_sources_units() -> None:
    """With per-row units (tokens), the first rows up to each checkpoint hold at least mixture_counts(p, n)
    units of each source, and without its largest row that source would hold less (no row to spare)."""
    rng = np.random.default_rng(3)
    units = rng.integers(1, 40, size=200)
    pools = {"a": np.arange(0, 100), "b": np.arange(100, 200)}
    runs, points = mixture_runs(pools, np.array([[0.3, 0.7]]), [100, 400, 1000], repeats=1, units=units)
    rows = np.asarray(runs[0]["rows"])
    for n, k in zip([100, 400, 1000], runs[0]["checkpoints"], strict=True):
        prefix = rows[:k]
        for s, want in zip(("a", "b"), mixture_counts([0.3, 0.7], n), strict=True):
            mine = prefix[np.isin(prefix, pools[s])]
            assert units[mine].sum() >= want  # the share is reached...
            assert units[mine].sum() - units[mine].max() < want  # ...and not passed by a whole row
    assert points["n"].to_list() == [100, 400, 1000] and len(set(rows.tolist())) == len(rows)


def test_pilot_scale_only_when_all_pools_are_short() -> None:
    """Sizes shrink by one factor only when the pools hold fewer units in all than the largest pilot."""
    assert pilot_scale([100, 400], [50, 200, 500]) == [50, 200, 500]
    assert pilot_scale([100, 150], [50, 200, 500]) == [25, 100, 250]


def test_bucket_runs_checkpoint_at_whole_epochs() -> None:
    """A bucket run of a 7-row bucket trains 8 passes with checkpoints after passes 1, 2, 4 and 8."""
    runs, jobs = bucket_runs(
        {"s/q0": np.arange(7), "s/q1": np.arange(7, 400)}, epochs=[1, 2, 4, 8], max_rows=50, seeds=2
    )
    small = runs[jobs["pool"].to_list().index("s/q0")]
    assert small["checkpoints"] == [7, 14, 28, 56] and len(small["rows"]) == 56
    big = [r for r, p in zip(runs, jobs["pool"].to_list(), strict=True) if p == "s/q1"]
    assert all(len(set(r["rows"])) == 50 for r in big)
    assert set(big[0]["rows"]) != set(big[1]["rows"])  # each seed samples the bucket anew


def test_ngram_task_is_the_lm_trained_on_the_first_n_rows(ngram_task: NgramTask) -> None:
    """Each curve point equals an n-gram LM fitted directly on the run's first n rows."""
    rows = list(np.random.default_rng(1).permutation(240)[:90]) * 2
    curve = run_tasks(
        ngram_task,
        [{"run": "r", "rows": rows, "checkpoints": [30, 90, 180], "n_unique": 90, "seed": 0}],
        executor=_local(),
    )
    for n, loss in curve.select("samples_seen", "eval_loss").iter_rows():
        direct = (
            NgramLM().fit(ngram_task.corpus, np.asarray(rows[:n])).doc_loss(ngram_task.eval_corpus).mean()
        )
        assert loss == pytest.approx(direct, rel=1e-12)
    assert curve["epoch"].to_list() == pytest.approx([30 / 90, 1.0, 2.0])


def test_lm_task_runs_the_byte_lm_on_the_task_rows_and_seed() -> None:
    """The task's curve is lm_curve on the run's rows, checkpoints and seed; its error is the loss over the
    uniform guess's ln 258, at most 1."""
    texts = corpora.wiki(60, seed=4)["text"].to_list()
    shape = LMShape(d_model=16, n_layers=1, max_len=32)
    task = LMTask(encode(texts[:50], shape), encode(texts[50:], shape), shape, Schedule(batch_size=4))
    rows = list(np.random.default_rng(2).permutation(50)[:20]) * 2
    run = {"run": "r", "rows": rows, "checkpoints": [10, 20, 40], "n_unique": 20, "seed": 5}
    curve = run_tasks(task, [run], executor=_local())
    direct = lm_curve(task.corpus, rows, eval_corpus=task.eval_corpus, checkpoints=[10, 20, 40], shape=shape,
                      schedule=task.schedule, n_unique=20, seed=5)  # fmt: skip
    assert curve["eval_loss"].to_list() == direct["eval_loss"].to_list()
    assert curve["epoch"].to_list() == pytest.approx([0.5, 1.0, 2.0])
    error = pl.DataFrame({"eval_loss": [1.0, 5.6]}).select(task.error).to_series().to_list()
    assert error == pytest.approx([1.0 / np.log(258), 1.0])


def test_hybrid_proxy_roles() -> None:
    """hybrid: the n-gram LM designs and predicts, the byte LM confirms and measures buckets; others fixed."""
    roles = ("design", "confirm", "quality", "predict")
    assert [proxy_kind("hybrid", r) for r in roles] == ["ngram", "lm", "lm", "ngram"]  # type: ignore[arg-type]
    for kind in ("ngram", "lm", "probe"):
        assert {proxy_kind(kind, r) for r in roles} == {kind}  # type: ignore[arg-type]


def test_probe_task_is_a_probe_trained_on_the_first_n_rows(wiki_docs: pl.DataFrame) -> None:
    """A probe curve point equals train_probe on the run's first n rows (one pass, same seed)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    task = ProbeTask(
        x=x,
        y=y,
        x_eval=x[:30],
        y_eval=y[:30],
        n_classes=2,
        hidden=8,
        batch_size=16,
        lr=1e-2,
        weight_decay=0.3,
    )
    rows = list(range(100))
    curve = run_tasks(
        task, [{"run": "r", "rows": rows, "checkpoints": [60], "n_unique": 100, "seed": 5}], executor=_local()
    )
    direct = train_probe(
        x[:60],
        y[:60],
        x_eval=x[:30],
        y_eval=y[:30],
        n_classes=2,
        epochs=1,
        batch_size=16,
        lr=1e-2,
        weight_decay=0.3,
        hidden=8,
        seed=5,
        device="cpu",
    )
    assert curve["eval_loss"][0] == pytest.approx(float(direct.curve["eval_loss"][-1]), rel=1e-6)


def _local() -> Executor:
    from curate.stages import LocalExecutor

    return LocalExecutor()


def _mixtures(task: NgramTask, executor: Executor, ot: OTTask | None = None) -> pl.DataFrame:
    pools = {"a": np.arange(0, 80), "b": np.arange(80, 160), "c": np.arange(160, 240)}
    return calibrate_mixtures(
        task, pools, simplex_grid(3, divisions=2), [6, 20, 60], executor=executor, repeats=2, ot=ot
    )


def test_calibrate_mixtures_frame(ngram_task: NgramTask) -> None:
    """6 lattice mixtures x 3 sizes x 2 repeats rows; each metric is the n-gram LM of the run's first n rows
    and, at the largest size only, the OT is the Sinkhorn divergence of those rows, computed directly."""
    x = np.random.default_rng(0).normal(size=(240, 8))
    ot = OTTask(x, x[:30] + 0.5, max_points=40)
    runs = _mixtures(ngram_task, _local(), ot)
    assert runs.height == 6 * 3 * 2
    assert set(runs.columns) == {"run", "mixture", "n", "repeat", "a", "b", "c", "metric", "ot"}
    np.testing.assert_allclose(runs.select(pl.sum_horizontal("a", "b", "c")).to_series(), 1.0)
    pools = {"a": np.arange(0, 80), "b": np.arange(80, 160), "c": np.arange(160, 240)}
    tasks, _ = mixture_runs(pools, simplex_grid(3, divisions=2), [6, 20, 60], repeats=2)
    row = runs.filter((pl.col("mixture") == 4) & (pl.col("n") == 60) & (pl.col("repeat") == 1)).row(
        0, named=True
    )
    rows = np.asarray(next(t for t in tasks if t["run"] == row["run"])["rows"])
    direct = NgramLM().fit(ngram_task.corpus, rows).doc_loss(ngram_task.eval_corpus).mean()
    assert row["metric"] == pytest.approx(direct, rel=1e-12)
    assert runs.filter(pl.col("n") < 60)["ot"].null_count() == runs.filter(pl.col("n") < 60).height
    capped = np.random.default_rng(run_seed(0, 60, int(rows.sum()))).choice(rows, size=40, replace=False)
    assert row["ot"] == pytest.approx(sinkhorn_divergence(x[np.sort(capped)], x[:30] + 0.5, max_points=40))


@pytest.mark.ray
def test_calibrations_are_the_same_on_ray(ngram_task: NgramTask, ray_runtime: None) -> None:
    """Ray tasks give the same mixture and bucket frames as the local executor."""
    from pipelines.ray_executor import RayExecutor

    ot = OTTask(np.random.default_rng(0).normal(size=(240, 8)), np.zeros((5, 8)), max_points=30)
    assert_frame_equal(_mixtures(ngram_task, RayExecutor(), ot), _mixtures(ngram_task, _local(), ot))
    buckets = {"q0": np.arange(0, 100), "q1": np.arange(100, 240)}

    def curves(ex: Executor) -> pl.DataFrame:
        return calibrate_buckets(ngram_task, buckets, executor=ex, epochs=[1, 2, 4], max_rows=60, seeds=2)

    assert_frame_equal(curves(RayExecutor()), curves(_local()))
