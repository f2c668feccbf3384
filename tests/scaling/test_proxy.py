"""Proxy runs: determinism, checkpoint bookkeeping, and curves that agree with the trained model's outputs."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from curate.errors import ConfigError, InputError
from scaling.proxy import ProbeRun, train_probe


@pytest.fixture(scope="module")
def topic_features(wiki_docs: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Real wiki topic data: 64-d TF-IDF/SVD features and integer topic ids."""
    tfidf = TfidfVectorizer(min_df=2).fit_transform(wiki_docs["text"].to_list())
    x = TruncatedSVD(64, random_state=0).fit_transform(tfidf).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = wiki_docs["label"].cast(pl.Categorical).to_physical().to_numpy().astype(np.int64)
    return x, y


def _probe(features: tuple[np.ndarray, np.ndarray], **kwargs: Any) -> ProbeRun:
    x, y = features
    return train_probe(x[:200], y[:200], x_eval=x[200:], y_eval=y[200:], lr=1e-2, **kwargs)


def test_probe_same_seed_same_curve_other_seed_differs(topic_features: tuple[np.ndarray, np.ndarray]) -> None:
    """Two runs with one seed give identical curves; another seed gives a different curve."""
    a = _probe(topic_features, epochs=3, seed=3).curve
    b = _probe(topic_features, epochs=3, seed=3).curve
    c = _probe(topic_features, epochs=3, seed=4).curve
    assert a.equals(b)
    assert not a["eval_loss"].equals(c["eval_loss"])


def test_probe_checkpoints_count_samples_and_fractional_epochs(
    topic_features: tuple[np.ndarray, np.ndarray],
) -> None:
    """200 rows, batch 64 (4 batches/epoch), 2 checkpoints/epoch: after batches 2 and 4 of each epoch."""
    curve = _probe(topic_features, epochs=2, batch_size=64, checkpoints_per_epoch=2).curve
    assert curve["samples_seen"].to_list() == [128, 200, 328, 400]
    assert curve["epoch"].to_list() == pytest.approx([0.64, 1.0, 1.64, 2.0])


def test_probe_curve_matches_predict_proba_and_learns(topic_features: tuple[np.ndarray, np.ndarray]) -> None:
    """The last logged eval loss/accuracy equal those recomputed from predict_proba, and beat the first."""
    x, y = topic_features
    run = _probe(topic_features, epochs=15, seed=0)
    proba = run.predict_proba(x[200:])
    assert proba.shape == (100, int(y.max()) + 1)
    assert np.allclose(proba.sum(axis=1), 1.0)
    last = run.curve.row(-1, named=True)
    assert last["eval_accuracy"] == pytest.approx(float((proba.argmax(1) == y[200:]).mean()))
    assert last["eval_loss"] == pytest.approx(float(-np.log(proba[np.arange(100), y[200:]]).mean()), rel=1e-5)
    assert last["eval_loss"] < run.curve["eval_loss"][0]
    assert last["eval_accuracy"] > 2.0 / proba.shape[1]  # well above chance on 11 topics


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"epochs": 0}, ConfigError, "'epochs' parameter of train_probe"),
        ({"lr": 0.0}, ConfigError, "'lr' parameter of train_probe"),
        ({"y": np.array([0.5] * 4)}, InputError, "integer class ids"),
        ({"y": np.array([0, 1, 2])}, InputError, "1-D array of 4 class ids"),
        ({"n_classes": 2}, InputError, "exceed every class id"),
        ({"x": np.full((4, 3), np.nan)}, InputError, "NaN"),
    ],
)
def test_probe_rejects_bad_input(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    """Bad arguments raise a Curate error naming the parameter."""
    args: dict[str, object] = {
        "x": np.eye(4, 3, dtype=np.float32),
        "y": np.array([0, 1, 2, 0]),
        "x_eval": np.eye(2, 3, dtype=np.float32),
        "y_eval": np.array([0, 1]),
    }
    args.update(kwargs)
    x, y = args.pop("x"), args.pop("y")
    with pytest.raises(error, match=match):
        train_probe(x, y, **args)  # type: ignore[arg-type]
