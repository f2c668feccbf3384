"""Quality buckets: equal-count quantiles of a real score, ties by doc_id, nulls left out; QQT curves."""

from __future__ import annotations

import polars as pl
import pytest

from curate.errors import ConfigError, InputError, SchemaError
from scaling.buckets import bucket_name, qqt_curves, quality_buckets


@pytest.fixture(scope="module")
def length_scores(wiki_docs: pl.DataFrame) -> pl.DataFrame:
    """Real documents scored by their length in characters (any numeric column can cut buckets)."""
    return wiki_docs.select(
        pl.col("id").alias("doc_id"), pl.col("text").str.len_chars().cast(pl.Float64).alias("n")
    )


def test_buckets_are_equal_count_and_ordered_by_score(length_scores: pl.DataFrame) -> None:
    """300 rows into 4 buckets of 75; every score of bucket i is <= every score of bucket i + 1."""
    out = quality_buckets(length_scores, column="n", n_buckets=4)
    assert out["doc_id"].to_list() == length_scores["doc_id"].to_list()  # rows and order kept
    assert out["bucket"].value_counts().sort("bucket")["count"].to_list() == [75, 75, 75, 75]
    span = out.group_by("bucket").agg(lo=pl.col("n").min(), hi=pl.col("n").max()).sort("bucket")
    assert (span["hi"].to_numpy()[:-1] <= span["lo"].to_numpy()[1:]).all()
    n, ids = length_scores["n"].to_list(), length_scores["doc_id"].to_list()
    expected = [0] * len(n)
    for rank, i in enumerate(sorted(range(len(n)), key=lambda i: (n[i], ids[i]))):
        expected[i] = rank * 4 // len(n)
    assert out["bucket"].to_list() == expected


def test_ties_break_by_doc_id_and_nulls_get_no_bucket() -> None:
    """Equal scores go to buckets in doc_id order; null and NaN scores get a null bucket."""
    scores = pl.DataFrame(
        {"doc_id": ["d", "c", "b", "a", "e", "f"], "s": [1.0, 1.0, 1.0, 1.0, None, float("nan")]}
    )
    out = quality_buckets(scores, column="s", n_buckets=2)
    assert dict(zip(out["doc_id"], out["bucket"], strict=True)) == {
        "a": 0, "b": 0, "c": 1, "d": 1, "e": None, "f": None,
    }  # fmt: skip
    assert quality_buckets(scores.head(2), column="s", n_buckets=5)["bucket"].to_list() == [1, 0]
    assert bucket_name(3) == "q3"


@pytest.mark.parametrize(
    ("frame", "kwargs", "error", "match"),
    [
        (pl.DataFrame({"doc_id": ["a"], "s": [1.0]}), {"column": "t"}, SchemaError, "lacks column"),
        (pl.DataFrame({"doc_id": ["a"], "s": ["x"]}), {"column": "s"}, InputError, "must be numeric"),
        (pl.DataFrame({"doc_id": ["a"], "s": [None]}, schema={"doc_id": pl.String, "s": pl.Float64}),
         {"column": "s"}, InputError, "no finite score"),
        (pl.DataFrame({"doc_id": ["a"], "s": [1.0]}), {"column": "s", "n_buckets": 0}, ConfigError,
         "n_buckets"),
    ],
)  # fmt: skip
def test_quality_buckets_rejects_bad_input(
    frame: pl.DataFrame, kwargs: dict[str, object], error: type[Exception], match: str
) -> None:
    """Missing or non-numeric columns, no usable score and n_buckets < 1 raise errors naming them."""
    with pytest.raises(error, match=match):
        quality_buckets(frame, **kwargs)  # type: ignore[arg-type]


def test_qqt_curves_average_seeds_into_error_or_loss() -> None:
    """Two seeds of one run become one point each: error = 1 - mean accuracy, or the mean loss."""
    curves = pl.DataFrame(
        {
            "run": ["q0", "q0", "q0", "q0"],
            "samples_seen": [10, 10, 20, 20],
            "eval_loss": [1.0, 2.0, 0.5, 1.5],
            "eval_accuracy": [0.5, 0.7, 0.8, 0.9],
        }
    )
    err = qqt_curves(curves, pool_column="run")
    assert err.to_dict(as_series=False) == {
        "pool": ["q0", "q0"],
        "samples_seen": [10, 20],
        "error": pytest.approx([0.4, 0.15]),
    }
    loss = qqt_curves(curves, pool_column="run", metric="loss")
    assert loss["error"].to_list() == pytest.approx([1.5, 1.0])
    with pytest.raises(ConfigError, match="'metric' parameter of qqt_curves"):
        qqt_curves(curves, pool_column="run", metric="accuracy")  # type: ignore[arg-type]
