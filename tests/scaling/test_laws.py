"""Law forms: hand-checked QQT values, an independent loop over passes for unions, Chinchilla, Muennighoff."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.optimize

from curate.errors import ConfigError
from scaling.laws import Chinchilla, EffectiveData, PowerLaw, QQTLaw


def reference_qqt(n: float, *, a: float, d: float, b: list[float], tau: list[float], size: float) -> float:
    """Goyal et al. 2024 by hand: walk the passes over p equal pools; pass k: mean b_i 2^-(k-1)/(p tau_i)."""
    p = len(b)
    epoch = p * size
    log_excess, prev, k = 0.0, 0.0, 1
    while prev < n:
        cur = min(k * epoch, n)
        b_k = sum(bi * 2.0 ** (-(k - 1) / (p * ti)) for bi, ti in zip(b, tau, strict=True)) / p
        log_excess += b_k * (math.log(a * cur / 1e5) if k == 1 else math.log(cur / prev))
        prev, k = cur, k + 1
    return math.exp(log_excess) + d


HAND_CHECKED = [  # samples seen, best pool (b = -0.13) alone, union of both pools (issue 6)
    (32_000_000, 0.899, 0.901),
    (64_000_000, 0.864, 0.848),
    (128_000_000, 0.849, 0.807),
    (640_000_000, 0.845, 0.769),
]


@pytest.mark.parametrize(("n", "alone", "union"), HAND_CHECKED)
def test_qqt_hand_checked_best_pool_vs_union(n: int, alone: float, union: float) -> None:
    """a=0.022, d=0.1, |S|=12.8M, tau=3, b=-0.13/-0.10: the issue's values to 0.002."""
    best = QQTLaw(a=0.022, d=0.1, b=(-0.13,), tau=(3.0,), pool_size=(12_800_000,))
    other = QQTLaw(a=0.022, d=0.1, b=(-0.10,), tau=(3.0,), pool_size=(12_800_000,))
    assert best(n)[0] == pytest.approx(alone, abs=0.002)
    assert best.union(other)(n)[0] == pytest.approx(union, abs=0.002)


def test_qqt_union_matches_loop_reference_with_partial_epochs() -> None:
    """Three pools with different tau, budgets mid-epoch and on epoch ends, equal the hand-walked passes."""
    law = QQTLaw(a=0.05, d=0.2, b=(-0.2, -0.12, -0.05), tau=(1.5, 4.0, 12.0), pool_size=(1000, 1000, 1000))
    budgets = [700, 3000, 4500, 9000, 31_337]
    expected = [
        reference_qqt(n, a=0.05, d=0.2, b=[-0.2, -0.12, -0.05], tau=[1.5, 4.0, 12.0], size=1000)
        for n in budgets
    ]
    assert law(budgets) == pytest.approx(expected, rel=1e-12)


def test_qqt_first_epoch_is_the_plain_power_law() -> None:
    """Within the first pass, y = (a n / 1e5)^b + d exactly, whatever tau."""
    law = QQTLaw(a=0.3, d=0.05, b=(-0.4,), tau=(0.7,), pool_size=(10_000,))
    n = np.array([10.0, 500.0, 10_000.0])
    assert law(n) == pytest.approx((0.3 * n / 1e5) ** -0.4 + 0.05, rel=1e-12)


def test_power_law_and_chinchilla_match_their_formulas() -> None:
    """PowerLaw and Chinchilla evaluate a n^b + d and E + A/N^alpha + B/D^beta."""
    assert PowerLaw(a=3.0, b=-0.5, d=0.1)(np.array([4.0, 100.0])) == pytest.approx([1.6, 0.4])
    law = Chinchilla(E=1.82, A=482.0, B=2085.0, alpha=0.348, beta=0.366)
    assert law(1e9, 2e10)[0] == pytest.approx(1.82 + 482.0 / 1e9**0.348 + 2085.0 / 2e10**0.366)


def test_chinchilla_compute_optimal_minimises_loss_at_fixed_flops() -> None:
    """The closed-form (N*, D*) equals a numerical minimum of L(N, C/6N)."""
    law = Chinchilla(E=1.82, A=482.0, B=2085.0, alpha=0.348, beta=0.366)
    flops = 1e21
    res = scipy.optimize.minimize_scalar(
        lambda log_n: float(law(math.exp(log_n), flops / (6 * math.exp(log_n)))[0]),
        bounds=(math.log(1e6), math.log(1e13)),
        method="bounded",
        options={"xatol": 1e-10},
    )
    n_opt, d_opt = law.compute_optimal(flops)
    assert math.log(n_opt) == pytest.approx(res.x, abs=1e-3)
    assert 6 * n_opt * d_opt == pytest.approx(flops)


def test_effective_data_muennighoff() -> None:
    """D' = D up to one epoch, U (1 + R*) in the limit, and tau = R* ln 2 ~ 10.7."""
    eff = EffectiveData()
    assert eff(np.array([50.0, 100.0]), 100.0) == pytest.approx([100.0, 100.0])  # under one epoch: counts U
    assert eff(1e9, 100.0)[0] == pytest.approx(100.0 * (1 + 15.39), rel=1e-9)
    four = eff(400.0, 100.0)[0]
    assert four == pytest.approx(100.0 + 100.0 * 15.39 * (1 - math.exp(-3 / 15.39)))
    assert eff.half_life == pytest.approx(10.667, abs=1e-3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"b": (-0.1, -0.2)}, "one b, tau and pool_size per pool"),
        ({"tau": (0.0,)}, "tau > 0"),
        ({"a": -1.0}, "a > 0"),
        ({"pool_size": (0,)}, "pool sizes > 0"),
    ],
)
def test_qqt_law_rejects_bad_parameters(kwargs: dict[str, object], match: str) -> None:
    """Bad QQTLaw parameters raise ConfigError naming what is wrong."""
    args: dict[str, object] = {"a": 0.1, "d": 0.1, "b": (-0.1,), "tau": (3.0,), "pool_size": (100,)}
    args.update(kwargs)
    with pytest.raises(ConfigError, match=match):
        QQTLaw(**args)  # type: ignore[arg-type]


def test_qqt_law_rejects_nonpositive_samples_and_mismatched_union() -> None:
    """samples_seen <= 0 and a union of laws with different (a, d) are ConfigErrors."""
    law = QQTLaw(a=0.1, d=0.1, b=(-0.1,), tau=(3.0,), pool_size=(100,))
    with pytest.raises(ConfigError, match="samples_seen must be > 0"):
        law([10, 0])
    with pytest.raises(ConfigError, match="same a and d"):
        law.union(QQTLaw(a=0.2, d=0.1, b=(-0.1,), tau=(3.0,), pool_size=(100,)))
