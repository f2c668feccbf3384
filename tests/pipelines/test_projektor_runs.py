"""Projektor calibration runs: the runs frame over grid x pilot sizes x repeats, equal on both executors."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from curate.errors import InputError
from curate.stages import Executor
from pipelines.projektor_runs import calibrate_mixtures
from scaling.ot import MixtureDistance
from scaling.projektor import fit_projektor


@pytest.fixture(scope="module")
def labelled_pools(wiki_docs: pl.DataFrame) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], tuple]:
    """Three pools and a target of real Wikipedia summaries (16-d TF-IDF/SVD vectors, topic ids)."""
    tfidf = TfidfVectorizer(min_df=2).fit_transform(wiki_docs["text"].to_list())
    z = TruncatedSVD(16, random_state=0).fit_transform(tfidf).astype(np.float32)
    y = np.unique(wiki_docs["label"].to_numpy(), return_inverse=True)[1]
    pools = {"a": (z[:80], y[:80]), "b": (z[80:160], y[80:160]), "c": (z[160:240], y[160:240])}
    return pools, (z[240:], y[240:])


def _calibrate(labelled_pools: tuple, executor: Executor) -> pl.DataFrame:
    pools, target = labelled_pools
    dist = MixtureDistance({s: v[0] for s, v in pools.items()}, target[0])
    return calibrate_mixtures(
        pools,
        target,
        distance=dist,
        executor=executor,
        pilot_sizes=(20, 30),
        divisions=2,
        repeats=2,
        epochs=2,
    )


def test_calibrate_mixtures_local_frame(labelled_pools: tuple) -> None:
    """6 lattice mixtures x 2 sizes x 2 repeats rows, one OT per mixture, and fit_projektor accepts them."""
    from curate.stages import LocalExecutor

    runs = _calibrate(labelled_pools, LocalExecutor(progress=False))
    assert runs.height == 6 * 2 * 2
    assert set(runs.columns) >= {"n", "a", "b", "c", "ot", "metric", "repeat", "seed", "run", "mixture"}
    assert runs.group_by("mixture").agg(pl.col("ot").n_unique())["ot"].max() == 1
    assert (runs["metric"] > 0).all()
    np.testing.assert_allclose(runs.select(pl.sum_horizontal("a", "b", "c")).to_series(), 1.0)
    assert fit_projektor(runs, sources=["a", "b", "c"]).predict(300, [0.2, 0.3, 0.5]).value > 0


@pytest.mark.ray
@pytest.mark.slow  # ~80 s of Ray Data tasks on 2 cores; test_calibrate_mixtures_local_frame is its fast twin
def test_calibrate_mixtures_same_on_ray(labelled_pools: tuple, ray_runtime: None) -> None:
    """Ray tasks give the same runs frame as the local executor (seeded draws and probes)."""
    from curate.stages import LocalExecutor
    from pipelines.ray_executor import RayExecutor

    local = _calibrate(labelled_pools, LocalExecutor(progress=False))
    remote = _calibrate(labelled_pools, RayExecutor(batch_size=1))
    assert_frame_equal(local.sort("run"), remote.sort("run"), check_column_order=False)


def test_calibrate_mixtures_rejects_mismatch(labelled_pools: tuple) -> None:
    """A distance over other sources, or fewer than two pilot sizes, is an InputError."""
    from curate.stages import LocalExecutor

    pools, target = labelled_pools
    dist = MixtureDistance({"a": pools["a"][0], "b": pools["b"][0]}, target[0])
    with pytest.raises(InputError, match=r"distance sources \['a', 'b'\] differ from the pools"):
        calibrate_mixtures(pools, target, distance=dist, executor=LocalExecutor(progress=False))
    dist = MixtureDistance({s: v[0] for s, v in pools.items()}, target[0])
    with pytest.raises(InputError, match=r"pilot_sizes must be >= 2 increasing sizes; got \[20\]"):
        calibrate_mixtures(
            pools, target, distance=dist, executor=LocalExecutor(progress=False), pilot_sizes=(20,)
        )
