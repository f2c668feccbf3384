"""Prototype scores (Sorscher et al. 2022) on real MiniLM embeddings, checked against NumPy recomputations."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from curate.errors import ConfigError, InputError
from pruning.prototypes import PrototypeScorer, default_k, prototype_scores


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_proto_dist_equals_numpy_recomputation_from_centroids(wiki_vectors: np.ndarray) -> None:
    """proto_dist = 1 - max_c cos(z, mu_c) and cluster_id = argmax_c, recomputed in NumPy from centroids_."""
    scorer = PrototypeScorer(k=8, seed=0).fit(wiki_vectors)
    got = scorer.score(wiki_vectors)
    cos = unit(wiki_vectors.astype(np.float64)) @ unit(scorer.centroids_.astype(np.float64)).T
    np.testing.assert_allclose(got["proto_dist"].to_numpy(), 1.0 - cos.max(axis=1), atol=1e-5)
    np.testing.assert_array_equal(got["cluster_id"].to_numpy(), cos.argmax(axis=1))
    assert scorer.centroids_.shape == (8, 384)
    assert got["class_proto_dist"].null_count() == len(wiki_vectors)  # fitted without labels


def test_class_proto_dist_is_distance_to_own_class_mean(
    wiki_small: pl.DataFrame, wiki_vectors: np.ndarray
) -> None:
    """class_proto_dist = 1 - cos(z, mean of the normalised embeddings of z's class); null for no label."""
    labels = wiki_small["label"].to_list()
    labels[0] = None
    got = prototype_scores(wiki_vectors, labels=labels, k=5, seed=0)["class_proto_dist"].to_numpy()
    z = unit(wiki_vectors.astype(np.float64))
    expected = np.full(len(labels), np.nan)
    for name in {y for y in labels if y is not None}:
        rows = np.array([y == name for y in labels])
        mean = z[rows].mean(axis=0)
        expected[rows] = 1.0 - z[rows] @ (mean / np.linalg.norm(mean))
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.isnan(got[0])


def test_same_seed_same_scores_other_seed_other_centroids(wiki_vectors: np.ndarray) -> None:
    """Two fits with one seed give identical frames; another seed starts k-means elsewhere."""
    a = PrototypeScorer(k=6, seed=3).fit(wiki_vectors)
    b = PrototypeScorer(k=6, seed=3).fit(wiki_vectors)
    c = PrototypeScorer(k=6, seed=4).fit(wiki_vectors)
    assert_frame_equal(a.score(wiki_vectors), b.score(wiki_vectors))
    assert not np.allclose(np.sort(a.centroids_, axis=0), np.sort(c.centroids_, axis=0))


def test_fit_on_a_sample_still_scores_every_row(wiki_vectors: np.ndarray) -> None:
    """With sample_size < n, k-means sees sample_size rows and every row still gets its nearest centroid."""
    scorer = PrototypeScorer(k=4, sample_size=50, seed=0).fit(wiki_vectors)
    got = scorer.score(wiki_vectors)
    assert scorer.n_fit_ == 50
    assert got.height == len(wiki_vectors)
    cos = unit(wiki_vectors) @ scorer.centroids_.T
    np.testing.assert_allclose(got["proto_dist"].to_numpy(), 1.0 - cos.max(axis=1), atol=1e-5)


def test_zero_rows_score_distance_one_and_are_not_fitted() -> None:
    """An all-zero vector (empty text) has cosine 0 to every prototype and is left out of the fit."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 8)).astype(np.float32)
    x[5] = 0.0
    scorer = PrototypeScorer(k=3, seed=0).fit(x)
    assert scorer.n_fit_ == 39
    assert scorer.score(x)["proto_dist"][5] == pytest.approx(1.0)


@pytest.mark.parametrize(("n", "k"), [(1, 1), (8, 2), (200, 10), (2_000, 32), (5_000_000, 1000)])
def test_default_k_is_sqrt_half_n_clipped(n: int, k: int) -> None:
    """k from data: round(sqrt(n/2)), at least 2 (or n when smaller), at most 1000."""
    assert default_k(n) == k


def test_default_k_is_used_when_k_is_none(wiki_vectors: np.ndarray) -> None:
    """Without k, the scorer fits round(sqrt(120/2)) = 8 prototypes."""
    assert PrototypeScorer().fit(wiki_vectors).k_ == 8


@pytest.mark.parametrize(
    ("fit_x", "score_x", "kwargs", "exc", "match"),
    [
        (np.full((10, 4), np.nan), None, {}, InputError, r"fit x contains NaN or infinite values in 10 row"),
        (np.ones((10, 4)), np.ones((3, 5)), {}, InputError, r"score x must have width 4; got width 5"),
        (np.ones(10), None, {}, InputError, r"must be a 2-D array of vectors; got shape \(10,\)"),
        (np.ones((0, 4)), None, {}, InputError, r"needs at least 1 row\(s\); got 0"),
        (np.eye(4), None, {"k": 9}, ConfigError, r"'k' parameter of PrototypeScorer\(\) must be at most"),
        (np.eye(4), None, {"k": 0}, ConfigError, r"'k' parameter .* must be a number in \[1, inf\]"),
        (np.eye(4), None, {"sample_size": 0}, ConfigError, r"'sample_size' parameter"),
    ],
)
def test_bad_input_raises_a_clear_error(
    fit_x: np.ndarray, score_x: np.ndarray | None, kwargs: dict[str, int], exc: type, match: str
) -> None:
    """NaN, wrong width, wrong rank, no rows and impossible k each name the problem."""
    with pytest.raises(exc, match=match):
        PrototypeScorer(seed=0, **kwargs).fit(fit_x).score(fit_x if score_x is None else score_x)


def test_labels_of_the_wrong_length_and_unfitted_scorer_raise() -> None:
    """A label list that does not match the rows, or score() before fit(), raises InputError."""
    x = np.eye(4, dtype=np.float32)
    with pytest.raises(InputError, match=r"fit labels must hold 4 labels .* got 3"):
        PrototypeScorer(k=2).fit(x, labels=["a", "b", "a"])
    with pytest.raises(InputError, match=r"call fit\(\) first"):
        PrototypeScorer(k=2).score(x)
