"""The score model: target distance and target_z against hand values, batch scorers keep rows and schema."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from curate import corpora
from curate.errors import InputError
from pruning.scores import EMBEDDING_SCORES, TEXT_SCORES, fit_scores, target_z

TEXTS = corpora.wiki(24, seed=4)["text"].to_list()


def _model(target: np.ndarray) -> object:
    rng = np.random.default_rng(0)
    sample = rng.normal(size=(12, 2))
    return fit_scores(
        [f"d{i}" for i in range(12)], sample, TEXTS[:12], target_vectors=target, target_texts=TEXTS[12:], k=2
    )


def test_target_dist_hand_values() -> None:
    """1 - cos(z, normalised mean of normalised target rows), computed by hand for 2-D vectors."""
    target = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0], [2.0, 0.0], [0.0, 1.0], [5.0, 0.0]])
    model = _model(target)  # unit rows: four (1, 0), two (0, 1): mean direction (2, 1)
    x = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], dtype=np.float32)
    got = model.embedding_scores(pa.array(["a", "b", "c"]), x)  # type: ignore[attr-defined]
    s5 = math.sqrt(5.0)
    np.testing.assert_allclose(got["target_dist"].to_numpy(), [1 - 2 / s5, 1 - 1 / s5, 1 + 2 / s5], rtol=1e-6)
    assert got.schema == EMBEDDING_SCORES


def test_target_z_is_the_mean_robust_z() -> None:
    """target_z = mean over signals of (score - median) / IQR with the target's statistics, by hand."""
    frame = pl.DataFrame({"target_dist": [1.0, 3.0], "target_ngram": [0.0, -4.0]})
    got = frame.select(target_z({"target_dist": (1.0, 2.0), "target_ngram": (0.0, 4.0)}))["target_z"]
    np.testing.assert_allclose(got.to_numpy(), [(0.0 + 0.0) / 2, (1.0 - 1.0) / 2])
    assert frame.with_columns(target_z({}))["target_z"].null_count() == 2


def test_text_scores_keep_rows_and_rank_junk_further() -> None:
    """One row per document in order; shuffled words of target text score further than target text."""
    model = _model(np.random.default_rng(2).normal(size=(6, 2)) + 1.0)
    rng = np.random.default_rng(1)
    junk = [" ".join(rng.permutation(t.split())) for t in TEXTS[12:18]]
    batch = pa.table(
        {
            "doc_id": [f"x{i}" for i in range(12)],
            "source": ["s"] * 12,
            "label": [None] * 12,
            "text": TEXTS[:6] + junk,
        }
    )
    got = model.text_scores(batch)  # type: ignore[attr-defined]
    assert got.schema == TEXT_SCORES and got["doc_id"].to_pylist() == batch["doc_id"].to_pylist()
    lm = got["target_lm"].to_numpy()
    assert lm[6:].mean() > lm[:6].mean()


def test_a_target_with_a_zero_mean_is_refused() -> None:
    """Target rows that cancel out have no direction: InputError."""
    with pytest.raises(InputError, match="zero mean embedding"):
        _model(np.array([[1.0, 0.0], [-1.0, 0.0]] * 3))
