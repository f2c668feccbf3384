"""Entropic OT solver behind the debiased Sinkhorn divergence (Feydy et al. 2019, eq. 4), on torch tensors.

Method: Sinkhorn scaling on a stabilised kernel K = exp((f ⊕ g − C)/ε), rebuilt from the log-domain potentials
at each ε and whenever the scalings drift (Schmitzer 2019, sec. 3.2 "absorption"); ε anneals 1, 1/2, 1/4, ...
to the target with one iteration per level (Feydy 2020, thesis sec. 3.3.3), then iterates at the target until
the Aitken estimate of the value's remaining error is below tolerance. Self terms OT_ε(μ, μ) use the averaged
symmetric update. `debiased` refines the three terms until each is within its share of rtol·|S_ε|.

Why an own solver and not geomloss or POT (bench/results/ot_divergence.md, same clouds, 2 threads): an
iteration here is two matrix-vector products (BLAS, no exp), while geomloss "tensorized" and POT's log-domain
Sinkhorn evaluate exp on every n×m entry in every iteration, and torch's CPU exp is ~20x slower on arguments
below −87 (denormal or zero results), which most entries are at ε = 0.01; the kernel build here clamps at
±CLAMP first. geomloss's fixed ε schedule has no stopping rule (equal accuracy can need a finer `scaling`),
and POT's log-domain Sinkhorn does not anneal ε.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import minimize

from curate.errors import FitWarning

Tensor = torch.Tensor
CostRows = Callable[[slice], Tensor]  # normalised cost rows [start:stop] against every column
ANNEAL = 0.5  # ε-scaling ratio between levels
CLAMP = 80.0  # exponents are clipped to ±CLAMP: finite in float32, and torch's CPU exp stays on its fast path
ABSORB = 30.0  # rebuild the kernel once a log-scaling exceeds this (the stabilisation threshold τ)
CHUNK = 1 << 23  # entries per row block of the kernel build and of softmin on CPU (32 MiB in float32)
COARSE_EVERY = 10  # iterations at the target ε between two block-offset corrections


def _blocks(n_rows: int, n_cols: int, device: torch.device) -> list[slice]:
    rows = n_rows if device.type == "cuda" else max(1, CHUNK // max(n_cols, 1))
    return [slice(s, min(s + rows, n_rows)) for s in range(0, n_rows, rows)]


def softmin(cost: CostRows, n_rows: int, h: Tensor, eps: float) -> Tensor:
    """Entropic c-transform −ε·log Σ_j exp((h_j − C_ij)/ε) for every row i, built in row blocks."""
    out = torch.empty(n_rows, dtype=h.dtype, device=h.device)
    for rows in _blocks(n_rows, h.shape[0], h.device):
        z = torch.add(h / eps, cost(rows), alpha=-1.0 / eps)
        top = z.amax(dim=1, keepdim=True)
        z.sub_(top).clamp_(min=-CLAMP).exp_()
        out[rows] = -eps * (top[:, 0] + z.sum(dim=1).log())
    return out


def _kernel(cost: Tensor, f: Tensor, g: Tensor, eps: float, out: Tensor) -> None:
    """out = exp((f_i + g_j − C_ij)/ε), exponents clipped to ±CLAMP, in row blocks (no n×m temporaries)."""
    for rows in _blocks(cost.shape[0], cost.shape[1], cost.device):
        block = out[rows]
        torch.add(g / eps, cost[rows], alpha=-1.0 / eps, out=block)
        block.add_(f[rows, None] / eps).clamp_(-CLAMP, CLAMP).exp_()


def _schedule(top: float, eps: float) -> list[float]:
    """ε levels from the cost's maximum down to `eps` by ANNEAL, `eps` last."""
    steps = max(0, math.ceil(math.log(eps / top) / math.log(ANNEAL))) if top > eps else 0
    return [top * ANNEAL**k for k in range(steps)] + [eps]


def _balance(mass: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Log-scalings (s, t), t[-1] = 0, giving diag(e^s)·M·diag(e^t) the marginals (rows, cols) (Newton on the
    dual), and the dual gain Σ M − Σ M·e^(s ⊕ t) + ⟨rows, s⟩ + ⟨cols, t⟩ >= 0 in units of ε."""
    log_m = np.log(np.maximum(mass, 1e-300))
    k = len(rows)

    def split(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        s, t = z[:k], np.append(z[k:], 0.0)
        return s, t, np.exp(log_m + s[:, None] + t[None, :])

    def objective(z: np.ndarray) -> tuple[float, np.ndarray]:
        s, t, e = split(z)
        grad = np.concatenate([e.sum(axis=1) - rows, (e.sum(axis=0) - cols)[:-1]])
        return float(e.sum() - rows @ s - cols @ t), grad

    def hessian(z: np.ndarray) -> np.ndarray:
        e = split(z)[2]
        return np.block([[np.diag(e.sum(axis=1)), e[:, :-1]], [e[:, :-1].T, np.diag(e.sum(axis=0)[:-1])]])

    z0 = np.zeros(k + len(cols) - 1)
    fit = minimize(objective, z0, jac=True, hess=hessian, method="trust-exact", options={"gtol": 1e-12})
    s, t, _ = split(fit.x)
    return s, t, float(mass.sum()) - float(fit.fun)


@dataclass
class Transport:
    """OT_ε between weights a (rows) and b (columns; None: the self term, b = a) on `cost`; `solve` resumes.

    After `solve`: potentials f, g (every row, weight 0 too), value ⟨a, f⟩ + ⟨b, g⟩ and its estimated error.
    """

    cost: Tensor
    a: Tensor
    b: Tensor | None
    eps: float
    groups: tuple[Tensor, Tensor] | None = None
    f: Tensor = field(init=False)
    g: Tensor = field(init=False)
    annealed: bool = field(default=False, init=False)
    value: float = field(default=math.nan, init=False)
    error: float = field(default=math.inf, init=False)
    iterations: int = field(default=0, init=False)  # at the target ε
    _history: list[float] = field(default_factory=list, init=False, repr=False)
    _floor: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        self.f, self.g = self._zeros()
        if self.b is None:
            self.g = self.f

    def solve(self, *, atol: float = 0.0, rtol: float = 0.0, max_iter: int = 5000) -> None:
        """Anneal ε on the first call, then iterate at ε until `error` <= max(atol, rtol·|value|)."""
        if self.annealed and (self.error <= self._tolerance(atol, rtol) or self.iterations >= max_iter):
            return
        kernel = torch.empty_like(self.cost)
        if not self.annealed:
            # the self term converges from cold at the target ε (4-5 iterations on every cloud in the bench)
            levels = [] if self.b is None else _schedule(float(self.cost.max()), self.eps)[:-1]
            for eps in levels:
                _kernel(self.cost, self.f, self.g, eps, kernel)
                self._absorb(eps, *self._scale(kernel, self._zeros()))
            self.annealed = True
            self._floor = self._rounding()
        lu, lv = self._zeros()
        built = False

        def rebase(lu: Tensor, lv: Tensor) -> tuple[Tensor, Tensor]:
            """Fold large log-scalings into the potentials and rebuild the kernel around them."""
            nonlocal built
            if built and max(float(lu.abs().max()), float(lv.abs().max())) <= ABSORB:
                return lu, lv
            self._absorb(self.eps, lu, lv)
            _kernel(self.cost, self.f, self.g, self.eps, kernel)
            built = True
            return self._zeros()

        while self.error > self._tolerance(atol, rtol) and self.iterations < max_iter:
            lu, lv = rebase(lu, lv)
            if self.groups is not None and self.iterations % COARSE_EVERY == 0:
                shifted, gain = self._coarse(kernel, lu, lv, *self.groups)
                if gain > self._tolerance(atol, rtol):  # worth a jump: restart the rate estimate after it
                    lu, lv = rebase(*shifted)
                    self._history.clear()
            lu, lv = self._scale(kernel, (lu, lv))
            self.iterations += 1
            self.value = self._value(self.f + self.eps * lu, self.g + self.eps * lv)
            self._history.append(self.value)
            self.error = self._estimate()
        self._absorb(self.eps, lu, lv)
        if self.error > self._tolerance(atol, rtol):
            warnings.warn(
                f"Sinkhorn (eps={self.eps}) stopped after max_iter={max_iter} iterations with an estimated "
                f"value error of {self.error:.3g} > {self._tolerance(atol, rtol):.3g}; raise max_iter.",
                FitWarning,
                stacklevel=3,
            )

    def _tolerance(self, atol: float, rtol: float) -> float:
        return max(atol, rtol * abs(self.value) if self._history else 0.0, self._floor)

    def _rounding(self) -> float:
        """Value changes below this are rounding: 64 ulps of the potentials' size plus ε·ABSORB."""
        b = self.a if self.b is None else self.b
        size = float(self.a.double() @ self.f.abs().double() + b.double() @ self.g.abs().double())
        return 64 * torch.finfo(self.cost.dtype).eps * (size + self.eps * ABSORB)

    def _coarse(
        self, kernel: Tensor, lu: Tensor, lv: Tensor, rows: Tensor, cols: Tensor
    ) -> tuple[tuple[Tensor, Tensor], float]:
        """Exact dual ascent over one offset per row group and per column group, and its value gain.

        At small ε Sinkhorn moves mass between weakly linked clusters slowly; the k×k balance does it at once.
        """
        b = self.a if self.b is None else self.b
        k = int(max(int(rows.max()), int(cols.max()))) + 1
        one_rows = torch.nn.functional.one_hot(rows, k).to(kernel.dtype)
        one_cols = torch.nn.functional.one_hot(cols, k).to(kernel.dtype)
        mass = (one_rows * (self.a * lu.exp())[:, None]).T @ (kernel @ (one_cols * (b * lv.exp())[:, None]))
        row_mass = (self.a @ one_rows).double().cpu().numpy()
        col_mass = (b @ one_cols).double().cpu().numpy()
        keep_r, keep_c = row_mass > 0, col_mass > 0
        s, t = np.zeros(k), np.zeros(k)
        s[keep_r], t[keep_c], gain = _balance(
            mass.double().cpu().numpy()[np.ix_(keep_r, keep_c)], row_mass[keep_r], col_mass[keep_c]
        )
        shift_u = torch.as_tensor(s, dtype=lu.dtype, device=lu.device)[rows]
        shift_v = torch.as_tensor(t, dtype=lv.dtype, device=lv.device)[cols]
        return (lu + shift_u, lv + shift_v), self.eps * gain

    def _zeros(self) -> tuple[Tensor, Tensor]:
        return torch.zeros_like(self.a), torch.zeros_like(self.a if self.b is None else self.b)

    def _scale(self, kernel: Tensor, scalings: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """One Sinkhorn iteration on the log-scalings (lu, lv) of the kernel's potentials."""
        lu, lv = scalings
        if self.b is None:  # symmetric: the average of the iterate and its update (no 2-cycle)
            lu = 0.5 * (lu - torch.log(kernel @ (self.a * lu.exp())))
            return lu, lu
        lv = -torch.log(kernel.T @ (self.a * lu.exp()))
        return -torch.log(kernel @ (self.b * lv.exp())), lv

    def _absorb(self, eps: float, lu: Tensor, lv: Tensor) -> None:
        """Fold the log-scalings into the potentials."""
        self.f = self.f + eps * lu
        self.g = self.f if self.b is None else self.g + eps * lv

    def _value(self, f: Tensor, g: Tensor) -> float:
        b = self.a if self.b is None else self.b
        return float(self.a @ f) + float(b @ g)

    def _estimate(self) -> float:
        """Remaining error of the last value: the tail d·ρ/(1 − ρ) of a geometric sequence of changes d."""
        h = self._history
        if len(h) < 4:
            return math.inf
        d = [abs(h[-k] - h[-k - 1]) for k in (3, 2, 1)]
        if d[-1] <= self._floor:
            return d[-1]
        if d[0] == 0 or d[1] == 0:
            return math.inf
        rho = max(d[1] / d[0], d[2] / d[1])
        return d[-1] * rho / (1 - rho) if rho < 1 else math.inf


def debiased(xy: Transport, xx: Transport, yy: Transport, *, rtol: float, max_iter: int) -> float:
    """S_ε = OT(x, y) − ½OT(x, x) − ½OT(y, y), each term refined until within its third of rtol·|S_ε|."""
    terms = ((xy, 1.0), (xx, 0.5), (yy, 0.5))
    for term, _ in terms:
        term.solve(rtol=rtol / 3, max_iter=max_iter)
    for _ in range(3):  # S_ε moves by less than the refined errors, so this settles in one or two rounds
        share = rtol * abs(xy.value - 0.5 * xx.value - 0.5 * yy.value) / 3
        behind = [(term, w) for term, w in terms if w * term.error > share]
        if not behind:
            break
        for term, w in behind:
            term.solve(atol=share / w, max_iter=max_iter)
    return xy.value - 0.5 * xx.value - 0.5 * yy.value
