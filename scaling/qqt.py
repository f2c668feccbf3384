"""Quality-quantity trade-off (QQT, Goyal et al. 2024): fit per-pool utility b and repetition half-life tau
from multi-epoch curves, predict unions of pools never trained on, and choose the union per compute budget.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import torch

from curate._validation import check_columns, check_interval
from curate.errors import ConfigError, FitError, FitWarning
from scaling.fit import FittedLaw, LawForm, fit_law
from scaling.laws import QQT_NORMALIZER, EffectiveData, QQTLaw, qqt_log_excess

PRIOR_TAU = EffectiveData().half_life  # Muennighoff et al. 2023: tau = R_D* ln 2 ~ 10.7
PRIOR_WEIGHT = 0.5  # per pool, on (log tau - log PRIOR_TAU)^2, against a mean Huber/delta of ~10 at 1% noise
RISE_TOLERANCE = 0.05  # relative rise above a curve's running minimum that triggers FitWarning
CURVE_COLUMNS = {"pool": pl.String, "samples_seen": int, "error": float}
_B_BOUNDS = (-3.0, -1e-4)
_LOG_TAU_BOUNDS = (math.log(0.05), math.log(1000.0))


@dataclass(frozen=True, slots=True, kw_only=True)
class QQTFit:
    """Shared a, d and per-pool (b, tau) with bootstrap refits; predicts any union of the fitted pools."""

    a: float
    d: float
    params: pl.DataFrame  # pool, b, tau, pool_size
    law: FittedLaw = field(repr=False)

    @property
    def pools(self) -> list[str]:
        """Pool names, best (most negative b) first."""
        return self.params.sort("b", "pool")["pool"].to_list()

    def law_for(self, pools: Sequence[str], *, theta: np.ndarray | None = None) -> QQTLaw:
        """The QQTLaw of the union of `pools` (at the fitted optimum, or at bootstrap refit `theta`)."""
        names = self.params["pool"].to_list()
        unknown = [p for p in pools if p not in names]
        if not pools or unknown or len(set(pools)) != len(pools):
            raise ConfigError(
                f"The 'pools' of QQTFit must be distinct names among {names}; got {list(pools)} "
                f"(unknown: {unknown})."
            )
        nat = self.law.form.natural(self.law.theta if theta is None else theta)
        rows = [names.index(p) for p in pools]
        sizes = self.params["pool_size"].to_list()
        return QQTLaw(
            a=nat["a"],
            d=nat["d"],
            b=tuple(nat[f"b[{names[i]}]"] for i in rows),
            tau=tuple(nat[f"tau[{names[i]}]"] for i in rows),
            pool_size=tuple(int(sizes[i]) for i in rows),
        )

    def with_pool_sizes(self, pool_sizes: Mapping[str, int]) -> QQTFit:
        """The same laws for pools of other sizes (proxy buckets fitted on a sample, planned at full size)."""
        names = self.params["pool"].to_list()
        missing = [p for p in names if p not in pool_sizes]
        if missing:
            raise ConfigError(f"QQTFit.with_pool_sizes lacks pool(s) {missing}; it has {sorted(pool_sizes)}.")
        for pool in names:
            check_interval(
                f"pool_sizes[{pool!r}]", pool_sizes[pool], 1, None, caller="QQTFit.with_pool_sizes"
            )
        sizes = pl.Series("pool_size", [int(pool_sizes[p]) for p in names], dtype=pl.Int64)
        return QQTFit(a=self.a, d=self.d, params=self.params.with_columns(sizes), law=self.law)

    def predict(self, pools: Sequence[str], samples_seen: int) -> float:
        """Predicted error of training on the union of `pools` for `samples_seen` samples."""
        _check_budgets([samples_seen], caller="QQTFit.predict")
        return float(self.law_for(pools)(samples_seen)[0])

    def predict_interval(
        self, pools: Sequence[str], samples_seen: int, *, level: float = 0.9
    ) -> tuple[float, float, float]:
        """(prediction, lo, hi): the error and its bootstrap `level` interval (NaN bounds without refits)."""
        check_interval("level", level, 0, 1, caller="QQTFit.predict_interval", closed="neither")
        mean = self.predict(pools, samples_seen)
        draws = [float(self.law_for(pools, theta=t)(samples_seen)[0]) for t in self.law.boot]
        if not draws:
            return mean, math.nan, math.nan
        tail = 100.0 * (1.0 - level) / 2.0
        lo, hi = float(np.percentile(draws, tail)), float(np.percentile(draws, 100.0 - tail))
        return mean, min(lo, mean), max(hi, mean)  # a biased bootstrap band still contains the estimate

    def unions(self, budgets: Sequence[int], *, level: float = 0.9) -> pl.DataFrame:
        """Each top-m union (m = 1..pools, by b) at each budget: budget, n_pools, pools, error, lo, hi."""
        _check_budgets(budgets, caller="QQTFit.unions")
        ranked = self.pools
        rows = []
        for budget, m in itertools.product(budgets, range(1, len(ranked) + 1)):
            mean, lo, hi = self.predict_interval(ranked[:m], int(budget), level=level)
            rows.append(
                {"budget": int(budget), "n_pools": m, "pools": ranked[:m], "error": mean, "lo": lo, "hi": hi}
            )
        return pl.DataFrame(
            rows,
            schema={
                "budget": pl.Int64,
                "n_pools": pl.Int64,
                "pools": pl.List(pl.String),
                "error": pl.Float64,
                "lo": pl.Float64,
                "hi": pl.Float64,
            },
        )

    def best_union(self, budgets: Sequence[int], *, level: float = 0.9) -> pl.DataFrame:
        """Per budget, the top-m union of lowest predicted error (ties: fewer pools), with its interval."""
        table = self.unions(budgets, level=level)
        return table.sort("budget", "error", "n_pools").group_by("budget", maintain_order=True).first()

    def to_laws(self) -> dict[str, dict[str, object]]:
        """The fitted law as the manifest's `laws` entry: {"qqt": {form, params, fit_error}} (JSON-able)."""
        return {
            "qqt": {
                "form": "qqt_goyal2024",
                "params": dict(self.law.params),
                "fit_error": self.law.rmse_log,
            }
        }


def _check_budgets(budgets: Sequence[float], *, caller: str) -> None:
    if len(budgets) == 0:
        raise ConfigError(f"The 'budgets' parameter of {caller}() must hold at least one budget; got none.")
    for b in budgets:
        check_interval("budget", b, 0, None, caller=caller, closed="neither")


def _check_curves(curves: pl.DataFrame, pool_sizes: Mapping[str, int], d: float | None) -> pl.DataFrame:
    """Sorted, validated curves; FitError on unusable curves, FitWarning where error rises."""
    check_columns(curves, CURVE_COLUMNS, what="fit_qqt curves")
    df = curves.select("pool", pl.col("samples_seen").cast(pl.Float64), pl.col("error").cast(pl.Float64))
    df = df.sort("pool", "samples_seen")
    if df.height == 0:
        raise FitError("fit_qqt curves are empty; expected several (samples_seen, error) points per pool.")
    missing = sorted(set(df["pool"].unique()) - set(pool_sizes))
    if missing:
        raise ConfigError(f"fit_qqt pool_sizes lacks pool(s) {missing}; it has {sorted(pool_sizes)}.")
    for pool, size in pool_sizes.items():
        check_interval(f"pool_sizes[{pool!r}]", size, 1, None, caller="fit_qqt")
    if not (df["error"].is_finite().all() and df["samples_seen"].is_finite().all()):
        raise FitError("fit_qqt curves hold NaN or infinite error or samples_seen values.")
    if (df["error"] <= 0).any() or (df["samples_seen"] <= 0).any():
        raise FitError("fit_qqt curves need error > 0 and samples_seen > 0 at every point.")
    floor = float(df["error"].to_numpy().min())
    if d is not None and not 0 <= d < floor:
        raise ConfigError(
            f"The 'd' parameter of fit_qqt() must be in [0, {floor:.4g}) (min error). Got {d!r}."
        )
    for (pool,), part in df.group_by("pool", maintain_order=True):
        err, seen = part["error"].to_numpy(), part["samples_seen"].to_numpy()
        if part.height < 3:
            raise FitError(f"fit_qqt pool {pool!r} has {part.height} point(s); needs at least 3.")
        if np.unique(seen).size != seen.size:
            raise FitError(f"fit_qqt pool {pool!r} repeats a samples_seen value; expected one point each.")
        if err[-1] >= err[0]:
            raise FitError(
                f"fit_qqt pool {pool!r}: error does not decrease ({err[0]:.4g} at {seen[0]:.0f} samples to "
                f"{err[-1]:.4g} at {seen[-1]:.0f}); QQT needs learning curves."
            )
        rise = err / np.minimum.accumulate(err) - 1.0
        if rise.max() > RISE_TOLERANCE:
            at = int(np.argmax(rise))
            warnings.warn(
                f"fit_qqt pool {pool!r}: error rises {rise[at]:.1%} above its running minimum at "
                f"{seen[at]:.0f} samples; QQT assumes non-increasing error (fitting anyway).",
                FitWarning,
                stacklevel=3,
            )
    return df


def _qqt_form(names: list[str], epochs_seen: np.ndarray, df: pl.DataFrame, d: float | None) -> LawForm:
    """QQT in fitting space: theta = (log a, [log d], b_1..b_P, log tau_1..log tau_P); x = (pool, n, |S|)."""
    p = len(names)
    off = 1 if d is not None else 2
    fixed_log_d = torch.tensor(math.log(d) if d else -60.0, dtype=torch.float64)
    weak = torch.as_tensor(epochs_seen <= 2.0)  # pools whose tau the data barely see get the prior

    def log_predict(theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        idx = x[:, 0].long()
        log_d = fixed_log_d if d is not None else theta[1]
        excess = qqt_log_excess(
            x[:, 1],
            log_a=theta[0],
            b=theta[off : off + p][idx][:, None],
            tau=torch.exp(theta[off + p : off + 2 * p][idx])[:, None],
            pool_size=x[:, 2:3],
        )
        return torch.logaddexp(excess, log_d)

    def penalty(theta: torch.Tensor) -> torch.Tensor:
        gap = theta[off + p : off + 2 * p] - math.log(PRIOR_TAU)
        return PRIOR_WEIGHT * (gap[weak] ** 2).sum()

    def natural(theta: np.ndarray) -> dict[str, float]:
        out = {"a": math.exp(theta[0]), "d": d if d is not None else math.exp(theta[1])}
        for i, name in enumerate(names):
            out[f"b[{name}]"] = float(theta[off + i])
            out[f"tau[{name}]"] = math.exp(theta[off + p + i])
        return out

    # starts: one (b, tau, d) for all pools; log a puts the curve through the median first-epoch point
    first = df.filter(pl.col("samples_seen") <= pl.col("pool_size"))
    first = first if first.height else df
    n_mid = float(np.median(first["samples_seen"].to_numpy()))
    y_mid = float(np.median(first["error"].to_numpy()))
    y_min = float(df["error"].to_numpy().min())
    starts = []
    d_starts = [d] if d is not None else [0.05 * y_min, 0.5 * y_min, 0.9 * y_min]
    for b, tau, d0 in itertools.product((-0.5, -0.2, -0.08, -0.03), (1.0, 4.0, PRIOR_TAU, 40.0), d_starts):
        log_a = math.log(max(y_mid - d0, 1e-9)) / b - math.log(n_mid / QQT_NORMALIZER)
        head = [log_a] if d is not None else [log_a, math.log(d0)]
        starts.append(head + [b] * p + [math.log(tau)] * p)
    log_d_hi = math.log(y_min) - 1e-9
    bounds = (
        ((-60.0, 60.0),)
        + (() if d is not None else ((None, log_d_hi),))
        + (_B_BOUNDS,) * p
        + (_LOG_TAU_BOUNDS,) * p
    )
    return LawForm(
        name="qqt",
        param_names=("log_a",)
        + (() if d is not None else ("log_d",))
        + tuple(f"b[{n}]" for n in names)
        + tuple(f"log_tau[{n}]" for n in names),
        log_predict=log_predict,
        starts=np.array(starts),
        natural=natural,
        bounds=bounds,
        penalty=penalty,
    )


def fit_qqt(
    curves: pl.DataFrame,
    pool_sizes: Mapping[str, int],
    *,
    d: float | None = None,
    n_bootstrap: int = 50,
    seed: int = 0,
) -> QQTFit:
    """Fit QQT (Goyal et al. 2024) to multi-epoch curves (pool, samples_seen, error): shared a and d,
    per-pool b and tau; grid then bounded L-BFGS; Muennighoff tau ~ 10.7 as weak prior where <= 2 epochs."""
    df = _check_curves(curves, pool_sizes, d)
    names = sorted(df["pool"].unique().to_list())
    sizes = np.array([pool_sizes[n] for n in names], dtype=np.float64)
    df = df.with_columns(
        pl.col("pool").replace_strict(names, list(range(len(names))), return_dtype=pl.Int64).alias("idx"),
        pl.col("pool").replace_strict(names, sizes.tolist(), return_dtype=pl.Float64).alias("pool_size"),
    )
    epochs_seen = df.group_by("idx").agg((pl.col("samples_seen") / pl.col("pool_size")).max()).sort("idx")
    form = _qqt_form(names, epochs_seen["samples_seen"].to_numpy(), df, d)
    x = df.select("idx", "samples_seen", "pool_size").to_numpy().astype(np.float64)
    law = fit_law(x, df["error"].to_numpy(), form=form, n_starts=8, n_bootstrap=n_bootstrap, seed=seed)
    nat = law.params
    params = pl.DataFrame(
        {
            "pool": names,
            "b": [nat[f"b[{n}]"] for n in names],
            "tau": [nat[f"tau[{n}]"] for n in names],
            "pool_size": [int(pool_sizes[n]) for n in names],
        }
    )
    return QQTFit(a=nat["a"], d=nat["d"], params=params, law=law)
