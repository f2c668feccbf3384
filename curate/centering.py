"""Corpus centering of an embedding space: subtract the corpus mean vector, then re-normalise.

Static (model2vec) vectors, and to a lesser degree MiniLM's, share one common direction (the
frequency-weighted mean of common tokens), so raw cosines are dominated by it. Subtracting the corpus mean
removes it (bench/signals.py: 1 - cos to the target mean separates planted junk better after centering, in
both tiers; whitening with the shrunk corpus covariance, tried in issue 14, was worse than centering alone
on every case). The mean is fitted from running sums,
so it can be accumulated batch by batch (or merged across workers) without holding the corpus. A centred
space is a different embedding space: its identity carries `Centering.digest`.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from curate._validation import check_embeddings
from curate.errors import InputError, SchemaError

NO_CENTERING = "none"
_META_DIGEST, _META_MEAN, _META_N = "curate.centering", "curate.centering_mean", "curate.centering_n"


@dataclass(frozen=True, eq=False)
class Centering:
    """The corpus mean of `n` non-zero unit vectors (float32); `digest` names it in an embedding space."""

    mean: np.ndarray
    n: int

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, dtype=np.float32).reshape(-1)
        if not np.isfinite(mean).all():
            raise InputError("Centering mean must be finite; got NaN or infinite values.")
        mean.setflags(write=False)
        object.__setattr__(self, "mean", mean)

    @property
    def dim(self) -> int:
        """Width of the vectors this centering applies to."""
        return int(self.mean.shape[0])

    @property
    def digest(self) -> str:
        """blake2b-128 (hex, first 16 chars) of the float32 little-endian mean bytes and n."""
        h = hashlib.blake2b(digest_size=16)
        h.update(self.mean.astype("<f4").tobytes())
        h.update(str(self.n).encode())
        return h.hexdigest()[:16]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Centering) and self.n == other.n and np.array_equal(self.mean, other.mean)

    def __hash__(self) -> int:
        return hash(self.digest)

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Rows minus the mean, re-normalised to unit length (float32); all-zero rows stay zero."""
        x = check_embeddings(vectors, what="Centering.apply vectors", dim=self.dim, min_rows=0)
        zero = ~x.any(axis=1)
        out = x - self.mean
        out[zero] = 0.0
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.where(norms > 0, norms, 1.0)).astype(np.float32, copy=False)

    def to_metadata(self) -> dict[str, str]:
        """Schema-metadata entries (digest, base64 float32 mean, n) that `from_metadata` reads back."""
        raw = self.mean.astype("<f4").tobytes()
        return {_META_DIGEST: self.digest, _META_MEAN: base64.b64encode(raw).decode(), _META_N: str(self.n)}

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str], *, where: str = "metadata") -> Centering | None:
        """The centering stored by `to_metadata` (None for a raw space); SchemaError if it is corrupt."""
        digest = meta.get(_META_DIGEST, NO_CENTERING)
        if digest == NO_CENTERING:
            return None
        try:
            mean = np.frombuffer(base64.b64decode(meta[_META_MEAN]), dtype="<f4")
            out = cls(mean.copy(), int(meta[_META_N]))
        except (KeyError, ValueError) as exc:
            raise SchemaError(
                f"{where} names centering {digest} but lacks a readable mean and n ({exc})."
            ) from exc
        if out.digest != digest:
            raise SchemaError(
                f"{where} centering digest {digest} does not match its stored mean ({out.digest})."
            )
        return out


@dataclass
class CenteringAccumulator:
    """Running sums for `fit_centering`: `add` batches (or `merge` another worker's sums), then `result()`."""

    dim: int | None = None
    total: np.ndarray | None = field(default=None, repr=False)
    n: int = 0

    def add(self, vectors: np.ndarray) -> CenteringAccumulator:
        """Add the non-zero rows of one batch; returns self."""
        x = check_embeddings(vectors, what="CenteringAccumulator.add vectors", dim=self.dim, min_rows=0)
        rows = x[x.any(axis=1)].astype(np.float64)
        if self.total is None:
            self.dim, self.total = x.shape[1], np.zeros(x.shape[1], dtype=np.float64)
        self.total += rows.sum(axis=0)
        self.n += len(rows)
        return self

    def merge(self, other: CenteringAccumulator) -> CenteringAccumulator:
        """Add another accumulator's sums (same width); returns self."""
        if other.total is None:
            return self
        if self.total is None:
            self.dim, self.total, self.n = other.dim, other.total.copy(), other.n
            return self
        if other.dim != self.dim:
            raise InputError(f"CenteringAccumulator.merge needs width {self.dim}; got {other.dim}.")
        self.total += other.total
        self.n += other.n
        return self

    def result(self) -> Centering:
        """The mean of every non-zero row added; InputError when there was none."""
        if self.total is None or self.n == 0:
            raise InputError("fit_centering needs at least one non-zero vector; got none.")
        return Centering((self.total / self.n).astype(np.float32), self.n)


def fit_centering(vectors: np.ndarray | Iterable[np.ndarray]) -> Centering:
    """The corpus mean of the non-zero rows of `vectors` (one matrix or an iterable of batches)."""
    acc = CenteringAccumulator()
    batches = [vectors] if isinstance(vectors, np.ndarray) else vectors
    for batch in batches:
        acc.add(batch)
    return acc.result()
