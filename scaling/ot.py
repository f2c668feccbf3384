"""Label-aware optimal-transport distance between training data and a target (Kang et al. 2023; POT).

Ground cost between a training point (x, y) and a target point (x', y') (the dataset distance of
Alvarez-Melis & Fusi 2020 that Kang et al. 2023 sec. 3 use): c = ½‖φ(x) − φ(x')‖² + ½·W(y, y'), with W the
debiased entropic OT (ε = `label_reg`, feature cost) between class-conditional embedding clouds; without
labels, c is the feature term alone. C is divided by its maximum over the (training × target) pairs, so
ε is relative to the cost's range. Outer value: the debiased Sinkhorn divergence (Feydy et al. 2019, eq. 4)
S_ε(μ, ν) = OT_ε(μ, ν) − ½·OT_ε(μ, μ) − ½·OT_ε(ν, ν), OT_ε = min_P ⟨P, C⟩ + ε·KL(P ‖ μ⊗ν) = ⟨a, f⟩ + ⟨b, g⟩,
solved by `scaling.sinkhorn`, reported in the unnormalised cost's units. Its gradient in the training
weights is the debiased potential f_μν − f_μμ (Feydy et al. 2019, prop. 2), given on every row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import faiss
import numpy as np
import torch

from curate._validation import check_embeddings, check_interval, check_option
from curate.errors import EmbeddingSpaceError, InputError
from scaling.sinkhorn import Transport, debiased, softmin

Backend = Literal["numpy", "torch"]  # both solve in torch: "numpy" in float64 on CPU, "torch" in float32
CLASS_CAP = 200  # points per class cloud in the label table (fixed-seed subsample of larger classes)
GROUPS = 64  # k-means cells of x ∪ y for the solver's block-offset step (at least 40 points per cell)


def _placement(backend: Backend) -> tuple[torch.device, torch.dtype]:
    """Solver placement: "numpy" is float64 on CPU (reference precision), "torch" float32 (CUDA if any)."""
    if backend == "numpy":
        return torch.device("cpu"), torch.float64
    return torch.device("cuda" if torch.cuda.is_available() else "cpu"), torch.float32


def half_sqeuclidean(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """½‖x_i − y_j‖² for every pair, by one matrix product (clipped at 0 against rounding)."""
    c = x @ y.T
    c.mul_(-1.0).add_(0.5 * (x * x).sum(dim=1)[:, None]).add_(0.5 * (y * y).sum(dim=1)[None, :])
    return c.clamp_(min=0.0)


def _uniform(n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.full((n,), 1.0 / n, dtype=like.dtype, device=like.device)


def kmeans_cells(
    x: np.ndarray, y: np.ndarray, *, seed: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """k-means cell (faiss, fixed seed) of every x and y row for the solver's two-level step; None if tiny."""
    z = np.ascontiguousarray(np.concatenate([x, y]), dtype=np.float32)
    k = min(GROUPS, len(z) // 40)
    if k < 2:
        return None
    km = faiss.Kmeans(z.shape[1], k, niter=10, seed=seed, verbose=False)
    km.train(z)
    cells = torch.as_tensor(km.index.search(z, 1)[1][:, 0], device=device)
    return cells[: len(x)], cells[len(x) :]


def label_table(clouds: Sequence[torch.Tensor], *, reg: float, tol: float, max_iter: int) -> np.ndarray:
    """W(i, j): debiased entropic OT (feature cost, ε = reg) between class clouds; symmetric, 0 diagonal."""
    selfs = [Transport(half_sqeuclidean(c, c), _uniform(len(c), c), None, reg) for c in clouds]
    table = np.zeros((len(clouds), len(clouds)))
    for i in range(len(clouds)):
        for j in range(i + 1, len(clouds)):
            cross = Transport(half_sqeuclidean(clouds[i], clouds[j]), selfs[i].a, selfs[j].a, reg)
            value = debiased(cross, selfs[i], selfs[j], rtol=tol, max_iter=max_iter)
            table[i, j] = table[j, i] = max(0.0, value)
    return table


@dataclass
class OTProblem:
    """Training rows x (all), target rows y and their normalised costs (built once); x_rows: the solved rows.

    Built by `build_problem`; `divergence(weights)` is S_ε, `divergence_and_gradient` adds its gradient.
    """

    x: torch.Tensor
    y: torch.Tensor
    x_classes: np.ndarray | None
    y_classes: np.ndarray | None
    table: torch.Tensor | None
    x_rows: np.ndarray
    groups: tuple[torch.Tensor, torch.Tensor] | None
    reg: float
    tol: float
    max_iter: int
    scale: float = field(default=1.0, init=False)  # the largest training-target cost
    _costs: dict[str, torch.Tensor] = field(default_factory=dict, init=False, repr=False)
    _target: Transport | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        c_xy = self.cost(self.x_rows)  # scale is still 1 here
        self.scale = float(c_xy.max())
        if self.scale > 0:
            self._costs["xy"] = c_xy.div_(self.scale)

    @property
    def all_rows(self) -> np.ndarray:
        """Indices of every training row."""
        return np.arange(self.x.shape[0])

    def cost(self, rows_x: np.ndarray | None, rows_x2: np.ndarray | None = None) -> torch.Tensor:
        """Normalised cost between x[rows_x] and y (rows_x2 None) or x[rows_x2]; rows None = all rows."""
        left = self.x if rows_x is None else self.x[torch.as_tensor(rows_x, device=self.x.device)]
        right = self.y if rows_x2 is None else self.x[torch.as_tensor(rows_x2, device=self.x.device)]
        c = half_sqeuclidean(left, right)
        if self.table is not None and self.x_classes is not None and self.y_classes is not None:
            lc = self.x_classes if rows_x is None else self.x_classes[rows_x]
            rc = self.y_classes if rows_x2 is None else self.x_classes[rows_x2]
            c.add_(0.5 * self.table[self._index(lc)][:, self._index(rc)])
        return c.div_(self.scale)

    def _index(self, idx: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(idx, device=self.x.device)

    def _cached(self, key: str) -> torch.Tensor:
        if key not in self._costs:
            self._costs[key] = self.cost(self.x_rows, None if key == "xy" else self.x_rows)
        return self._costs[key]

    def _target_term(self) -> Transport:
        """The target's self term OT_ε(ν, ν), solved once per problem (refined if a divergence needs it)."""
        if self._target is None:
            c_yy = half_sqeuclidean(self.y, self.y)
            if self.table is not None and self.y_classes is not None:
                c_yy.add_(0.5 * self.table[self._index(self.y_classes)][:, self._index(self.y_classes)])
            self._target = Transport(c_yy.div_(self.scale), _uniform(len(self.y), self.y), None, self.reg)
            self._target.solve(rtol=self.tol / 3, max_iter=self.max_iter)
        return self._target

    def target_self(self) -> float:
        """OT_ε(ν, ν) in normalised units."""
        return self._target_term().value

    def _solve(self, weights: np.ndarray) -> tuple[float, Transport, Transport]:
        w = weights[self.x_rows]
        if not (w > 0).any():
            raise InputError("training weights are zero on every solved row; give some rows positive weight.")
        a = torch.as_tensor(w / w.sum(), dtype=self.x.dtype, device=self.x.device)
        xy = Transport(self._cached("xy"), a, _uniform(len(self.y), self.y), self.reg, self.groups)
        xx = Transport(self._cached("xx"), a, None, self.reg)
        value = debiased(xy, xx, self._target_term(), rtol=self.tol, max_iter=self.max_iter)
        return value * self.scale, xy, xx

    def divergence(self, weights: np.ndarray) -> float:
        """S_ε(μ_w, ν) in cost units for training weights on every x row (zero weights allowed)."""
        return self._solve(weights)[0]

    def divergence_and_gradient(self, weights: np.ndarray) -> tuple[float, np.ndarray]:
        """S_ε(μ_w, ν) and its gradient in the weight of every x row (f_μν − f_μμ), both in cost units."""
        value, xy, xx = self._solve(weights)
        if len(self.x_rows) == len(self.all_rows):
            grad = xy.f - xx.f
        else:  # extend both potentials to the unsolved rows by the c-transform
            eps, n, rows = self.reg, len(self.all_rows), self.x_rows
            h_xy = xy.g + eps * _uniform(len(self.y), self.y).log()
            f_xy = softmin(lambda r: self.cost(self.all_rows[r]), n, h_xy, eps)
            f_xx = softmin(lambda r: self.cost(self.all_rows[r], rows), n, xx.f + eps * xx.a.log(), eps)
            grad = f_xy - f_xx
        return value, grad.double().cpu().numpy() * self.scale


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
    backend: Backend = "torch",
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
    device, dtype = _placement(backend)

    def to(a: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(a, dtype=dtype, device=device)

    table = None
    if clouds:
        table = to(label_table([to(c) for c in clouds], reg=label_reg, tol=tol, max_iter=max_iter))
    problem = OTProblem(
        x=to(xs),
        y=to(ys),
        x_classes=x_classes,
        y_classes=y_classes,
        table=table,
        x_rows=x_rows,
        groups=kmeans_cells(xs[x_rows], ys, seed=seed, device=device),
        reg=reg,
        tol=tol,
        max_iter=max_iter,
    )
    if problem.scale <= 0:
        raise InputError(f"{caller}: every training row equals every target row; the cost is zero.")
    return problem


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
    backend: Backend = "torch",
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
    return problem.divergence(_weights(weights_x, len(problem.all_rows), caller="sinkhorn_divergence"))


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
    backend: Backend = "torch",
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
    weights = _weights(weights_x, len(problem.all_rows), caller="ot_potentials")
    return problem.divergence_and_gradient(weights)[1]


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
        backend: Backend = "torch",
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
        return self.problem.divergence(self._row_weights(p))

    def value_and_gradient(self, p: Sequence[float] | np.ndarray) -> tuple[float, np.ndarray]:
        """S_ε(μ_p, ν) and, per source i, mean_{S_i} f − mean_rest f (rest = other sources weighted by p).

        That is the derivative along the simplex move of mass from the rest of the mixture, pro rata, to i.
        """
        pv = np.asarray(p, dtype=np.float64)
        value, f = self.problem.divergence_and_gradient(self._row_weights(pv))
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
