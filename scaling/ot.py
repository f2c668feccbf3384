"""Label-aware optimal-transport distance between training data and a target (Kang et al. 2023; POT).

Ground cost between a training point (x, y) and a target point (x', y') (the dataset distance of
Alvarez-Melis & Fusi 2020 that Kang et al. 2023 sec. 3 use): c = ½‖φ(x) − φ(x')‖² + ½·W(y, y'), with W the
debiased entropic OT (ε = `label_reg`, feature cost) between class-conditional embedding clouds; without
labels, c is the feature term alone. C is divided by its maximum over the (training × target) pairs, so
ε is relative to the cost's range. Outer value: the debiased Sinkhorn divergence (Feydy et al. 2019, eq. 4)
S_ε(μ, ν) = OT_ε(μ, ν) − ½·OT_ε(μ, μ) − ½·OT_ε(ν, ν), OT_ε = min_P ⟨P, C⟩ + ε·KL(P ‖ μ⊗ν) = ⟨a, f⟩ + ⟨b, g⟩,
solved in the log domain with ε-scaling, reported in the unnormalised cost's units. Its gradient in the
training weights is the debiased potential f_μν − f_μμ (Feydy et al. 2019, prop. 2), given on every row.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import ot

from curate._validation import check_embeddings, check_interval, check_option
from curate.errors import EmbeddingSpaceError, FitWarning, InputError

Backend = Literal["numpy", "torch"]
CLASS_CAP = 200  # points per class cloud in the label table (fixed-seed subsample of larger classes)
_SCALING = 0.5  # ε-scaling: ε runs 1, 0.5, 0.25, ... down to the target (the normalised cost's max is 1)


def _softmin(nx: Any, h: Any, cost: Any, eps: float, axis: int) -> Any:
    """-ε·log Σ exp((h − C)/ε) over `axis` (h indexes that axis): the entropic c-transform."""
    z = (h[:, None] - cost) if axis == 0 else (h[None, :] - cost)
    return -eps * nx.logsumexp(z / eps, axis=axis)


def _schedule(eps: float) -> list[float]:
    steps = max(0, math.ceil(math.log(eps) / math.log(_SCALING)))
    return [max(eps, _SCALING**k) for k in range(steps + 1)]


def _not_converged(kind: str, eps: float, max_iter: int, err: float, tol: float) -> None:
    warnings.warn(
        f"{kind} Sinkhorn (eps={eps}) stopped after max_iter={max_iter} iterations with marginal error "
        f"{err:.3g} > tol={tol}; raise max_iter or tol.",
        FitWarning,
        stacklevel=4,
    )


def _solve(
    nx: Any,
    cost: Any,
    log_a: Any,
    log_b: Any,
    eps: float,
    *,
    tol: float,
    max_iter: int,
    g_init: Any | None = None,
) -> tuple[Any, Any, float]:
    """Log-domain Sinkhorn, ε-scaling or a warm start from `g_init`; (f, g) and OT_ε = ⟨a, f⟩ + ⟨b, g⟩."""
    a, b = nx.exp(log_a), nx.exp(log_b)
    if g_init is None:
        f = nx.zeros(log_a.shape, type_as=cost)
        for e in _schedule(eps):
            g = _softmin(nx, f + e * log_a, cost, e, axis=0)
            f = _softmin(nx, g + e * log_b, cost, e, axis=1)
    else:
        f = _softmin(nx, g_init + eps * log_b, cost, eps, axis=1)
    err = math.inf
    for _ in range(max_iter):
        g = _softmin(nx, f + eps * log_a, cost, eps, axis=0)
        f_new = _softmin(nx, g + eps * log_b, cost, eps, axis=1)
        err = float(nx.sum(a * nx.abs(nx.exp((f - f_new) / eps) - 1.0)))  # row-marginal error of (f, g)
        f = f_new
        if err < tol:
            break
    else:
        _not_converged("cross", eps, max_iter, err, tol)
    return f, g, float(nx.sum(a * f) + nx.sum(b * g))


def _solve_sym(nx: Any, cost: Any, log_a: Any, eps: float, *, tol: float, max_iter: int) -> tuple[Any, float]:
    """Symmetric log-domain Sinkhorn for OT_ε(μ, μ) (averaged updates, ε-scaling); potential f, 2⟨a, f⟩."""
    a = nx.exp(log_a)
    f = nx.zeros(log_a.shape, type_as=cost)
    for e in _schedule(eps):
        f = 0.5 * (f + _softmin(nx, f + e * log_a, cost, e, axis=0))
    err = math.inf
    for _ in range(max_iter):
        t = _softmin(nx, f + eps * log_a, cost, eps, axis=0)
        err = float(nx.sum(a * nx.abs(nx.exp((f - t) / eps) - 1.0)))
        f = 0.5 * (f + t)
        if err < tol:
            break
    else:
        _not_converged("symmetric", eps, max_iter, err, tol)
    return f, float(2.0 * nx.sum(a * f))


def _uniform_log(nx: Any, like: Any) -> Any:
    n = like.shape[0]
    return nx.log(nx.ones((n,), type_as=like) / n)


def _half_sqeuclidean(x: Any, y: Any) -> Any:
    return 0.5 * ot.dist(x, y, metric="sqeuclidean")


def label_table(nx: Any, clouds: Sequence[Any], *, reg: float, tol: float, max_iter: int) -> np.ndarray:
    """W(i, j): debiased entropic OT (feature cost, ε = reg) between class clouds; symmetric, 0 diagonal."""
    logs = [_uniform_log(nx, c) for c in clouds]
    selfs = [
        _solve_sym(nx, _half_sqeuclidean(c, c), lg, reg, tol=tol, max_iter=max_iter)[1]
        for c, lg in zip(clouds, logs, strict=True)
    ]
    table = np.zeros((len(clouds), len(clouds)))
    for i in range(len(clouds)):
        for j in range(i + 1, len(clouds)):
            cost = _half_sqeuclidean(clouds[i], clouds[j])
            value = _solve(nx, cost, logs[i], logs[j], reg, tol=tol, max_iter=max_iter)[2]
            table[i, j] = table[j, i] = max(0.0, value - 0.5 * selfs[i] - 0.5 * selfs[j])
    return table


@dataclass
class OTProblem:
    """Validated training rows x (all of them), target rows y and their costs; x_rows is the solved subsample.

    Built by `build_problem`; `divergence(weights)` gives S_ε for training weights and its gradient per row.
    """

    nx: Any
    x: Any
    y: Any
    x_classes: np.ndarray | None
    y_classes: np.ndarray | None
    table: Any | None
    x_rows: np.ndarray
    reg: float
    tol: float
    max_iter: int
    scale: float = 1.0
    _target_self: float | None = field(default=None, repr=False)
    _g: Any | None = field(default=None, repr=False)

    @property
    def all_rows(self) -> np.ndarray:
        """Indices of every training row."""
        return np.arange(self.x.shape[0])

    def _take(self, arr: Any, rows: np.ndarray) -> Any:
        if isinstance(arr, np.ndarray):
            return arr[rows]
        import torch

        return arr[torch.as_tensor(rows, device=arr.device)]

    def cost(self, rows_x: np.ndarray | None, rows_x2: np.ndarray | None = None) -> Any:
        """Normalised cost between x[rows_x] and y (rows_x2 None) or x[rows_x2]; rows None = all rows."""
        left = self.x if rows_x is None else self._take(self.x, rows_x)
        right = self.y if rows_x2 is None else self._take(self.x, rows_x2)
        c = _half_sqeuclidean(left, right)
        if self.table is not None and self.x_classes is not None and self.y_classes is not None:
            lc = self.x_classes if rows_x is None else self.x_classes[rows_x]
            rc = self.y_classes if rows_x2 is None else self.x_classes[rows_x2]
            c = c + 0.5 * self.table[self._index(lc)][:, self._index(rc)]
        return c / self.scale

    def _index(self, idx: np.ndarray) -> Any:
        if isinstance(self.y, np.ndarray):
            return idx
        import torch

        return torch.as_tensor(idx, device=self.y.device)

    def target_self(self) -> float:
        """OT_ε(ν, ν) in normalised units, solved once per problem."""
        if self._target_self is None:
            nx = self.nx
            c_yy = _half_sqeuclidean(self.y, self.y)
            if self.table is not None and self.y_classes is not None:
                c_yy = c_yy + 0.5 * self.table[self._index(self.y_classes)][:, self._index(self.y_classes)]
            log_b = _uniform_log(nx, self.y)
            self._target_self = _solve_sym(
                nx, c_yy / self.scale, log_b, self.reg, tol=self.tol, max_iter=self.max_iter
            )[1]
        return self._target_self

    def divergence(self, weights: np.ndarray) -> tuple[float, np.ndarray]:
        """S_ε(μ_w, ν) and its gradient in the weight of every x row (f_μν − f_μμ), both in cost units."""
        nx = self.nx
        w = weights[self.x_rows]
        if not (w > 0).any():
            raise InputError("training weights are zero on every solved row; give some rows positive weight.")
        rows = self.x_rows[w > 0]
        log_a = nx.from_numpy(np.log(w[w > 0] / w[w > 0].sum()), type_as=self.y)
        log_b = _uniform_log(nx, self.y)
        _, g, ot_xy = _solve(
            nx, self.cost(rows), log_a, log_b, self.reg, tol=self.tol, max_iter=self.max_iter, g_init=self._g
        )
        self._g = g  # the target-side potential warm-starts the next call (e.g. the next gradient step)
        f_xx, ot_xx = _solve_sym(
            nx, self.cost(rows, rows), log_a, self.reg, tol=self.tol, max_iter=self.max_iter
        )
        value = ot_xy - 0.5 * ot_xx - 0.5 * self.target_self()
        # extend both potentials to every x row (zero-weight and unsampled rows too) by the c-transform
        f_xy = _softmin(nx, g + self.reg * log_b, self.cost(None), self.reg, axis=1)
        f_self = _softmin(nx, f_xx + self.reg * log_a, self.cost(rows, self.all_rows), self.reg, axis=0)
        grad = np.asarray(nx.to_numpy(f_xy - f_self), dtype=np.float64)
        return value * self.scale, grad * self.scale


def _labels(labels: Any, n: int, *, what: str) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InputError(f"{what} must be a 1-D array of {n} labels (one per row); got shape {arr.shape}.")
    missing = np.isnan(arr).any() if arr.dtype.kind == "f" else any(v is None for v in arr.tolist())
    if missing:
        raise InputError(f"{what} has missing labels; drop those rows or pass no labels on either side.")
    return arr


def _subsample(n: int, cap: int | None, rng: np.random.Generator) -> np.ndarray:
    if cap is None or n <= cap:
        return np.arange(n)
    return np.sort(rng.choice(n, size=cap, replace=False))


def _class_clouds(
    x: np.ndarray, labels: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Class index per row (sorted label order) and each class's embedding cloud (at most CLASS_CAP rows)."""
    _, inverse = np.unique(labels, return_inverse=True)
    clouds = []
    for c in range(int(inverse.max()) + 1):
        rows = np.flatnonzero(inverse == c)
        clouds.append(x[rows[_subsample(len(rows), CLASS_CAP, rng)]])
    return inverse.astype(np.int64), clouds


def build_problem(
    x: np.ndarray,
    y: np.ndarray,
    *,
    labels_x: Any = None,
    labels_y: Any = None,
    reg: float = 0.01,
    label_reg: float = 0.1,
    max_points: int | None = None,
    backend: Backend = "numpy",
    tol: float = 1e-3,
    max_iter: int = 5000,
    seed: int = 0,
    caller: str = "build_problem",
) -> OTProblem:
    """Validate, subsample above `max_points` (fixed seed), build the label table and the cost scale."""
    check_interval("reg", reg, 0, None, caller=caller, closed="neither")
    check_interval("label_reg", label_reg, 0, None, caller=caller, closed="neither")
    check_interval("tol", tol, 0, None, caller=caller, closed="neither")
    check_interval("max_iter", max_iter, 1, None, caller=caller)
    check_option("backend", backend, ("numpy", "torch"), caller=caller)
    if max_points is not None:
        check_interval("max_points", max_points, 2, None, caller=caller)
    xs = check_embeddings(x, what=f"{caller} x (training embeddings)").astype(np.float64)
    ys = check_embeddings(y, what=f"{caller} y (target embeddings)").astype(np.float64)
    if xs.shape[1] != ys.shape[1]:
        raise EmbeddingSpaceError(
            f"{caller}: training embeddings have width {xs.shape[1]} but target embeddings have width "
            f"{ys.shape[1]}; embed both with the same embedder."
        )
    if (labels_x is None) != (labels_y is None):
        given, missing = ("labels_x", "labels_y") if labels_y is None else ("labels_y", "labels_x")
        raise InputError(
            f"{caller}: {given} is given but {missing} is None; the label-aware cost needs labels on both "
            "sides (pass neither for the feature-only cost)."
        )
    rng_x, rng_y, rng_c = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    x_rows = _subsample(len(xs), max_points, rng_x)
    y_rows = _subsample(len(ys), max_points, rng_y)
    x_classes = y_classes = None
    clouds: list[np.ndarray] = []
    if labels_x is not None:
        lab_x = _labels(labels_x, len(xs), what=f"{caller} labels_x")
        lab_y = _labels(labels_y, len(ys), what=f"{caller} labels_y")[y_rows]
    ys = ys[y_rows]
    if labels_x is not None:
        x_classes, clouds_x = _class_clouds(xs, lab_x, rng_c)
        y_classes, clouds_y = _class_clouds(ys, lab_y, rng_c)
        y_classes = y_classes + len(clouds_x)
        clouds = clouds_x + clouds_y
    to, nx = _backend(backend)
    table = None
    if clouds:
        table = to(label_table(nx, [to(c) for c in clouds], reg=label_reg, tol=tol, max_iter=max_iter))
    problem = OTProblem(
        nx=nx,
        x=to(xs),
        y=to(ys),
        x_classes=x_classes,
        y_classes=y_classes,
        table=table,
        x_rows=x_rows,
        reg=reg,
        tol=tol,
        max_iter=max_iter,
    )
    problem.scale = float(nx.max(problem.cost(x_rows)))
    if problem.scale <= 0:
        raise InputError(f"{caller}: every training row equals every target row; the cost is zero.")
    return problem


def _backend(backend: Backend) -> tuple[Any, Any]:
    """(array converter, POT backend): float64 numpy, or float32 torch (on CUDA when present)."""
    if backend == "numpy":
        return (lambda a: a), ot.backend.NumpyBackend()
    import torch

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    return (lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32), device=dev)), ot.backend.TorchBackend()


def _weights(weights: np.ndarray | None, n: int, *, caller: str) -> np.ndarray:
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or not np.isfinite(w).all() or (w < 0).any() or w.sum() <= 0:
        raise InputError(
            f"{caller}: weights_x must be {n} finite non-negative numbers with a positive sum; "
            f"got shape {w.shape} (min {w.min() if w.size else 'n/a'})."
        )
    return w / w.sum()


def sinkhorn_divergence(
    x: np.ndarray,
    y: np.ndarray,
    *,
    labels_x: Any = None,
    labels_y: Any = None,
    weights_x: np.ndarray | None = None,
    reg: float = 0.01,
    label_reg: float = 0.1,
    max_points: int | None = None,
    backend: Backend = "numpy",
    tol: float = 1e-3,
    max_iter: int = 5000,
    seed: int = 0,
) -> float:
    """Debiased Sinkhorn divergence S_ε(μ, ν) of training rows `x` and target rows `y` (cost units, >= 0).

    Label-aware cost when both label arrays are given (Alvarez-Melis & Fusi 2020); Feydy et al. 2019, eq. 4.
    """
    problem = build_problem(
        x,
        y,
        labels_x=labels_x,
        labels_y=labels_y,
        reg=reg,
        label_reg=label_reg,
        max_points=max_points,
        backend=backend,
        tol=tol,
        max_iter=max_iter,
        seed=seed,
        caller="sinkhorn_divergence",
    )
    return problem.divergence(_weights(weights_x, len(problem.all_rows), caller="sinkhorn_divergence"))[0]


def ot_potentials(
    x: np.ndarray,
    y: np.ndarray,
    *,
    labels_x: Any = None,
    labels_y: Any = None,
    weights_x: np.ndarray | None = None,
    reg: float = 0.01,
    label_reg: float = 0.1,
    max_points: int | None = None,
    backend: Backend = "numpy",
    tol: float = 1e-3,
    max_iter: int = 5000,
    seed: int = 0,
) -> np.ndarray:
    """Per training row, the gradient of S_ε in that row's weight: f_μν − f_μμ (Feydy et al. 2019, prop. 2).

    Defined up to an additive constant; rows left out by `max_points` get the c-transform extension.
    """
    problem = build_problem(
        x,
        y,
        labels_x=labels_x,
        labels_y=labels_y,
        reg=reg,
        label_reg=label_reg,
        max_points=max_points,
        backend=backend,
        tol=tol,
        max_iter=max_iter,
        seed=seed,
        caller="ot_potentials",
    )
    return problem.divergence(_weights(weights_x, len(problem.all_rows), caller="ot_potentials"))[1]


class MixtureDistance:
    """S_ε between a mixture Σ_i p_i·Uniform(S_i) of source pools and the target, with its gradient in p.

    Above `max_points`, each source keeps an equal share of rows (fixed seed) and the target is subsampled.
    """

    def __init__(
        self,
        pools: dict[str, np.ndarray],
        target: np.ndarray,
        *,
        pool_labels: dict[str, Any] | None = None,
        target_labels: Any = None,
        reg: float = 0.01,
        label_reg: float = 0.1,
        max_points: int | None = None,
        backend: Backend = "numpy",
        tol: float = 1e-3,
        max_iter: int = 5000,
        seed: int = 0,
    ) -> None:
        if not pools:
            raise InputError("MixtureDistance needs at least one source pool; got none.")
        self.sources = tuple(pools)
        sizes = [len(np.asarray(pools[s])) for s in self.sources]
        empty = [s for s, n in zip(self.sources, sizes, strict=True) if n == 0]
        if empty:
            raise InputError(f"MixtureDistance: source pool(s) {', '.join(empty)} have no rows.")
        # an equal share of max_points per source (fixed seed), so every source stays a uniform cloud
        cap = None if max_points is None else max(1, max_points // len(self.sources))
        rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(sizes))]
        self.rows = [_subsample(n, cap, rng) for n, rng in zip(sizes, rngs, strict=True)]
        self.member = np.repeat(np.arange(len(self.sources)), [len(r) for r in self.rows])
        x = np.concatenate([np.asarray(pools[s])[r] for s, r in zip(self.sources, self.rows, strict=True)])
        labels = None
        if pool_labels is not None:
            labels = np.concatenate(
                [np.asarray(pool_labels[s])[r] for s, r in zip(self.sources, self.rows, strict=True)]
            )
        self.problem = build_problem(
            x,
            target,
            labels_x=labels,
            labels_y=target_labels,
            reg=reg,
            label_reg=label_reg,
            max_points=max_points,
            backend=backend,
            tol=tol,
            max_iter=max_iter,
            seed=seed,
            caller="MixtureDistance",
        )

    def _row_weights(self, p: Sequence[float] | np.ndarray) -> np.ndarray:
        pv = np.asarray(p, dtype=np.float64)
        if pv.shape != (len(self.sources),) or (pv < 0).any() or abs(pv.sum() - 1.0) > 1e-6:
            raise InputError(
                f"mixture p must be {len(self.sources)} non-negative weights summing to 1 over "
                f"{', '.join(self.sources)}; got {pv.tolist()}."
            )
        counts = np.bincount(self.member, minlength=len(self.sources))
        return pv[self.member] / counts[self.member]

    def value(self, p: Sequence[float] | np.ndarray) -> float:
        """S_ε(μ_p, ν) in cost units."""
        return self.problem.divergence(self._row_weights(p))[0]

    def value_and_gradient(self, p: Sequence[float] | np.ndarray) -> tuple[float, np.ndarray]:
        """S_ε(μ_p, ν) and, per source i, mean_{S_i} f − mean_rest f (rest = other sources weighted by p).

        That is the derivative along the simplex move of mass from the rest of the mixture, pro rata, to i.
        """
        pv = np.asarray(p, dtype=np.float64)
        value, f = self.problem.divergence(self._row_weights(pv))
        k = len(self.sources)
        means = np.bincount(self.member, weights=f, minlength=k) / np.bincount(self.member, minlength=k)
        grad = np.empty(k)
        for i in range(k):
            rest = np.delete(pv, i)
            total = rest.sum()
            rest_mean = (
                float(np.delete(means, i) @ rest / total) if total > 0 else float(np.delete(means, i).mean())
            )
            grad[i] = means[i] - rest_mean
        return value, grad
