"""Target-vs-pool signals (issue 14): hashed n-grams, the cross-fitted classifier, target_lm, target_z."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np
import pytest
import scipy.sparse as sp
import xxhash
from sklearn.metrics import roc_auc_score

from curate.errors import ConfigError, InputError
from curate.junk import JunkCase, junk_case
from pruning.target import (
    TargetClassifier,
    TargetLM,
    hashed_ngrams,
    robust_z,
    target_lm_scores,
    target_ngram_scores,
    target_self_distance,
    target_z,
)
from scaling.ngram import NgramLM, tokenize

MIX = 0x9E3779B97F4A7C15


@pytest.fixture(scope="module")
def case() -> JunkCase:
    """A small real case: 80 State of the Union paragraphs, 48 junk rows of four kinds, 40 target rows."""
    return junk_case(
        "sotu", n_on_topic=80, n_junk=48, n_target=40, kinds=("spam", "boilerplate", "shuffled", "stuffing")
    )


def test_hashed_ngrams_equal_an_independent_computation() -> None:
    """Columns = xxh64 of words and multiply-xor bigrams mod n_features, sign = top bit, log1p, unit rows."""
    n = 1 << 12
    got = hashed_ngrams(["The cat saw the cat", "   "], n_features=n).toarray()
    h = [xxhash.xxh64_intdigest(w.encode()) for w in ("the", "cat", "saw", "the", "cat")]
    grams = h + [((a * MIX) % 2**64) ^ b for a, b in pairwise(h)]
    expected = np.zeros(n)
    for g in grams:
        expected[g % n] += -1.0 if g >> 63 else 1.0
    expected = np.sign(expected) * np.log1p(np.abs(expected))
    expected /= np.linalg.norm(expected)
    np.testing.assert_allclose(got[0], expected, atol=1e-6)
    assert not got[1].any()  # a text without words is the zero row


def test_cross_fitting_never_scores_a_row_with_a_model_that_saw_it(
    case: JunkCase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every fold model's training rows and the rows it scores are disjoint (spied on sklearn)."""
    import sklearn.linear_model

    seen: dict[int, dict[str, set[bytes]]] = {}

    def rows(x: sp.csr_matrix) -> set[bytes]:
        return {x[i].toarray().tobytes() for i in range(x.shape[0])}

    class Spy(sklearn.linear_model.LogisticRegression):
        def fit(self, x: Any, y: Any, sample_weight: Any = None) -> Any:
            seen.setdefault(id(self), {"fit": set(), "scored": set()})["fit"] |= rows(x)
            return super().fit(x, y, sample_weight)

        def decision_function(self, x: Any) -> Any:
            seen[id(self)]["scored"] |= rows(x)
            return super().decision_function(x)

    monkeypatch.setattr(sklearn.linear_model, "LogisticRegression", Spy)
    pool, target = case.pool["text"].to_list(), case.target["text"].to_list()
    clf = TargetClassifier(n_folds=4, n_features=1 << 14, seed=0).fit(pool, target)
    assert len(seen) == 4
    for record in seen.values():
        assert record["scored"] and not record["fit"] & record["scored"]
    fitted = hashed_ngrams(pool, n_features=1 << 14)
    for k, model in enumerate(clf.models_):
        mine = clf.pool_fold_ == k
        np.testing.assert_allclose(clf.pool_scores_[mine], model.decision_function(fitted[mine]), rtol=1e-5)


def test_rows_outside_the_sample_get_the_mean_of_every_fold_model(case: JunkCase) -> None:
    """With sample_size < pool, unsampled rows score the mean log-odds of all fold models (score())."""
    pool, target = case.pool["text"].to_list(), case.target["text"].to_list()
    clf = TargetClassifier(sample_size=60, seed=0).fit(pool, target)
    got = clf.pool_scores(pool)
    rest = np.setdiff1d(np.arange(len(pool)), clf.pool_rows_)
    assert len(clf.pool_rows_) == 60
    np.testing.assert_allclose(got[rest], clf.score([pool[i] for i in rest]), rtol=1e-6)
    np.testing.assert_allclose(got[clf.pool_rows_], clf.pool_scores_, rtol=1e-6)


def test_scores_are_deterministic_for_a_seed(case: JunkCase) -> None:
    """The same seed gives identical target_ngram scores; another seed other folds."""
    pool, target = case.pool["text"].to_list(), case.target["text"].to_list()
    a = target_ngram_scores(pool, target, seed=0)["target_ngram"].to_numpy()
    b = target_ngram_scores(pool, target, seed=0)["target_ngram"].to_numpy()
    c = target_ngram_scores(pool, target, seed=1)["target_ngram"].to_numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_signals_see_planted_junk(case: JunkCase) -> None:
    """On real text, target_ngram ranks spam/boilerplate/stuffing above on-topic; target_lm sees shuffled."""
    pool, target = case.pool["text"].to_list(), case.target["text"].to_list()
    kind = case.pool["kind"].to_numpy()
    ngram = target_ngram_scores(pool, target, seed=0)["target_ngram"].to_numpy()
    lm, lm_target = target_lm_scores(pool, target, seed=0)
    on = kind == "on_topic"
    for k in ("spam", "boilerplate", "stuffing"):
        m = on | (kind == k)
        assert roc_auc_score(kind[m] == k, ngram[m]) > 0.95
    m = on | (kind == "shuffled")
    assert roc_auc_score(kind[m] == "shuffled", lm[m]) > 0.8
    assert lm_target.shape == (40,) and np.isfinite(lm_target).all()


def test_target_lm_is_cross_fitted_on_the_target(case: JunkCase) -> None:
    """Target rows are scored by LMs fitted on the other folds; pool rows by LMs on every target row."""
    pool, target = case.pool["text"].to_list()[:30], case.target["text"].to_list()
    lm = TargetLM(n_folds=4, seed=2).fit(target)
    tok = tokenize(target)
    fold = np.random.default_rng(2).permutation(len(target)) % 4
    for k in range(4):
        train, held = tok.select(np.flatnonzero(fold != k)), tok.select(np.flatnonzero(fold == k))
        gain = NgramLM(order=3).fit(train).doc_loss(held) - NgramLM(order=1).fit(train).doc_loss(held)
        np.testing.assert_allclose(lm.target_scores_[fold == k], gain, rtol=1e-5)
    p = tokenize(pool)
    expected = NgramLM(order=3).fit(tok).doc_loss(p) - NgramLM(order=1).fit(tok).doc_loss(p)
    np.testing.assert_allclose(lm.score(pool), expected, rtol=1e-5)


def test_target_self_distance_is_leave_one_out() -> None:
    """Each target row's distance is 1 - cos to the normalised mean of the other unit rows."""
    t = np.random.default_rng(0).normal(size=(7, 5)).astype(np.float32)
    z = t / np.linalg.norm(t, axis=1, keepdims=True)
    expected = []
    for i in range(7):
        m = np.delete(z, i, axis=0).mean(axis=0)
        expected.append(1.0 - z[i] @ (m / np.linalg.norm(m)))
    np.testing.assert_allclose(target_self_distance(t), expected, atol=1e-6)


def test_robust_z_and_target_z_hand_values() -> None:
    """robust_z uses the reference's median and IQR; target_z averages the signals' z."""
    ref = np.array([0.0, 1.0, 2.0, 3.0, 4.0])  # median 2, IQR 3 - 1 = 2
    np.testing.assert_allclose(robust_z(np.array([1.0, 2.0, 6.0]), ref), [-0.5, 0.0, 2.0])
    other = (np.array([10.0, 10.0, 10.0]), np.array([8.0, 9.0, 10.0, 11.0, 12.0]))  # median 10, IQR 2
    got = target_z({"a": (np.array([1.0, 2.0, 6.0]), ref), "b": other})
    np.testing.assert_allclose(got, [-0.25, 0.0, 1.0])


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: TargetClassifier(n_folds=1).fit(["a"] * 5, ["b"] * 5), ConfigError, r"'n_folds' parameter"),
        (lambda: TargetClassifier(c=0).fit(["a"] * 5, ["b"] * 5), ConfigError, r"'c' parameter"),
        (lambda: TargetClassifier(ngram=4).fit(["a"] * 5, ["b"] * 5), ConfigError, r"'ngram' parameter"),
        (lambda: TargetClassifier().fit(["a"] * 5, ["b"] * 2), InputError, r"needs at least n_folds=5"),
        (lambda: TargetClassifier().score(["a"]), InputError, r"call fit\(\) first"),
        (lambda: hashed_ngrams(["a"], n_features=1), ConfigError, r"'n_features' parameter of hashed_ngrams"),
        (lambda: robust_z(np.ones(3), np.ones(4)), InputError, r"zero interquartile range"),
        (lambda: robust_z(np.ones(3), np.ones(1)), InputError, r"at least 2 finite values"),
        (lambda: target_z({}), InputError, r"at least one signal"),
        (
            lambda: target_z({"a": (np.ones(2), np.arange(4.0)), "b": (np.ones(3), np.arange(4.0))}),
            InputError,
            r"same pool rows",
        ),
        (lambda: target_lm_scores(["a b"], ["c d"] * 3), InputError, r"at least n_folds=5 target texts"),
        (lambda: TargetLM().score(["a"]), InputError, r"call fit\(\) first"),
        (lambda: target_lm_scores(["a"], ["b"] * 5, order=4), ConfigError, r"'order' parameter of TargetLM"),
        (lambda: target_self_distance(np.ones((1, 3))), InputError, r"at least 2 row"),
    ],
)
def test_bad_parameters_raise_named_errors(call: object, exc: type[Exception], match: str) -> None:
    """Bad folds, regularisation, sizes and references raise errors naming the parameter or input."""
    with pytest.raises(exc, match=match):
        call()  # type: ignore[operator]
