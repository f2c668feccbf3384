"""Corpus centering (issue 14) against a NumPy recomputation; a centred space is its own EmbeddingSpace."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from curate.centering import NO_CENTERING, Centering, CenteringAccumulator, fit_centering
from curate.embeddings import EmbeddingSpace, check_same_space, embeddings_table, read_space
from curate.errors import EmbeddingSpaceError, InputError, SchemaError


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    """200 unit rows sharing a common direction (like static vectors), two of them all-zero."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 16)) + 3.0 * rng.normal(size=16)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x[[5, 77]] = 0.0
    return x.astype(np.float32)


def test_apply_equals_numpy_mean_subtract_and_normalise(vectors: np.ndarray) -> None:
    """apply() = (x - mean of the non-zero rows) / norm, with all-zero rows left at zero."""
    c = fit_centering(vectors)
    nonzero = vectors.any(axis=1)
    mean = vectors[nonzero].astype(np.float64).mean(axis=0)
    expected = vectors - mean
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    expected[~nonzero] = 0.0
    got = c.apply(vectors)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert c.n == 198 and got.dtype == np.float32
    assert not got[[5, 77]].any()


def test_centering_removes_the_common_direction(vectors: np.ndarray) -> None:
    """Raw rows share a dominant direction (mean cosine high); centred rows have mean cosine near 0."""
    rows = vectors[vectors.any(axis=1)]
    raw_cos = (rows @ rows.T).mean()
    centred = fit_centering(vectors).apply(rows)
    assert raw_cos > 0.5
    assert abs((centred @ centred.T).mean()) < 0.02


def test_streaming_fit_equals_one_shot_fit(vectors: np.ndarray) -> None:
    """Batches (an iterable) and merged worker accumulators give the one-shot mean and n."""
    whole = fit_centering(vectors)
    batched = fit_centering(iter([vectors[:50], vectors[50:120], vectors[120:]]))
    a = CenteringAccumulator().add(vectors[:90])
    b = CenteringAccumulator().add(vectors[90:])
    merged = a.merge(b).result()
    for other in (batched, merged):
        np.testing.assert_allclose(other.mean, whole.mean, atol=1e-6)
        assert other.n == whole.n


def test_digest_names_the_statistics_and_metadata_round_trips(vectors: np.ndarray) -> None:
    """Equal statistics give equal digests, different ones differ; to_metadata/from_metadata round-trips."""
    c = fit_centering(vectors)
    assert c.digest == fit_centering(vectors.copy()).digest
    assert c.digest != fit_centering(vectors[:100]).digest
    back = Centering.from_metadata(c.to_metadata())
    assert back == c and back is not None and back.digest == c.digest
    assert Centering.from_metadata({}) is None


def test_centred_space_is_a_different_space(tmp_path: pytest.TempPathFactory, vectors: np.ndarray) -> None:
    """A centred space differs from its raw space, rides in the table metadata and is read back."""
    import pyarrow.parquet as pq

    raw = EmbeddingSpace("static", "v1", 16)
    c = fit_centering(vectors)
    centred = raw.centred(c)
    assert raw.centering == NO_CENTERING and centred.centering == c.digest
    with pytest.raises(EmbeddingSpaceError, match="mixes two embedding spaces"):
        check_same_space(raw, centred, what="scoring")
    table = embeddings_table([f"d{i}" for i in range(len(vectors))], c.apply(vectors), centred)
    path = tmp_path / "emb.parquet"  # type: ignore[operator]
    pq.write_table(table, path)
    assert read_space(path) == centred
    legacy = table.schema.with_metadata(
        {k: v for k, v in table.schema.metadata.items() if k != b"curate.centering"}
    )
    assert EmbeddingSpace.from_schema(legacy, where="old") == raw  # tables from before centering are raw


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: fit_centering(np.zeros((3, 4))), InputError, r"at least one non-zero vector"),
        (lambda: fit_centering(np.ones((2, 4))).apply(np.ones((2, 5))), InputError, r"must have width 4"),
        (lambda: fit_centering(np.array([[np.nan, 1.0]])), InputError, r"NaN or infinite"),
        (lambda: Centering(np.array([np.inf]), 1), InputError, r"must be finite"),
        (
            lambda: (
                CenteringAccumulator().add(np.ones((1, 3))).merge(CenteringAccumulator().add(np.ones((1, 4))))
            ),
            InputError,
            r"width 3; got 4",
        ),
        (
            lambda: Centering.from_metadata({"curate.centering": "abc", "curate.centering_n": "2"}),
            SchemaError,
            r"lacks a readable mean",
        ),
        (
            lambda: Centering.from_metadata(
                {**fit_centering(np.eye(3)).to_metadata(), "curate.centering_n": "9"}
            ),
            SchemaError,
            r"does not match",
        ),
        (
            lambda: EmbeddingSpace("static", "v", 4).centred(fit_centering(np.eye(3))),
            EmbeddingSpaceError,
            r"3-d centering cannot centre",
        ),
        (
            lambda: EmbeddingSpace("static", "v", 3, "abc").centred(fit_centering(np.eye(3))),
            EmbeddingSpaceError,
            r"already centred",
        ),
    ],
)
def test_bad_inputs_raise_named_errors(call: object, exc: type[Exception], match: str) -> None:
    """Bad vectors, widths and metadata raise errors that name the problem."""
    with pytest.raises(exc, match=match):
        call()  # type: ignore[operator]


def test_schema_metadata_carries_the_centering() -> None:
    """The embeddings schema of a centred space stores its digest under curate.centering."""
    space = EmbeddingSpace("minilm", "v", 8, "0123456789abcdef")
    meta = space.schema().metadata
    assert isinstance(space.schema(), pa.Schema)
    assert meta[b"curate.centering"] == b"0123456789abcdef"
    assert "centred 0123456789abcdef" in str(space)
