"""Target-vs-pool text classifier on hashed word n-grams (DSIR / DCLM family); larger = further from target.

Features: lowercase word unigrams and bigrams (tokenised in polars, xxh64 per word type, grams combined by
multiply-xor) hashed to `n_features` signed columns (the hashing trick), sublinear term frequency
log(1 + tf), rows L2-normalised. Model: L2 logistic regression of pool (1) against target (0) with
balanced class weights, so the score `target_ngram` = the model's log-odds that a text comes from the pool
rather than the target: on-topic rows, which the pool shares with the target, score low; junk, which only
the pool holds, scores high.

Cross-fitting: pool rows (up to `sample_size` of them, a seeded sample) and target rows are split into
`n_folds` folds; fold k's rows are scored by the model trained on every other fold, so no row is ever scored
by a model that saw it. Rows outside the fitted sample are scored by the mean log-odds of all fold models.

Fluency score `target_lm`: a document's trigram minus unigram NLL under n-gram LMs fitted on the target
(scaling.ngram): shuffled words, keyword lists and templates gain little from context. Combined score
`target_z` (the CPU default; bench/signals.py): each signal (`target_dist`, 1 - cos to the centred target
mean; `target_ngram`; `target_lm`) is scaled by its spread on the target rows themselves (leave-one-out
distances, cross-fitted scores): z = (s - median_T) / IQR_T, and the z's are averaged. The statistics come
from the target only, so a row's score does not depend on the rest of the pool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
import scipy.sparse as sp

from curate._validation import check_embeddings, check_interval
from curate.errors import InputError
from pruning.prototypes import normalize_rows
from scaling.ngram import NgramLM, TokenizedTexts, tokenize, word_hashes

N_FEATURES = 1 << 18
_MIX = np.uint64(0x9E3779B97F4A7C15)  # odd 64-bit constant: mixes the previous gram hash


def hashed_ngrams(texts: Sequence[str], *, n_features: int = N_FEATURES, ngram: int = 2) -> sp.csr_matrix:
    """Sparse (len(texts), n_features) float32 of hashed word 1..`ngram`-grams, log(1 + tf), unit rows."""
    check_interval("n_features", n_features, 2, None, caller="hashed_ngrams")
    check_interval("ngram", ngram, 1, 3, caller="hashed_ngrams")
    h, lens = word_hashes(texts)
    doc = np.repeat(np.arange(len(lens)), lens)
    pos = np.arange(len(h)) - np.repeat(np.cumsum(lens) - lens, lens)
    keys, docs, gram = [h], [doc], h
    for k in range(1, ngram):
        gram = (np.roll(gram, 1) * _MIX) ^ h  # hash of (w_{i-k}, ..., w_i); valid where pos >= k
        keys.append(gram[pos >= k])
        docs.append(doc[pos >= k])
    key = np.concatenate(keys)
    sign = np.where(key >> np.uint64(63), -1.0, 1.0).astype(np.float32)
    col = (key % np.uint64(n_features)).astype(np.int64)
    x = sp.csr_matrix((sign, (np.concatenate(docs), col)), shape=(len(lens), n_features), dtype=np.float32)
    x.sum_duplicates()
    x.data = np.sign(x.data) * np.log1p(np.abs(x.data))
    norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=1), dtype=np.float64).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0).astype(np.float32)
    return sp.csr_matrix(sp.diags(scale) @ x)


class TargetClassifier:
    """Cross-fitted pool-vs-target logistic regression on hashed n-grams (see the module docstring).

    Fitted: `models_` (one per fold), `pool_rows_` (pool rows in the fit sample), `pool_fold_` and
    `target_fold_` (each fitted row's fold), `pool_scores_` and `target_scores_` (cross-fitted log-odds).
    """

    def __init__(
        self,
        *,
        n_features: int = N_FEATURES,
        ngram: int = 2,
        n_folds: int = 5,
        c: float = 1.0,
        sample_size: int = 50_000,
        seed: int = 0,
    ) -> None:
        self.n_features = n_features
        self.ngram = ngram
        self.n_folds = n_folds
        self.c = c
        self.sample_size = sample_size
        self.seed = seed

    def _check(self) -> None:
        check_interval("n_features", self.n_features, 2, None, caller="TargetClassifier")
        check_interval("ngram", self.ngram, 1, 3, caller="TargetClassifier")
        check_interval("n_folds", self.n_folds, 2, None, caller="TargetClassifier")
        check_interval("c", self.c, 0, None, caller="TargetClassifier", closed="neither")
        check_interval("sample_size", self.sample_size, 2, None, caller="TargetClassifier")

    def _features(self, texts: Sequence[str]) -> sp.csr_matrix:
        return hashed_ngrams(texts, n_features=self.n_features, ngram=self.ngram)

    def fit(self, pool: Sequence[str], target: Sequence[str]) -> TargetClassifier:
        """Fit one model per fold on a seeded sample of `pool` and on `target`; keep cross-fitted scores."""
        from sklearn.linear_model import LogisticRegression

        self._check()
        if len(target) < self.n_folds or len(pool) < self.n_folds:
            raise InputError(
                f"TargetClassifier.fit needs at least n_folds={self.n_folds} pool and target texts; "
                f"got {len(pool)} pool and {len(target)} target texts."
            )
        rng = np.random.default_rng(self.seed)
        rows = np.arange(len(pool))
        if len(pool) > self.sample_size:
            rows = np.sort(rng.choice(len(pool), size=self.sample_size, replace=False))
        self.pool_rows_ = rows
        self.pool_fold_ = rng.permutation(len(rows)) % self.n_folds
        self.target_fold_ = rng.permutation(len(target)) % self.n_folds
        x = sp.vstack([self._features([pool[int(i)] for i in rows]), self._features(target)]).tocsr()
        y = np.r_[np.ones(len(rows), dtype=np.int64), np.zeros(len(target), dtype=np.int64)]
        fold = np.r_[self.pool_fold_, self.target_fold_]
        scores = np.empty(len(y), dtype=np.float64)
        self.models_ = []
        for k in range(self.n_folds):
            train = fold != k
            model = LogisticRegression(  # liblinear's dual solver: fast when features outnumber rows
                C=self.c,
                class_weight="balanced",
                max_iter=1000,
                solver="liblinear",
                dual=True,
                random_state=self.seed,  # liblinear shuffles; never the global RNG
            )
            model.fit(x[train], y[train])
            scores[~train] = model.decision_function(x[~train])
            self.models_.append(model)
        self.pool_scores_ = scores[: len(rows)]
        self.target_scores_ = scores[len(rows) :]
        return self

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """Mean log-odds (pool over target) of all fold models for texts none of them trained on (float32)."""
        if not hasattr(self, "models_"):
            raise InputError("TargetClassifier.score() needs a fitted classifier; call fit() first.")
        if not texts:
            return np.zeros(0, dtype=np.float32)
        x = self._features(texts)
        return np.mean([m.decision_function(x) for m in self.models_], axis=0).astype(np.float32)

    def pool_scores(self, pool: Sequence[str]) -> np.ndarray:
        """`target_ngram` for every row of the fitted `pool`: cross-fitted inside the sample, mean outside."""
        if not hasattr(self, "models_"):
            raise InputError("TargetClassifier.pool_scores() needs a fitted classifier; call fit() first.")
        out = np.empty(len(pool), dtype=np.float32)
        out[self.pool_rows_] = self.pool_scores_
        rest = np.setdiff1d(np.arange(len(pool)), self.pool_rows_)
        if len(rest):
            out[rest] = self.score([pool[int(i)] for i in rest])
        return out


def target_ngram_scores(
    pool: Sequence[str], target: Sequence[str], *, n_folds: int = 5, sample_size: int = 50_000, seed: int = 0
) -> pl.DataFrame:
    """Frame of target_ngram (float32; larger = less like `target`) for every pool text, cross-fitted."""
    clf = TargetClassifier(n_folds=n_folds, sample_size=sample_size, seed=seed).fit(pool, target)
    return pl.DataFrame({"target_ngram": clf.pool_scores(pool)})


def target_self_distance(target: np.ndarray) -> np.ndarray:
    """Leave-one-out `1 - cos(t_i, normalised mean of the other target rows)` per target row (float32)."""
    t = normalize_rows(check_embeddings(target, what="target_self_distance target", min_rows=2))
    others = normalize_rows(t.sum(axis=0, keepdims=True) - t)
    return (1.0 - np.einsum("ij,ij->i", t, others)).astype(np.float32)


def z_reference(reference: np.ndarray, *, what: str = "scores") -> tuple[float, float]:
    """(median, interquartile range) of a signal's target scores; InputError without spread."""
    ref = np.asarray(reference, dtype=np.float64)
    if ref.size < 2 or not np.isfinite(ref).all():
        raise InputError(f"robust_z reference of {what} needs at least 2 finite values; got {ref.size}.")
    q1, med, q3 = np.percentile(ref, [25, 50, 75])
    if q3 - q1 <= 0:
        raise InputError(f"robust_z reference of {what} has zero interquartile range; cannot scale by it.")
    return float(med), float(q3 - q1)


def robust_z(scores: np.ndarray, reference: np.ndarray, *, what: str = "scores") -> np.ndarray:
    """`(scores - median(reference)) / IQR(reference)` (float32); InputError if reference has no spread."""
    med, iqr = z_reference(reference, what=what)
    return ((np.asarray(scores, dtype=np.float64) - med) / iqr).astype(np.float32)


def target_z(signals: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Mean over named signals (pool scores, target scores) of robust_z(pool, target): how many target spreads
    each pool row lies beyond the target's typical score; larger = further (the `target_z` column)."""
    if not signals:
        raise InputError("target_z needs at least one signal; got none.")
    sizes = {name: len(pool) for name, (pool, _) in signals.items()}
    if len(set(sizes.values())) != 1:
        raise InputError(f"target_z signals must score the same pool rows; got sizes {sizes}.")
    return np.mean([robust_z(p, t, what=name) for name, (p, t) in signals.items()], axis=0).astype(np.float32)


class TargetLM:
    """`target_lm` scorer: an `order`-gram and a unigram LM fitted on the target (scaling.ngram, word tokens).

    Fitted: `high_`, `low_` (the LMs on every target row) and `target_scores_` (target rows, cross-fitted in
    `n_folds` folds: no target row is scored by LMs that counted it).
    """

    def __init__(self, *, order: int = 3, n_folds: int = 5, seed: int = 0) -> None:
        self.order = order
        self.n_folds = n_folds
        self.seed = seed

    def fit(self, target: Sequence[str] | TokenizedTexts) -> TargetLM:
        """Fit both LMs on the target and the cross-fitted target scores."""
        check_interval("n_folds", self.n_folds, 2, None, caller="TargetLM")
        check_interval("order", self.order, 2, 3, caller="TargetLM")
        t = target if isinstance(target, TokenizedTexts) else tokenize(target)
        if len(t) < self.n_folds:
            raise InputError(f"TargetLM needs at least n_folds={self.n_folds} target texts; got {len(t)}.")
        fold = np.random.default_rng(self.seed).permutation(len(t)) % self.n_folds
        scores = np.empty(len(t), dtype=np.float64)
        for k in range(self.n_folds):
            held = t.select(np.flatnonzero(fold == k))
            train = t.select(np.flatnonzero(fold != k))
            high, low = NgramLM(order=self.order).fit(train), NgramLM(order=1).fit(train)
            scores[fold == k] = high.doc_loss(held) - low.doc_loss(held)
        self.target_scores_ = scores.astype(np.float32)
        self.high_, self.low_ = NgramLM(order=self.order).fit(t), NgramLM(order=1).fit(t)
        return self

    def score(self, texts: Sequence[str] | TokenizedTexts) -> np.ndarray:
        """Per-document `order`-gram minus unigram NLL (nats/token, float32) of texts the LMs never saw."""
        if not hasattr(self, "high_"):
            raise InputError("TargetLM.score() needs a fitted scorer; call fit() first.")
        x = texts if isinstance(texts, TokenizedTexts) else tokenize(texts)
        if len(x) == 0:
            return np.zeros(0, dtype=np.float32)
        return (self.high_.doc_loss(x) - self.low_.doc_loss(x)).astype(np.float32)


def target_lm_scores(
    pool: Sequence[str] | TokenizedTexts,
    target: Sequence[str] | TokenizedTexts,
    *,
    order: int = 3,
    n_folds: int = 5,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """`target_lm` of pool and target rows: per-document NLL of an `order`-gram LM minus a unigram LM's
    (nats/token), both fitted on the target; larger = context helps less than in the target's language.
    Pool rows use LMs on every target row; target rows are cross-fitted in `n_folds` folds."""
    lm = TargetLM(order=order, n_folds=n_folds, seed=seed).fit(target)
    return lm.score(pool), lm.target_scores_
