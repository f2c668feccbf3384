"""QQT fit: parameter recovery, unions predicted from single-pool fits, the hand-checked plan, bad input."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import polars as pl
import pytest

from curate.errors import ConfigError, FitError, FitWarning
from scaling.laws import QQTLaw
from scaling.qqt import PRIOR_TAU, QQTFit, fit_qqt

SIZE = 20_000
A, D = 50.0, 0.1
TRUTH = {"high": (-0.15, 2.0), "low": (-0.10, 5.0)}  # pool -> (b, tau)


def synthetic_curves(
    truth: dict[str, tuple[float, float]],
    *,
    n: np.ndarray,
    noise: float,
    seed: int,
    a: float = A,
    size: int = SIZE,
) -> pl.DataFrame:
    """Curves (pool, samples_seen, error) drawn from single-pool QQT laws with multiplicative noise."""
    rng = np.random.default_rng(seed)
    parts = []
    for pool, (b, tau) in truth.items():
        err = QQTLaw(a=a, d=D, b=(b,), tau=(tau,), pool_size=(size,))(n) * (
            1 + noise * rng.standard_normal(n.size)
        )
        parts.append(pl.DataFrame({"pool": pool, "samples_seen": n.astype(np.int64), "error": err}))
    return pl.concat(parts)


@pytest.fixture(scope="module")
def noisy_fit() -> QQTFit:
    """Two pools seen for 12 epochs at 96 checkpoints, 1% noise, d known (as in the official code)."""
    curves = synthetic_curves(TRUTH, n=np.linspace(SIZE / 4, 12 * SIZE, 96), noise=0.01, seed=0)
    return fit_qqt(curves, {"high": SIZE, "low": SIZE}, d=D, n_bootstrap=8, seed=0)


def test_qqt_recovers_b_and_tau_from_noisy_curves(noisy_fit: QQTFit) -> None:
    """b within 0.01 and tau within 20% of the generating values."""
    got = {r["pool"]: (r["b"], r["tau"]) for r in noisy_fit.params.iter_rows(named=True)}
    for pool, (b, tau) in TRUTH.items():
        assert got[pool][0] == pytest.approx(b, abs=0.01)
        assert got[pool][1] == pytest.approx(tau, rel=0.2)
    assert noisy_fit.pools == ["high", "low"]
    assert noisy_fit.params.columns == ["pool", "b", "tau", "pool_size"]


def test_union_predicted_from_single_pool_fits_matches_union_curve(noisy_fit: QQTFit) -> None:
    """The never-trained union, predicted from the single-pool fits, is within 1.5% of its law."""
    truth = QQTLaw(a=A, d=D, b=(-0.15, -0.10), tau=(2.0, 5.0), pool_size=(SIZE, SIZE))
    budgets = [10_000, 60_000, 150_000, 500_000]
    predicted = [noisy_fit.predict(["high", "low"], n) for n in budgets]
    assert predicted == pytest.approx(truth(budgets).tolist(), rel=0.015)
    mean, lo, hi = noisy_fit.predict_interval(["low", "high"], 150_000)
    assert lo <= mean <= hi
    assert mean == pytest.approx(predicted[2])


def test_best_union_reproduces_hand_checked_plan() -> None:
    """Curves from a=0.022, d=0.1, |S|=12.8M, tau=3, b=-0.13/-0.10: best pool alone at 32M, union after."""
    size = 12_800_000
    truth = {"top": (-0.13, 3.0), "next": (-0.10, 3.0)}
    curves = synthetic_curves(
        truth, n=np.linspace(size / 4, 6 * size, 24), noise=0.0, seed=0, a=0.022, size=size
    )
    fit = fit_qqt(curves, {"top": size, "next": size}, d=0.1, n_bootstrap=0)
    plan = fit.best_union([32_000_000, 64_000_000, 128_000_000, 640_000_000])
    assert plan["n_pools"].to_list() == [1, 2, 2, 2]
    assert plan["pools"].to_list()[0] == ["top"]
    assert plan["error"].to_list() == pytest.approx([0.899, 0.848, 0.807, 0.769], abs=0.002)
    table = fit.unions([32_000_000])
    assert table["error"].to_list() == pytest.approx([0.899, 0.901], abs=0.002)


def test_fit_with_unknown_d_predicts_held_out_budgets() -> None:
    """Fitting d too: predictions at 1.5x the largest budget seen stay within 2% of the law."""
    n = np.linspace(SIZE / 4, 8 * SIZE, 48)
    fit = fit_qqt(
        synthetic_curves(TRUTH, n=n, noise=0.005, seed=1), {"high": SIZE, "low": SIZE}, n_bootstrap=0
    )
    for pool, (b, tau) in TRUTH.items():
        law = QQTLaw(a=A, d=D, b=(b,), tau=(tau,), pool_size=(SIZE,))
        assert fit.predict([pool], 12 * SIZE) == pytest.approx(law(12 * SIZE)[0], rel=0.02)
    assert 0 <= fit.d < 0.5


def test_one_epoch_pool_takes_the_muennighoff_prior() -> None:
    """With under one epoch seen, repetition is unobserved and tau rests on the prior R_D* ln 2 ~ 10.7."""
    curves = synthetic_curves({"only": (-0.2, 3.0)}, n=np.linspace(SIZE / 10, SIZE, 12), noise=0.0, seed=0)
    fit = fit_qqt(curves, {"only": SIZE}, d=D, n_bootstrap=0)
    assert fit.params["tau"][0] == pytest.approx(PRIOR_TAU, rel=1e-3)
    assert fit.params["b"][0] == pytest.approx(-0.2, abs=1e-3)


def test_to_laws_is_json_for_the_manifest(noisy_fit: QQTFit) -> None:
    """to_laws() gives {qqt: {form, params, fit_error}} that survives a JSON round trip."""
    laws = json.loads(json.dumps(noisy_fit.to_laws()))
    assert set(laws) == {"qqt"}
    assert laws["qqt"]["form"] == "qqt_goyal2024"
    assert laws["qqt"]["params"]["b[high]"] == pytest.approx(noisy_fit.params["b"][0])
    assert laws["qqt"]["fit_error"] == pytest.approx(noisy_fit.law.rmse_log)


def _curve(pool: str, seen: list[int], err: list[float]) -> pl.DataFrame:
    return pl.DataFrame({"pool": pool, "samples_seen": seen, "error": err})


@pytest.mark.parametrize(
    ("curves", "sizes", "kwargs", "error", "match"),
    [
        (_curve("p", [10, 20], [0.9, 0.8]), {"p": 10}, {}, FitError, "2 point"),
        (_curve("p", [10, 20, 30], [0.9, float("nan"), 0.8]), {"p": 10}, {}, FitError, "NaN"),
        (_curve("p", [10, 20, 30], [0.7, 0.8, 0.9]), {"p": 10}, {}, FitError, "does not decrease"),
        (_curve("p", [10, 20, 20], [0.9, 0.8, 0.7]), {"p": 10}, {}, FitError, "repeats a samples_seen"),
        (_curve("p", [10, 20, 30], [0.9, 0.8, 0.0]), {"p": 10}, {}, FitError, "error > 0"),
        (_curve("p", [10, 20, 30], [0.9, 0.8, 0.7]), {"q": 10}, {}, ConfigError, r"lacks pool\(s\) \['p'\]"),
        (_curve("p", [10, 20, 30], [0.9, 0.8, 0.7]), {"p": 10}, {"d": 0.75}, ConfigError, "'d' parameter"),
        (pl.DataFrame({"pool": ["p"], "error": [0.5]}), {"p": 10}, {}, Exception, "lacks column"),
    ],
)
def test_fit_qqt_rejects_unusable_curves(
    curves: pl.DataFrame, sizes: dict[str, int], kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Too few points, NaN, rising or duplicated curves, missing pools or columns, bad d: clear errors."""
    with pytest.raises(error, match=match):
        fit_qqt(curves, sizes, n_bootstrap=0, **kwargs)


def test_fit_qqt_warns_on_a_curve_that_rises_midway() -> None:
    """An overfitting bump (10% above the running minimum) is fitted with a FitWarning naming the pool."""
    seen = list(range(1000, 9000, 1000))
    err = [0.9, 0.8, 0.72, 0.66, 0.73, 0.64, 0.62, 0.61]
    with pytest.warns(FitWarning, match="pool 'bumpy': error rises"):
        fit_qqt(_curve("bumpy", seen, err), {"bumpy": 2000}, d=0.1, n_bootstrap=0)


def test_predict_and_plan_reject_bad_budgets_and_pools(noisy_fit: QQTFit) -> None:
    """Budgets <= 0, an empty budget list and unknown pools are ConfigErrors."""
    with pytest.raises(ConfigError, match=r"'budget' parameter of QQTFit\.unions"):
        noisy_fit.best_union([1000, 0])
    with pytest.raises(ConfigError, match="at least one budget"):
        noisy_fit.best_union([])
    with pytest.raises(ConfigError, match="unknown: \\['mid'\\]"):
        noisy_fit.predict(["high", "mid"], 1000)
    with pytest.raises(ConfigError, match=r"'budget' parameter of QQTFit\.predict"):
        noisy_fit.predict(["high"], -5)
