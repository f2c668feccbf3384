"""Label-aware debiased Sinkhorn divergence and its potentials, checked against independent POT runs."""

from __future__ import annotations

import itertools

import numpy as np
import ot
import polars as pl
import pytest
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from curate.errors import ConfigError, EmbeddingSpaceError, FitWarning, InputError
from scaling.ot import MixtureDistance, ot_potentials, sinkhorn_divergence

EPS = 0.01


@pytest.fixture(scope="module")
def wiki_vectors(wiki_docs: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """300 real Wikipedia summaries as L2-normalised 24-d TF-IDF/SVD vectors, and their topic labels."""
    tfidf = TfidfVectorizer(min_df=2).fit_transform(wiki_docs["text"].to_list())
    z = TruncatedSVD(24, random_state=0).fit_transform(tfidf)
    return z / np.linalg.norm(z, axis=1, keepdims=True), wiki_docs["label"].to_numpy()


def _entropic(cost: np.ndarray, a: np.ndarray, b: np.ndarray, eps: float) -> float:
    """OT_eps = <P, C> + eps KL(P | a b^T) with P from POT's log-domain Sinkhorn."""
    plan = ot.sinkhorn(a, b, cost, eps, method="sinkhorn_log", numItermax=50_000, stopThr=1e-10)
    return float((plan * cost).sum() + eps * (plan * np.log(plan / np.outer(a, b))).sum())


def _debiased(cxy: np.ndarray, cxx: np.ndarray, cyy: np.ndarray, eps: float) -> float:
    a, b = np.full(len(cxx), 1 / len(cxx)), np.full(len(cyy), 1 / len(cyy))
    return _entropic(cxy, a, b, eps) - 0.5 * _entropic(cxx, a, a, eps) - 0.5 * _entropic(cyy, b, b, eps)


def test_divergence_matches_pot_feature_cost(wiki_vectors: tuple[np.ndarray, np.ndarray]) -> None:
    """Without labels, S_eps equals the same debiased value computed with POT's own solver (1e-6 relative)."""
    z, _ = wiki_vectors
    x, y = z[:50], z[200:240]
    half = lambda u, v: 0.5 * ot.dist(u, v)  # noqa: E731
    scale = half(x, y).max()
    want = scale * _debiased(half(x, y) / scale, half(x, x) / scale, half(y, y) / scale, EPS)
    got = sinkhorn_divergence(x, y, backend="numpy", tol=1e-8, max_iter=50_000)
    assert got == pytest.approx(want, rel=1e-6)


def test_divergence_matches_pot_label_cost(wiki_vectors: tuple[np.ndarray, np.ndarray]) -> None:
    """With labels, the cost adds half the class-cloud table W (debiased, eps 0.1); S_eps matches POT."""
    z, labels = wiki_vectors
    keep = np.isin(labels, np.unique(labels)[:2])  # two topics keep the class table small
    x, lx, y, ly = z[keep][:40], labels[keep][:40], z[keep][-30:], labels[keep][-30:]
    clouds = [x[lx == c] for c in np.unique(lx)] + [y[ly == c] for c in np.unique(ly)]
    k = len(clouds)
    table = np.zeros((k, k))
    for i in range(k):
        for j in range(i + 1, k):
            table[i, j] = table[j, i] = max(
                0.0,
                _debiased(
                    0.5 * ot.dist(clouds[i], clouds[j]),
                    0.5 * ot.dist(clouds[i], clouds[i]),
                    0.5 * ot.dist(clouds[j], clouds[j]),
                    0.1,
                ),
            )
    ix = np.unique(lx, return_inverse=True)[1]
    iy = np.unique(ly, return_inverse=True)[1] + len(np.unique(lx))

    def cost(u: np.ndarray, cu: np.ndarray, v: np.ndarray, cv: np.ndarray) -> np.ndarray:
        return 0.5 * ot.dist(u, v) + 0.5 * table[cu][:, cv]

    scale = cost(x, ix, y, iy).max()
    want = scale * _debiased(
        cost(x, ix, y, iy) / scale, cost(x, ix, x, ix) / scale, cost(y, iy, y, iy) / scale, EPS
    )
    got = sinkhorn_divergence(x, y, labels_x=lx, labels_y=ly, backend="numpy", tol=1e-8, max_iter=50_000)
    assert got == pytest.approx(want, rel=1e-6)
    assert (
        got > sinkhorn_divergence(x, y, backend="numpy", tol=1e-8, max_iter=50_000) / 10
    )  # the label term is not ignored


def test_divergence_matches_pot_on_clusters_of_other_sizes() -> None:
    """Tight clusters whose masses differ between x and y (mass must cross clusters, the slow case for
    Sinkhorn that the solver's two-level step handles): S_eps matches POT within 1e-6."""
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(4, 8)) * 2
    x = centres[np.repeat(np.arange(4), [30, 25, 20, 15])] + rng.normal(size=(90, 8)) * 0.1
    y = centres[np.repeat(np.arange(4), [15, 20, 25, 20])] + rng.normal(size=(80, 8)) * 0.1
    half = lambda u, v: 0.5 * ot.dist(u, v)  # noqa: E731
    scale = half(x, y).max()
    want = scale * _debiased(half(x, y) / scale, half(x, x) / scale, half(y, y) / scale, EPS)
    got = sinkhorn_divergence(x, y, backend="numpy", tol=1e-9, max_iter=50_000)
    assert got == pytest.approx(want, rel=1e-6)
    assert sinkhorn_divergence(x, y) == pytest.approx(want, rel=5e-3)  # float32 defaults: issue 17's bar


def test_divergence_zero_for_identical_clouds_and_grows_with_shift(
    wiki_vectors: tuple[np.ndarray, np.ndarray],
) -> None:
    """S_eps(x, x) is ~0 and S_eps(x, x + t·u) increases with t."""
    z, _ = wiki_vectors
    x = z[:30]
    assert abs(sinkhorn_divergence(x, x, backend="numpy")) < 1e-7
    direction = np.eye(z.shape[1])[0]
    values = [sinkhorn_divergence(x, x + t * direction, backend="numpy") for t in (0.05, 0.2, 0.5, 1.0)]
    assert all(b > a for a, b in itertools.pairwise(values)), values
    np.testing.assert_allclose(values[0], 0.5 * 0.05**2, rtol=1e-3)  # a translation costs |t|²/2


def test_potential_gradient_matches_finite_difference(wiki_vectors: tuple[np.ndarray, np.ndarray]) -> None:
    """mean_{S_i} f − mean_rest f equals the central difference of S_eps along the matching simplex move."""
    z, labels = wiki_vectors
    pools = {"a": z[:20], "b": z[20:35], "c": z[35:60]}
    pool_labels = {"a": labels[:20], "b": labels[20:35], "c": labels[35:60]}
    dist = MixtureDistance(
        pools,
        z[200:230],
        pool_labels=pool_labels,
        target_labels=labels[200:230],
        backend="numpy",
        tol=1e-9,
        max_iter=50_000,
    )
    p = np.array([0.5, 0.3, 0.2])
    _, grad = dist.value_and_gradient(p)
    h = 1e-4
    for i in range(3):
        move = -p / (1 - p[i])
        move[i] = 1.0
        fd = (dist.value(p + h * move) - dist.value(p - h * move)) / (2 * h)
        assert grad[i] == pytest.approx(fd, rel=1e-4, abs=1e-7)


def test_potentials_cover_every_row_and_torch_backend_agrees(
    wiki_vectors: tuple[np.ndarray, np.ndarray],
) -> None:
    """ot_potentials returns one value per training row even when subsampled; torch gives the numpy value."""
    z, _ = wiki_vectors
    x, y = z[:120], z[200:260]
    f = ot_potentials(x, y, max_points=50, seed=3)
    assert f.shape == (120,) and np.isfinite(f).all()
    np.testing.assert_array_equal(f, ot_potentials(x, y, max_points=50, seed=3))
    float64 = sinkhorn_divergence(x, y, backend="numpy")
    assert sinkhorn_divergence(x, y, backend="torch") == pytest.approx(float64, rel=1e-3)


def test_potentials_match_pot(wiki_vectors: tuple[np.ndarray, np.ndarray]) -> None:
    """ot_potentials equals f_xy − f_xx from POT's log-domain duals, up to the additive constant."""
    z, _ = wiki_vectors
    x, y = z[:50], z[200:240]
    half = lambda u, v: 0.5 * ot.dist(u, v)  # noqa: E731
    scale = half(x, y).max()
    a, b = np.full(len(x), 1 / len(x)), np.full(len(y), 1 / len(y))

    def potential(cost: np.ndarray, wb: np.ndarray) -> np.ndarray:
        _, log = ot.sinkhorn(
            a, wb, cost / scale, EPS, method="sinkhorn_log", numItermax=50_000, stopThr=1e-12, log=True
        )
        return scale * EPS * (log["log_u"] - np.log(a))

    want = potential(half(x, y), b) - potential(half(x, x), a)
    got = ot_potentials(x, y, backend="numpy", tol=1e-11, max_iter=50_000)  # potentials lag the value's tol
    np.testing.assert_allclose(got - got.mean(), want - want.mean(), atol=1e-5 * scale)


def test_divergence_warns_when_max_iter_is_too_small(wiki_vectors: tuple[np.ndarray, np.ndarray]) -> None:
    """A solve stopped by max_iter before its tolerance warns FitWarning and says to raise max_iter."""
    z, _ = wiki_vectors
    with pytest.warns(FitWarning, match=r"stopped after max_iter=2 iterations .* raise max_iter"):
        sinkhorn_divergence(z[:50], z[200:240], backend="numpy", tol=1e-12, max_iter=2)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"y": np.ones((5, 7))}, EmbeddingSpaceError, r"width 24 but target embeddings have width 7"),
        ({"labels_x": np.zeros(10)}, InputError, r"labels_x is given but labels_y is None"),
        ({"labels_y": np.zeros(5)}, InputError, r"labels_y is given but labels_x is None"),
        (
            {"labels_x": np.zeros(3), "labels_y": np.zeros(5)},
            InputError,
            r"labels_x must be a 1-D array of 10",
        ),
        (
            {"reg": 0.0},
            ConfigError,
            r"'reg' parameter of sinkhorn_divergence\(\) must be a number in \(0, inf\)",
        ),
        ({"backend": "jax"}, ConfigError, r"'backend' .* must be one of 'numpy', 'torch'"),
        ({"x": np.full((10, 24), np.nan)}, InputError, r"contains NaN"),
        ({"weights_x": -np.ones(10)}, InputError, r"weights_x must be 10 finite non-negative"),
    ],
)
def test_divergence_rejects_bad_input(kwargs: dict, exc: type[Exception], match: str) -> None:
    """Bad inputs raise a CurateError naming the parameter, what was expected and what came."""
    rng = np.random.default_rng(0)
    args = {"x": rng.normal(size=(10, 24)), "y": rng.normal(size=(5, 24))} | kwargs
    with pytest.raises(exc, match=match):
        sinkhorn_divergence(args.pop("x"), args.pop("y"), **args)


def test_mixture_distance_rejects_bad_mixture(wiki_vectors: tuple[np.ndarray, np.ndarray]) -> None:
    """A mixture that does not sum to 1, or an empty pool, is an InputError naming the sources."""
    z, _ = wiki_vectors
    dist = MixtureDistance({"a": z[:20], "b": z[20:40]}, z[200:220])
    with pytest.raises(InputError, match=r"summing to 1 over a, b; got \[0.5, 0.6\]"):
        dist.value([0.5, 0.6])
    with pytest.raises(InputError, match=r"source pool\(s\) b have no rows"):
        MixtureDistance({"a": z[:20], "b": z[:0]}, z[200:220])
