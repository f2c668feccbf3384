"""Quality-bucket plan on real wiki topics: bucket proxies as tasks (local and Ray agree), QQT fit."""

from __future__ import annotations

import json
import warnings

import numpy as np
import polars as pl
import pytest
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from curate import corpora
from curate.errors import FitWarning, InputError
from curate.stages import LocalExecutor
from pipelines.proxy_runs import BucketPlan, plan_buckets
from pruning.prototypes import prototype_scores

BUDGETS = [500, 2000, 8000]


@pytest.fixture(scope="module")
def topic_pool() -> tuple[pl.DataFrame, np.ndarray, list[str]]:
    """900 labelled wiki summaries: 64-d TF-IDF/SVD vectors, class-prototype distance as the score."""
    docs = corpora.wiki(900, labelled_only=True, seed=1)
    tfidf = TfidfVectorizer(min_df=2).fit_transform(docs["text"].to_list())
    x = TruncatedSVD(64, random_state=0).fit_transform(tfidf).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    labels = docs["label"].to_list()
    scores = prototype_scores(x, labels=labels, seed=0)
    return scores.select(pl.Series("doc_id", docs["id"]), "class_proto_dist"), x, labels


def _plan(pool: tuple[pl.DataFrame, np.ndarray, list[str]], **kwargs: object) -> BucketPlan:
    scores, x, labels = pool
    return plan_buckets(
        scores, score="class_proto_dist", budgets=BUDGETS, vectors=x, labels=labels, n_buckets=3, epochs=4,
        max_rows=240, n_eval=200, n_bootstrap=5, seed=0, **kwargs,  # type: ignore[arg-type]
    )  # fmt: skip


@pytest.fixture(scope="module")
def local_plan(topic_pool: tuple[pl.DataFrame, np.ndarray, list[str]]) -> BucketPlan:
    """The plan with every bucket proxy run in this process (real curves may warn: rises, unseen decay)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        return _plan(topic_pool, executor=LocalExecutor(progress=False))


def test_plan_buckets_fits_every_bucket_and_plans_each_budget(local_plan: BucketPlan) -> None:
    """Three buckets of the 700 non-eval rows, a curve and a QQT row each, one plan row per budget."""
    sizes = local_plan.buckets.filter(pl.col("bucket").is_not_null())["bucket"].value_counts()
    assert sorted(sizes["count"].to_list()) == [233, 233, 234]
    assert local_plan.buckets["bucket"].null_count() == 200  # the held-out evaluation rows
    assert local_plan.fit.params["pool_size"].sort().to_list() == [233, 233, 234]  # planned at full size
    assert sorted(local_plan.curves["pool"].unique().to_list()) == ["q0", "q1", "q2"]
    assert local_plan.curves.group_by("pool").len()["len"].to_list() == [8, 8, 8]  # 4 epochs x 2
    assert local_plan.plan["budget"].to_list() == BUDGETS
    ranked = local_plan.fit.pools
    for row in local_plan.plan.iter_rows(named=True):
        assert row["pools"] == ranked[: row["n_pools"]]
        assert row["lo"] <= row["error"] <= row["hi"]
        assert row["error"] == pytest.approx(local_plan.fit.predict(row["pools"], row["budget"]))
    laws = json.loads(json.dumps(local_plan.laws()))
    assert laws["qqt"]["params"]["a"] == pytest.approx(local_plan.fit.a)


@pytest.mark.ray
def test_ray_tasks_give_the_local_curves(
    topic_pool: tuple[pl.DataFrame, np.ndarray, list[str]], local_plan: BucketPlan, ray_runtime: None
) -> None:
    """Bucket proxies run as Ray tasks reproduce the in-process curves exactly (same seeds)."""
    from pipelines.ray_executor import RayExecutor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        ray_plan = _plan(topic_pool, executor=RayExecutor(batch_size=64))
    assert ray_plan.curves.equals(local_plan.curves)


def test_plan_buckets_rejects_mismatched_inputs(
    topic_pool: tuple[pl.DataFrame, np.ndarray, list[str]],
) -> None:
    """Labels without vectors, too few rows for the evaluation split: InputError naming the need."""
    scores, x, labels = topic_pool
    with pytest.raises(InputError, match="vectors and labels for each of the 900"):
        plan_buckets(scores, score="class_proto_dist", budgets=BUDGETS, labels=labels)
    with pytest.raises(InputError, match="more than 2 x n_eval"):
        plan_buckets(scores, score="class_proto_dist", budgets=BUDGETS, vectors=x, labels=labels, n_eval=450)
