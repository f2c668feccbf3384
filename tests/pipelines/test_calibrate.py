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
    NgramTask,
    ProbeTask,
    bucket_runs,
    calibrate_buckets,
    calibrate_mixtures,
    epochs_of,
    mixture_runs,
    run_tasks,
)
from scaling.mixture import mixture_counts
from scaling.ngram import NgramLM, tokenize
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


def test_mixture_runs_draw_each_source_by_its_weight() -> None:
    """Each run holds mixture_counts(p, n) rows of each source's pool, repeating a pool only past its size."""
    pools = {"a": np.arange(0, 30), "b": np.arange(30, 40), "c": np.arange(40, 100)}
    grid = simplex_grid(3, divisions=2)
    runs, jobs = mixture_runs(pools, grid, [20, 50], repeats=2, seed=0)
    assert len(runs) == len(grid) * 2 * 2 == jobs.height
    for run, job in zip(runs, jobs.iter_rows(named=True), strict=True):
        rows = np.asarray(run["rows"])
        counts = mixture_counts([job["a"], job["b"], job["c"]], job["n"])
        for pool, want in zip(pools.values(), counts, strict=True):
            mine = rows[np.isin(rows, pool)]
            assert len(mine) == want
            per_row = Counter(mine.tolist()).values()
            assert max(per_row, default=0) <= -(-want // len(pool))  # whole passes before any repeat
    assert runs[0]["rows"] != runs[1]["rows"]  # repeats draw differently


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
        direct = NgramLM().fit(ngram_task.corpus, np.asarray(rows[:n])).loss(ngram_task.eval_corpus)
        assert loss == pytest.approx(direct, rel=1e-12)
    assert curve["epoch"].to_list() == pytest.approx([30 / 90, 1.0, 2.0])


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


def _mixtures(task: NgramTask, executor: Executor) -> pl.DataFrame:
    pools = {"a": np.arange(0, 80), "b": np.arange(80, 160), "c": np.arange(160, 240)}
    return calibrate_mixtures(
        task, pools, simplex_grid(3, divisions=2), [30, 60], executor=executor, repeats=2
    )


def test_calibrate_mixtures_frame(ngram_task: NgramTask) -> None:
    """6 lattice mixtures x 2 sizes x 2 repeats rows, weights summing to 1, one finite loss each."""
    runs = _mixtures(ngram_task, _local())
    assert runs.height == 6 * 2 * 2
    assert set(runs.columns) >= {"run", "mixture", "n", "repeat", "a", "b", "c", "metric"}
    np.testing.assert_allclose(runs.select(pl.sum_horizontal("a", "b", "c")).to_series(), 1.0)
    assert runs["metric"].is_finite().all()


@pytest.mark.ray
def test_calibrations_are_the_same_on_ray(ngram_task: NgramTask, ray_runtime: None) -> None:
    """Ray tasks give the same mixture and bucket frames as the local executor."""
    from pipelines.ray_executor import RayExecutor

    assert_frame_equal(_mixtures(ngram_task, RayExecutor()), _mixtures(ngram_task, _local()))
    buckets = {"q0": np.arange(0, 100), "q1": np.arange(100, 240)}

    def curves(ex: Executor) -> pl.DataFrame:
        return calibrate_buckets(ngram_task, buckets, executor=ex, epochs=[1, 2, 4], max_rows=60, seeds=2)

    assert_frame_equal(curves(RayExecutor()), curves(_local()))
