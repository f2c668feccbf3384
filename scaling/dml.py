"""The Data Mixing Law (Ye et al. 2024): L(p) = c + Σ_k k_k·exp(Σ_j t_kj p_j) over mixtures p, fitted by
bounded least squares from several starts; `scaling.mixture` offers it as the laws 'dml', 'dml2', 'dml3'."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import least_squares

T_MAX = 20.0  # bound on every DML exponent slope |t_j|


def dml_terms(q: np.ndarray, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Σ_k k_k·e_k, e, k) for θ = [c, k or log k, t_1, ...] over rows q = p[:, :-1]: one term has a signed
    amplitude k, several terms each a positive one exp(log k) (decreasing losses do not cancel)."""
    term = theta[1:].reshape(-1, q.shape[1] + 1)
    e = np.exp(np.clip(q @ term[:, 1:].T, -50, 50))
    k = term[:, 0] if len(term) == 1 else np.exp(np.clip(term[:, 0], -50, 50))
    return e @ k, e, k


def fit_dml_column(
    q: np.ndarray,
    y: np.ndarray,
    terms: int,
    start: np.ndarray | None = None,
    memo: dict[int, np.ndarray] | None = None,
) -> np.ndarray:
    """θ = [c, (k, t) per term] of y ≈ c + Σ k·exp(t·q) by least squares. One term starts from log-linear
    fits at several floors c (log(±(y − c)) ~ t·q); K terms from the fit with K − 1 plus a new small term
    and from random draws (seeded); or from `start` alone. `memo` keeps the fits by number of terms."""
    if start is None and memo is not None and terms in memo:
        return memo[terms]
    spread = float(np.ptp(y)) or 1.0

    def resid(theta: np.ndarray) -> np.ndarray:
        return theta[0] + dml_terms(q, theta)[0] - y

    def jac(theta: np.ndarray) -> np.ndarray:
        t = theta[1:].reshape(-1, q.shape[1] + 1)[:, 1:]
        _, e, k = dml_terms(q, theta)
        d_amp = e if terms == 1 else e * k  # ∂/∂k, or ∂/∂log k
        parts = [np.hstack([d_amp[:, [i]], k[i] * e[:, [i]] * q]) for i in range(len(t))]
        return np.hstack([np.ones((len(y), 1)), *parts])

    if start is not None:
        starts = [start]
    elif terms == 1:
        design = np.hstack([np.ones((len(y), 1)), q])
        starts = []
        for sign in (1.0, -1.0):
            for frac in (0.05, 0.5, 3.0):
                c0 = float(y.min() - frac * spread) if sign > 0 else float(y.max() + frac * spread)
                lin, *_ = np.linalg.lstsq(design, np.log(sign * (y - c0)), rcond=None)
                starts.append(np.concatenate([[c0, sign * np.exp(lin[0])], lin[1:]]))
    else:
        rng = np.random.default_rng(terms)
        fewer = fit_dml_column(q, y, terms - 1, memo=memo).copy()
        if terms == 2:  # the single term's signed amplitude becomes a log amplitude
            fewer[1] = math.log(max(abs(fewer[1]), 1e-12))
        new = [np.r_[math.log(0.1 * spread), rng.normal(0, 2, q.shape[1])] for _ in range(4)]
        starts = [np.concatenate([fewer, x]) for x in new] + [
            np.concatenate(
                [[y.min() - 0.5 * spread * rng.random()], rng.normal(0, 1, terms * (q.shape[1] + 1))]
            )
            for _ in range(8)
        ]
    # |t_j| <= T_MAX: with lattice steps of 1/4 a slope of 20 already turns a term off within one step, and
    # steeper slopes are not identified by the grid (the coefficients stay sane); floor and amplitudes free
    hi = np.full(len(starts[0]), np.inf)
    hi[1:] = np.tile([np.inf, *([T_MAX] * q.shape[1])], terms)
    fits = [
        least_squares(resid, np.clip(x0, 1e-9 - hi, hi - 1e-9), jac=jac, bounds=(-hi, hi), ftol=1e-7,
                      xtol=1e-7, max_nfev=30 * len(x0))
        for x0 in starts
    ]  # fmt: skip
    best = np.asarray(min(fits, key=lambda f: f.cost).x)
    if start is None and memo is not None:
        memo[terms] = best
    return best


@dataclass(frozen=True)
class DMLModel:
    """Fitted DML per metric column (summed): the floors c and each column's terms (k or log k, t)."""

    c: np.ndarray  # (columns,): the floor of each metric column
    terms: tuple[np.ndarray, ...]  # per column, (K, m): k (log k when K > 1), t_1..t_{m-1} of each term
    smooth: bool = True

    def predict(self, p: np.ndarray, ot: np.ndarray | None) -> np.ndarray:
        q = p[:, :-1]
        return self.c.sum() + sum(
            (dml_terms(q, np.r_[0.0, t.ravel()])[0] for t in self.terms), np.zeros(len(p))
        )

    def params(self, names: Sequence[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        for d, (c, term) in enumerate(zip(self.c, self.terms, strict=True)):
            col = f"[{d}]" if len(self.terms) > 1 else ""
            out[f"c{col}"] = float(c)
            for i, row in enumerate(term):
                tag = f"{col}{i + 1}" if len(term) > 1 else col
                keys = [f"{'log_k' if len(term) > 1 else 'k'}{tag}", *(f"t{tag}.{n}" for n in names[:-1])]
                out.update({key: float(v) for key, v in zip(keys, row, strict=True)})
        return out
