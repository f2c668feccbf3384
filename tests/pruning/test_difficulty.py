"""EL2N / proxy loss (Paul et al. 2021), tiny-LM loss and target distance, on real Wikipedia text."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from curate.errors import ConfigError, InputError
from pruning.difficulty import EL2NScorer, el2n_scores


def test_el2n_and_loss_equal_numpy_recomputation_from_the_probes(
    wiki_small: pl.DataFrame, wiki_vectors: np.ndarray
) -> None:
    """el2n = mean over seeds of ||softmax - onehot(y)||_2 and loss = mean of -log p_y, from each probe."""
    labels = wiki_small["label"].to_list()
    scorer = EL2NScorer(epochs=3, n_seeds=2, seed=0).fit(wiki_vectors, labels)
    got = scorer.score(wiki_vectors, labels)
    ids = np.array([list(scorer.classes_).index(y) for y in labels])
    probs = [run.predict_proba(wiki_vectors) for run in scorer.runs_]
    onehot = np.zeros_like(probs[0])
    onehot[np.arange(len(ids)), ids] = 1.0
    el2n = np.mean([np.sqrt(((p - onehot) ** 2).sum(axis=1)) for p in probs], axis=0)
    loss = np.mean([-np.log(p[np.arange(len(ids)), ids]) for p in probs], axis=0)
    np.testing.assert_allclose(got["el2n"].to_numpy(), el2n, rtol=1e-5)
    np.testing.assert_allclose(got["loss"].to_numpy(), loss, rtol=1e-5)
    assert len(scorer.runs_) == 2
    assert list(scorer.classes_) == sorted(set(labels))


def test_el2n_ranks_mislabelled_examples_as_harder(
    wiki_small: pl.DataFrame, wiki_vectors: np.ndarray
) -> None:
    """Examples whose topic label was replaced by a wrong one get a higher mean EL2N than the rest."""
    labels = wiki_small["label"].to_list()
    topics = sorted(set(labels))
    flipped = np.arange(0, len(labels), 8)
    for i in flipped:
        labels[i] = topics[(topics.index(labels[i]) + 5) % len(topics)]
    scores = el2n_scores(wiki_vectors, labels, seed=0)["el2n"].to_numpy()
    rest = np.setdiff1d(np.arange(len(labels)), flipped)
    assert scores[flipped].mean() > scores[rest].mean() + 0.1


def test_el2n_same_seed_same_scores(wiki_small: pl.DataFrame, wiki_vectors: np.ndarray) -> None:
    """Two EL2N runs with one seed give identical frames."""
    labels = wiki_small["label"].to_list()
    a = el2n_scores(wiki_vectors, labels, epochs=2, n_seeds=1, seed=7)
    b = el2n_scores(wiki_vectors, labels, epochs=2, n_seeds=1, seed=7)
    assert_frame_equal(a, b)


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: el2n_scores(np.eye(4), ["a"] * 4), InputError, r"needs at least 2 classes; got 1"),
        (lambda: el2n_scores(np.eye(4), ["a", None, "b", "a"]), InputError, r"none missing"),
        (lambda: el2n_scores(np.eye(3), ["a", "b"]), InputError, r"must hold 3 labels"),
        (
            lambda: (
                EL2NScorer(epochs=1, n_seeds=1).fit(np.eye(4), ["a", "b"] * 2).score(np.eye(4), ["c"] * 4)
            ),
            InputError,
            r"labels unseen in fit\(\): c",
        ),
        (lambda: el2n_scores(np.eye(4), ["a", "b"] * 2, n_seeds=0), ConfigError, r"'n_seeds' parameter"),
    ],
)
def test_bad_input_raises_a_clear_error(call: object, exc: type, match: str) -> None:
    """Bad labels and unfitted scorers name the problem."""
    with pytest.raises(exc, match=match):
        call()  # type: ignore[operator]
