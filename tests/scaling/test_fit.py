"""Robust law fitter: Chinchilla replication table, robustness to outliers, intervals, warnings, bad input."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from curate.errors import FitError, FitWarning
from scaling.fit import effective_data_form, fit_chinchilla, fit_law, power_law_form
from scaling.laws import Chinchilla, EffectiveData, PowerLaw

SHARED = Path(__file__).parents[2].parent / "shared"
CHINCHILLA_CSV = SHARED / "reference" / "chinchilla_svg_extracted_data.csv"


@pytest.fixture(scope="module")
def chinchilla_points() -> pl.DataFrame:
    """The 245 Epoch AI points less the five highest losses (Besiroglu et al. 2024), with D = FLOP / 6N."""
    if not CHINCHILLA_CSV.is_file():
        pytest.fail(
            f"reference data missing: expected {CHINCHILLA_CSV} (shared/ next to the repository root)"
        )
    df = pl.read_csv(CHINCHILLA_CSV)
    assert df.height == 245
    df = df.sort("loss").head(240)
    return df.select(
        pl.col("Model Size").alias("n"),
        (pl.col("Training FLOP") / (6 * pl.col("Model Size"))).alias("d"),
        pl.col("loss"),
    )


def test_chinchilla_fit_recovers_published_replication(chinchilla_points: pl.DataFrame) -> None:
    """E 1.82, A 482, B 2085, alpha 0.348, beta 0.366 (exponents to 0.02, E to 0.05), with intervals."""
    df = chinchilla_points
    fit = fit_chinchilla(
        df["n"].to_numpy(), df["d"].to_numpy(), df["loss"].to_numpy(), n_bootstrap=20, seed=0
    )
    p = fit.params
    assert p["E"] == pytest.approx(1.82, abs=0.05)
    assert p["alpha"] == pytest.approx(0.348, abs=0.02)
    assert p["beta"] == pytest.approx(0.366, abs=0.02)
    assert p["A"] == pytest.approx(482, rel=0.25)
    assert p["B"] == pytest.approx(2085, rel=0.25)
    assert fit.converged and fit.boot.shape == (20, 5)
    ci = fit.intervals(level=0.9)
    assert ci["param"].to_list() == ["E", "A", "B", "alpha", "beta"]
    assert ((ci["lo"] <= ci["value"]) & (ci["value"] <= ci["hi"]) & (ci["lo"] < ci["hi"])).all()
    law = Chinchilla(**{k: p[k] for k in ("E", "A", "B", "alpha", "beta")})
    pred = fit.predict(df.select("n", "d").to_numpy()[:5])
    assert pred["prediction"].to_numpy() == pytest.approx(law(df["n"][:5].to_numpy(), df["d"][:5].to_numpy()))
    assert fit.rmse_log < 0.05
    json.dumps(fit.params)


def test_power_law_fit_ignores_gross_outliers() -> None:
    """Huber on log values: two points 3x off do not move a, b, d fitted on 40 points with 0.5% noise."""
    rng = np.random.default_rng(1)
    truth = PowerLaw(a=8.0, b=-0.35, d=0.4)
    n = np.geomspace(10, 1e6, 40)
    y = truth(n) * (1 + 0.005 * rng.standard_normal(40))
    y[[5, 20]] *= 3.0
    fit = fit_law(n[:, None], y, form=power_law_form(n, y), n_bootstrap=10, seed=0)
    assert fit.params["b"] == pytest.approx(-0.35, abs=0.01)
    assert fit.params["d"] == pytest.approx(0.4, rel=0.03)
    band = fit.predict(np.array([[1e7]]))
    assert band["lo"][0] <= band["prediction"][0] <= band["hi"][0]
    assert band["prediction"][0] == pytest.approx(truth(1e7)[0], rel=0.01)


def test_effective_data_fit_recovers_r_star() -> None:
    """Muennighoff form: losses from a known law with repeated data give back R* within 15%."""
    rng = np.random.default_rng(2)
    n = np.repeat([1e8, 4e8, 1.6e9], 12)
    unique = np.tile(np.repeat([1e9, 4e9], 6), 3)
    tokens = unique * np.tile([0.5, 1, 2, 4, 16, 64], 6)
    law = Chinchilla(E=1.8, A=400.0, B=1500.0, alpha=0.34, beta=0.3)
    loss = law(n, EffectiveData(r_star=6.0)(tokens, unique)) * (1 + 0.002 * rng.standard_normal(n.size))
    fit = fit_law(
        np.column_stack([n, tokens, unique]), loss, form=effective_data_form(), n_starts=4, n_bootstrap=0
    )
    assert fit.params["r_star"] == pytest.approx(6.0, rel=0.15)


def test_fit_warns_when_a_parameter_sits_on_its_bound() -> None:
    """A bound the optimum lies beyond gives FitWarning, and the bounded result is still returned."""
    n = np.geomspace(10, 1e5, 20)
    y = PowerLaw(a=2.0, b=-0.2, d=0.1)(n)
    form = dataclasses.replace(power_law_form(n, y), bounds=((None, None), (-2.0, -0.5), (None, None)))
    with pytest.warns(FitWarning, match="parameter b = -0.5 sits on its bound"):
        fit = fit_law(n[:, None], y, form=form, n_bootstrap=0)
    assert fit.params["b"] == pytest.approx(-0.5)


@pytest.mark.parametrize(
    ("n", "y", "match"),
    [
        ([1.0, 2.0], [1.0, 0.5], "at least 3 points"),
        ([1.0, 2.0, 3.0], [1.0, math.nan, 0.5], "finite"),
        ([1.0, 2.0, 3.0], [1.0, 0.0, 0.5], "must be > 0"),
    ],
)
def test_fit_rejects_unusable_points(n: list[float], y: list[float], match: str) -> None:
    """Too few points, NaN and non-positive values raise FitError before any fitting."""
    x, ys = np.array(n)[:, None], np.array(y)
    with pytest.raises(FitError, match=match):
        fit_law(x, ys, form=power_law_form(np.array(n), np.abs(np.nan_to_num(ys)) + 1), n_bootstrap=0)


def test_fit_chinchilla_rejects_nonpositive_sizes() -> None:
    """Model sizes or token counts <= 0 raise FitError naming them."""
    with pytest.raises(FitError, match="n_params and n_tokens must be > 0"):
        fit_chinchilla(np.array([1e6, 0.0, 1e7]), np.array([1e9, 1e9, 1e9]), np.array([3.0, 2.9, 2.8]))
