"""QQT fit: parameter recovery from seeds, unions predicted under each rule, the rule chosen from held-out
unions, harmful and flat pools excluded, the hand-checked plan, identifiability flags, bad input."""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl
import pytest

from curate.errors import ConfigError, FitError
from scaling.laws import QQTLaw
from scaling.qqt import PRIOR_TAU, QQTFit, fit_qqt
from scaling.qqt_union import choose_union_rule, fit_union_law

SIZE = 20_000
A, D = 500.0, 0.1
TRUTH = {"high": (-0.15, 2.0), "low": (-0.10, 5.0)}  # pool -> (b, tau)
EPOCHS = np.array([0.25, 0.5, 1, 2, 4, 8, 12])


def synthetic_curves(
    truth: dict[str, tuple[float, float]],
    *,
    n: np.ndarray,
    noise: float,
    seeds: int = 5,
    a: float = A,
    d: float = D,
    size: int = SIZE,
    gamma: float = 0.0,
    sizes: dict[str, tuple[int, ...]] | None = None,
) -> pl.DataFrame:
    """Curves (pool, seed, samples_seen, error) from QQT laws with multiplicative noise per seed; a pool may
    be a union (`sizes`: its members' sizes, with `truth` giving their b and tau as tuples)."""
    rng = np.random.default_rng(0)
    parts = []
    for pool, (b, tau) in truth.items():
        bs, taus = (b, tau) if isinstance(b, tuple) else ((b,), (tau,))
        law = QQTLaw(a=a, d=d, b=bs, tau=taus, pool_size=(sizes or {}).get(pool, (size,)), gamma=gamma)  # type: ignore[arg-type]
        for s in range(seeds):
            err = law(n) * (1 + noise * rng.standard_normal(n.size))
            parts.append(
                pl.DataFrame({"pool": pool, "seed": s, "samples_seen": n.astype(np.int64), "error": err})
            )
    return pl.concat(parts)


@pytest.fixture(scope="module")
def fit() -> QQTFit:
    """Two pools seen for 12 epochs, 5 seeds at 1% noise; a and d fitted, intervals by seed bootstrap."""
    curves = synthetic_curves(TRUTH, n=EPOCHS * SIZE, noise=0.01)
    return fit_qqt(curves, {"high": SIZE, "low": SIZE}, n_bootstrap=20, seed=0)


def test_qqt_recovers_b_tau_and_d(fit: QQTFit) -> None:
    """b within 0.01, tau within 25% and d within 35% of the generating values (d is the weakest: 10% of
    the error); all flagged identified."""
    got = {r["pool"]: r for r in fit.params.iter_rows(named=True)}
    for pool, (b, tau) in TRUTH.items():
        assert got[pool]["b"] == pytest.approx(b, abs=0.01)
        assert got[pool]["tau"] == pytest.approx(tau, rel=0.25)
        assert got[pool]["b_lo"] <= b <= got[pool]["b_hi"]
        assert got[pool]["tau_identified"] and got[pool]["excluded"] is None
    assert fit.d == pytest.approx(D, rel=0.35) and fit.d_identified
    assert fit.usable == ["high", "low"]


def test_seed_spread_is_the_median_relative_std_of_the_points() -> None:
    """seed_spread equals a NumPy recomputation: per (pool, samples_seen) std/mean across seeds, median."""
    curves = synthetic_curves(TRUTH, n=EPOCHS * SIZE, noise=0.02)
    got = fit_qqt(curves, {"high": SIZE, "low": SIZE}, n_bootstrap=0).seed_spread
    rel = [
        np.std(g["error"].to_numpy(), ddof=1) / np.mean(g["error"].to_numpy())
        for _, g in curves.group_by("pool", "samples_seen")
    ]
    assert got == pytest.approx(float(np.median(rel)), rel=1e-9)


@pytest.mark.parametrize("gamma", [0.0, 1.0])
def test_union_predicted_from_single_pool_fits(gamma: float) -> None:
    """Fitted on single pools, the never-trained union under rule gamma is within 1.5% of its law."""
    curves = synthetic_curves(TRUTH, n=EPOCHS * SIZE, noise=0.005)
    fitted = fit_qqt(curves, {"high": SIZE, "low": SIZE}, gamma=gamma, n_bootstrap=0)
    truth = QQTLaw(a=A, d=D, b=(-0.15, -0.10), tau=(2.0, 5.0), pool_size=(SIZE, SIZE), gamma=gamma)
    budgets = [10_000, 60_000, 150_000, 500_000]
    assert [fitted.predict(["high", "low"], n) for n in budgets] == pytest.approx(
        truth(budgets).tolist(), rel=0.015
    )


@pytest.mark.parametrize("gamma", [0.0, 1.0])
def test_union_rule_is_chosen_on_held_out_unions(gamma: float) -> None:
    """Union runs generated under rule gamma make `choose_union_rule` pick that gamma."""
    curves = synthetic_curves(TRUTH, n=EPOCHS * SIZE, noise=0.002)
    fitted = fit_qqt(curves, {"high": SIZE, "low": SIZE}, n_bootstrap=0)
    union = {"both": ((-0.15, -0.10), (2.0, 5.0))}
    observed = synthetic_curves(
        union, n=np.array([1, 3, 6, 10]) * 2 * SIZE, noise=0.002, gamma=gamma, sizes={"both": (SIZE, SIZE)}
    )  # type: ignore[arg-type]
    chosen, kappa, table = choose_union_rule(
        fitted, observed, {"both": ["high", "low"]}, {"both": {"high": SIZE, "low": SIZE}}
    )
    assert chosen == gamma and kappa == 0.0  # no coverage gap: kappa is not searched
    assert table.height == 5 and table["mare"].min() == table.filter(pl.col("gamma") == gamma)["mare"].item()


def test_coverage_credit_is_each_b_shifted_by_kappa_times_gap(fit: QQTFit) -> None:
    """Within one pass, a union's error is (a n / 1e5)^(sum_i w_i (b_i - kappa g)) + d (computed here by
    hand from the fitted a, b, d); kappa = 0 or a union without a gap is the paper's law."""
    covered = fit.with_gamma(0.0).with_coverage({"high+low": 0.1}, kappa=0.5)
    b = dict(zip(fit.names, fit.theta.b, strict=True))
    for n in (5_000.0, 20_000.0, 40_000.0):
        expected = (fit.a * n / 1e5) ** (0.5 * (b["high"] - 0.05) + 0.5 * (b["low"] - 0.05)) + fit.d
        assert covered.predict(["low", "high"], n) == pytest.approx(expected, rel=1e-9)
        assert covered.with_coverage({}, kappa=0.5).predict(["high", "low"], n) == pytest.approx(
            fit.with_gamma(0.0).predict(["high", "low"], n), rel=1e-12
        )
        assert covered.predict(["high"], n) == fit.predict(["high"], n)


def test_kappa_is_chosen_on_held_out_unions() -> None:
    """A union run whose pools each gained kappa g = 2 x 0.05 in b (generated with shifted b values, not by
    the bonus code) makes `choose_union_rule` pick kappa = 2 at the rule it was generated with (d fixed at
    its value: free, a and d trade off on these curves and kappa with them)."""
    curves = synthetic_curves(TRUTH, n=EPOCHS * SIZE, noise=0.002)
    fitted = fit_qqt(curves, {"high": SIZE, "low": SIZE}, n_bootstrap=0, d=D)
    fitted = fitted.with_coverage({"high+low": 0.05})
    union = {"both": ((-0.15 - 0.1, -0.10 - 0.1), (2.0, 5.0))}
    observed = synthetic_curves(
        union, n=np.array([0.5, 1, 3, 6]) * 2 * SIZE, noise=0.002, sizes={"both": (SIZE, SIZE)}
    )  # type: ignore[arg-type]
    gamma, kappa, table = choose_union_rule(
        fitted, observed, {"both": ["high", "low"]}, {"both": {"high": SIZE, "low": SIZE}}
    )
    assert (gamma, kappa) == (0.0, pytest.approx(2.0))
    assert table.height == 5 * 41


def test_harmful_and_flat_pools_are_excluded_with_a_reason() -> None:
    """A pool whose error rises with its data (harmful) or stays put (flat) joins no union, nor the plan."""
    n = EPOCHS * SIZE
    curves = synthetic_curves(TRUTH, n=n, noise=0.01)
    rng = np.random.default_rng(3)
    for pool, level in (("harm", np.linspace(0.55, 0.65, n.size)), ("flat", np.full(n.size, 0.6))):
        for s in range(5):
            err = level * (1 + 0.01 * rng.standard_normal(n.size))
            curves = pl.concat(
                [
                    curves,
                    pl.DataFrame({"pool": pool, "seed": s, "samples_seen": n.astype(np.int64), "error": err}),
                ]
            )
    fitted = fit_qqt(curves, dict.fromkeys([*TRUTH, "harm", "flat"], SIZE), n_bootstrap=20)
    reasons = dict(fitted.params.select("pool", "excluded").iter_rows())
    assert reasons["harm"].startswith("harmful") and reasons["flat"].startswith("flat")
    assert reasons["high"] is None and reasons["low"] is None
    plan = fitted.best_union([SIZE // 2, 4 * SIZE, 400 * SIZE])
    assert all(not {"harm", "flat"} & set(p) for p in plan["pools"].to_list())


def test_best_union_grows_with_budget() -> None:
    """Curves from a=0.022, d=0.05, |S|=12.8M, tau=3, b=-0.13/-0.10 under the paper's rule: the best pool
    alone at 32M samples, the union of both from 64M on, each at the value of the generating laws
    (QQTLaw, whose formula tests/scaling/test_laws.py checks by hand)."""
    size, a, d = 12_800_000, 0.022, 0.05
    truth = {"top": (-0.13, 3.0), "next": (-0.10, 3.0)}
    n = np.array([1, 1.5, 2, 3, 4, 6, 8]) * size  # a n / 1e5 >= 1 from the first point on (the law's regime)
    curves = synthetic_curves(truth, n=n, noise=0.0, seeds=1, a=a, d=d, size=size, gamma=1.0)
    fitted = fit_qqt(curves, {"top": size, "next": size}, d=d, gamma=1.0, n_bootstrap=0)
    budgets = [32_000_000, 64_000_000, 128_000_000, 640_000_000]
    plan = fitted.best_union(budgets)
    alone = QQTLaw(a=a, d=d, b=(-0.13,), tau=(3.0,), pool_size=(size,), gamma=1.0)(budgets)
    both = QQTLaw(a=a, d=d, b=(-0.13, -0.10), tau=(3.0, 3.0), pool_size=(size, size), gamma=1.0)(budgets)
    assert (
        plan["n_pools"].to_list()
        == [1 if x < y else 2 for x, y in zip(alone, both, strict=True)]
        == [1, 2, 2, 2]
    )
    assert plan["error"].to_list() == pytest.approx(np.minimum(alone, both).tolist(), rel=2e-3)


def test_one_epoch_pools_take_the_muennighoff_prior() -> None:
    """With no point past the first epoch, repetition is unobserved: tau is the prior and flagged."""
    curves = synthetic_curves({"only": (-0.2, 3.0)}, n=np.linspace(SIZE / 10, SIZE, 8), noise=0.0, seeds=2)
    fitted = fit_qqt(curves, {"only": SIZE}, d=D, n_bootstrap=0)
    assert fitted.params["tau"][0] == pytest.approx(PRIOR_TAU) and not fitted.params["tau_identified"][0]
    assert fitted.params["b"][0] == pytest.approx(-0.2, abs=5e-3)


def test_d_is_flagged_unidentified_on_a_narrow_range() -> None:
    """Points over 1.2x of samples cannot separate the floor from the power law: d_identified is False."""
    curves = synthetic_curves({"p": (-0.2, 3.0)}, n=np.linspace(0.5, 0.6, 6) * SIZE, noise=0.0, seeds=2)
    assert not fit_qqt(curves, {"p": SIZE}, n_bootstrap=0).d_identified


def test_to_laws_names_every_parameter(fit: QQTFit) -> None:
    """to_laws() holds a, d, gamma and each pool's b and tau."""
    laws = fit.to_laws()
    assert set(laws) == {"a", "d", "gamma", "kappa", "b[high]", "tau[high]", "b[low]", "tau[low]"}
    assert laws["b[high]"] == pytest.approx(fit.params["b"][0])


def _curve(pool: str, seen: list[int], err: list[float]) -> pl.DataFrame:
    return pl.DataFrame({"pool": pool, "samples_seen": seen, "error": err})


@pytest.mark.parametrize(
    ("curves", "sizes", "kwargs", "error", "match"),
    [
        (_curve("p", [10, 20], [0.9, 0.8]), {"p": 10}, {}, FitError, "2 point"),
        (_curve("p", [10, 20, 30], [0.9, float("nan"), 0.8]), {"p": 10}, {}, FitError, "NaN"),
        (_curve("p", [10, 20, 30], [0.9, 0.8, 0.0]), {"p": 10}, {}, FitError, "error > 0"),
        (_curve("p", [10, 20, 30], [2.3, 1.8, 1.5]), {"p": 10}, {}, FitError, "error <= 1 at every point"),
        (_curve("p", [10, 20, 30], [0.9, 0.8, 0.7]), {"q": 10}, {}, ConfigError, r"lacks pool\(s\) \['p'\]"),
        (_curve("p", [10, 20, 30], [0.9, 0.8, 0.7]), {"p": 10}, {"d": 0.75}, ConfigError, "'d' parameter"),
        (
            _curve("p", [10, 20, 30], [0.9, 0.8, 0.7]),
            {"p": 10},
            {"gamma": 2.0},
            ConfigError,
            "'gamma' parameter",
        ),
        (pl.DataFrame({"pool": ["p"], "error": [0.5]}), {"p": 10}, {}, Exception, "lacks column"),
    ],
)
def test_fit_qqt_rejects_unusable_curves(
    curves: pl.DataFrame, sizes: dict[str, int], kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Too few points, NaN, zero error, missing pools or columns, bad d or gamma: clear errors."""
    with pytest.raises(error, match=match):
        fit_qqt(curves, sizes, n_bootstrap=0, **kwargs)


def test_predict_and_plan_reject_bad_budgets_and_pools(fit: QQTFit) -> None:
    """Budgets <= 0, an empty budget list and unknown pools are ConfigErrors."""
    with pytest.raises(ConfigError, match=r"'samples_seen' parameter of QQTFit\.predict"):
        fit.best_union([1000, 0])
    with pytest.raises(ConfigError, match="at least one budget"):
        fit.best_union([])
    with pytest.raises(ConfigError, match="distinct names among"):
        fit.predict(["high", "mid"], 1000)


def test_union_law_pins_the_floor_with_held_out_unions() -> None:
    """Union runs generated at the single pools' law (d = 0.1, shared rule, the pools' b shifted by kappa g =
    2 x 0.05) make `fit_union_law` pick d within 35% of 0.1 (a grid refined around its best point), gamma 0
    and kappa 2, with d flagged identified; the table holds every d tried, the chosen one the least."""
    curves = synthetic_curves(TRUTH, n=EPOCHS * SIZE, noise=0.002)
    union = {"both": ((-0.15 - 0.1, -0.10 - 0.1), (2.0, 5.0))}
    observed = synthetic_curves(union, n=np.array([0.5, 1, 3, 6]) * 2 * SIZE, noise=0.002,
                                sizes={"both": (SIZE, SIZE)})  # type: ignore[arg-type]  # fmt: skip
    law = fit_union_law(
        curves, dict.fromkeys(TRUTH, SIZE), observed, {"both": ["high", "low"]}, {"high+low": 0.05},
        n_bootstrap=0,
    )  # fmt: skip
    assert law.fit.d == pytest.approx(D, rel=0.35) and law.fit.d_identified
    assert (law.fit.gamma, law.fit.kappa) == (0.0, pytest.approx(2.0, abs=0.15))
    assert law.d_table.height == 6 + 6 and law.d_table["sse"].min() == pytest.approx(
        law.d_table.filter(pl.col("d") == law.fit.d)["sse"].item()
    )
