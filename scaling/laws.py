"""Parametric scaling-law forms as frozen dataclasses, each with one torch formula that fits and predicts.

Every formula is written once, in log space (log-sum-exp form), as a float64 torch function: `scaling.fit`
differentiates it, the dataclasses evaluate it on numpy input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from curate.errors import ConfigError

QQT_NORMALIZER = 1e5  # Goyal et al. 2024 official code: samples counted in units of 1e5
MUENNIGHOFF_R_STAR = 15.39  # Muennighoff et al. 2023, fitted R_D* (repetitions of half-value ~ R* ln 2)


def _t(x: object) -> torch.Tensor:
    return torch.as_tensor(np.atleast_1d(np.array(x, dtype=np.float64)))


def log_power_law(
    log_n: torch.Tensor, log_a: torch.Tensor, b: torch.Tensor, log_d: torch.Tensor
) -> torch.Tensor:
    """log(a*n^b + d) as logaddexp(log a + b log n, log d)."""
    return torch.logaddexp(log_a + b * log_n, log_d)


def log_chinchilla(
    log_n: torch.Tensor,
    log_d: torch.Tensor,
    *,
    log_e: torch.Tensor,
    log_a: torch.Tensor,
    log_b: torch.Tensor,
    alpha: torch.Tensor,
    beta: torch.Tensor,
) -> torch.Tensor:
    """log L for L = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022, eq. 2), log-sum-exp form."""
    terms = torch.stack(torch.broadcast_tensors(log_a - alpha * log_n, log_b - beta * log_d, log_e))
    return torch.logsumexp(terms, dim=0)


def effective_data(tokens: torch.Tensor, unique: torch.Tensor, log_r_star: torch.Tensor) -> torch.Tensor:
    """Muennighoff et al. 2023 eq. 5: D' = U + U R* (1 - exp(-R/R*)), R = D/U - 1 repetitions."""
    r_star = torch.exp(log_r_star)
    reps = torch.clamp(tokens / unique - 1.0, min=0.0)
    return unique + unique * r_star * (1.0 - torch.exp(-reps / r_star))


def qqt_log_excess(
    samples_seen: torch.Tensor,
    *,
    log_a: torch.Tensor,
    b: torch.Tensor,
    tau: torch.Tensor,
    pool_size: torch.Tensor,
    gamma: float = 1.0,
    bonus: torch.Tensor | float = 0.0,
) -> torch.Tensor:
    """log(y_k - d) of Goyal et al. 2024 (official parameterisation) for a union of pools, one row per point.

    y_k - d = (a n_1/1e5)^{b_1} prod_{j>=2} (n_j/n_{j-1})^{b_j}, n_j = min(j |S|, n), |S| = sum of
    pool sizes; pass j has b_j = sum_i w_i b_i 2^{-(j-1) w_i^gamma / tau_i} with w_i = |S_i|/|S|. The union
    rule: gamma = 1 is the paper's (equal pools: the mean of b_i 2^{-(j-1)/(p tau_i)}, a union of p decays p
    times slower), gamma = 0 decays each pool by its own passes (a union pass repeats each pool once).
    `samples_seen` is (n,); b, tau, pool_size broadcast to (n, p). `bonus` (scalar or (n,), >= 0) is taken
    from every pool's b_i inside the union (the coverage credit of `scaling.qqt`; 0 is the paper's law).
    """
    b, tau, pool_size = torch.broadcast_tensors(b, tau, pool_size)
    epoch = pool_size.sum(dim=1)
    weight = pool_size / epoch[:, None]
    n_pass = int(torch.ceil(torch.max(samples_seen / epoch)).item())
    j = torch.arange(1, n_pass + 1, dtype=torch.float64)
    n_j = torch.minimum(j[None, :] * epoch[:, None], samples_seen[:, None])  # (n, passes)
    decay = torch.exp2(
        -(j[None, :, None] - 1.0) * weight[:, None, :] ** gamma / tau[:, None, :]
    )  # (n, passes, p)
    bonus = torch.as_tensor(bonus, dtype=b.dtype).reshape(-1, 1, 1)
    b_j = (weight[:, None, :] * (b[:, None, :] - bonus) * decay).sum(dim=2)  # (n, passes)
    log_n = torch.log(n_j)
    step = torch.cat([log_a + log_n[:, :1] - math.log(QQT_NORMALIZER), log_n[:, 1:] - log_n[:, :-1]], dim=1)
    return (b_j * step).sum(dim=1)


@dataclass(frozen=True, slots=True)
class PowerLaw:
    """y = a n^b + d."""

    a: float
    b: float
    d: float

    def __call__(self, n: np.ndarray | float) -> np.ndarray:
        """The law at `n` (float64 array)."""
        log_y = log_power_law(torch.log(_t(n)), _t(math.log(self.a)), _t(self.b), _t(math.log(self.d)))
        return np.exp(log_y.numpy())


@dataclass(frozen=True, slots=True)
class Chinchilla:
    """L = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022, eq. 2); N parameters, D training tokens."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def __call__(self, n_params: np.ndarray | float, n_tokens: np.ndarray | float) -> np.ndarray:
        """The loss at (N, D) (float64 array)."""
        log_l = log_chinchilla(
            torch.log(_t(n_params)),
            torch.log(_t(n_tokens)),
            log_e=_t(math.log(self.E)),
            log_a=_t(math.log(self.A)),
            log_b=_t(math.log(self.B)),
            alpha=_t(self.alpha),
            beta=_t(self.beta),
        )
        return np.exp(log_l.numpy())

    def compute_optimal(self, flops: float) -> tuple[float, float]:
        """(N*, D*) minimising L at C = 6 N D (Hoffmann et al. 2022, eq. 4)."""
        g = (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))
        n_opt = g * (flops / 6.0) ** (self.beta / (self.alpha + self.beta))
        return n_opt, flops / (6.0 * n_opt)


@dataclass(frozen=True, slots=True)
class EffectiveData:
    """Muennighoff et al. 2023 effective data D' for D tokens drawn from U unique tokens (eq. 5)."""

    r_star: float = MUENNIGHOFF_R_STAR

    def __call__(self, tokens: np.ndarray | float, unique: np.ndarray | float) -> np.ndarray:
        """D' (float64 array); equals D while D <= U."""
        return effective_data(_t(tokens), _t(unique), _t(math.log(self.r_star))).numpy()

    @property
    def half_life(self) -> float:
        """The QQT repetition half-life this implies: tau = R_D* ln 2 (10.7 for R_D* = 15.39)."""
        return self.r_star * math.log(2.0)


@dataclass(frozen=True, slots=True)
class QQTLaw:
    """Goyal et al. 2024 multi-epoch error of one pool or a union of pools (one entry per pool)."""

    a: float
    d: float
    b: tuple[float, ...]
    tau: tuple[float, ...]
    pool_size: tuple[int, ...]
    gamma: float = 1.0  # union rule: 1 = the paper's p x tau, 0 = each pool decays by its own passes

    def __post_init__(self) -> None:
        if not (len(self.b) == len(self.tau) == len(self.pool_size) >= 1):
            raise ConfigError(
                f"QQTLaw needs one b, tau and pool_size per pool; got {len(self.b)}, {len(self.tau)} "
                f"and {len(self.pool_size)}."
            )
        if self.a <= 0 or self.d < 0 or min(self.tau) <= 0 or min(self.pool_size) <= 0:
            raise ConfigError(
                f"QQTLaw needs a > 0, d >= 0, tau > 0 and pool sizes > 0; got a={self.a}, d={self.d}, "
                f"tau={self.tau}, pool_size={self.pool_size}."
            )

    def __call__(self, samples_seen: Sequence[float] | np.ndarray | float) -> np.ndarray:
        """Error after `samples_seen` samples drawn by epochs over the union (float64 array)."""
        n = np.atleast_1d(np.asarray(samples_seen, dtype=np.float64))
        if (n <= 0).any():
            raise ConfigError(f"QQTLaw samples_seen must be > 0; got {n[n <= 0][:3].tolist()}.")
        excess = qqt_log_excess(
            _t(n),
            log_a=_t(math.log(self.a)),
            b=_t([self.b]),
            tau=_t([self.tau]),
            pool_size=_t([self.pool_size]),
            gamma=self.gamma,
        )
        return np.exp(excess.numpy()) + self.d

    def union(self, other: QQTLaw) -> QQTLaw:
        """The law of this union joined with `other`'s pools (same a and d)."""
        if (self.a, self.d) != (other.a, other.d):
            raise ConfigError(
                f"QQTLaw.union needs the same a and d; got {(self.a, self.d)} and {(other.a, other.d)}."
            )
        return QQTLaw(
            a=self.a,
            d=self.d,
            b=self.b + other.b,
            tau=self.tau + other.tau,
            pool_size=self.pool_size + other.pool_size,
            gamma=self.gamma,
        )
