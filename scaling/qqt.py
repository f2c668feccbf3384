"""Quality-quantity trade-off (QQT, Goyal et al. 2024): per-pool utility b and repetition half-life tau with
a shared scale a and floor d, unions of pools never trained on, and the union chosen per budget.

Law (official parameterisation, `scaling.laws.qqt_log_excess`): y_k = (a n_1/1e5)^b_1 prod_j (n_j/n_{j-1})^b_j
+ d, the j-th pass of a union with utility b_j = sum_i w_i b_i 2^{-(j-1) w_i^gamma / tau_i}.

Fit (`fit_qqt`), from curves of several seeds per pool (a curve point at k epochs is a run trained for k
epochs, never a checkpoint picked on the eval set) of an error in (0, 1] (an error rate, or a loss divided by
its chance level), with a n / 1e5 >= 1 at every point (the official code's regime: a more negative b is a
better pool at every n):
1. a and d, shared by the pools, by an outer grid search (as the official `finding_a`); for each (a, d), every
   pool's (b, tau) by a grid (b alone for a fixed tau: log(y - d) is b times a known design), the grid point
   of least total squared log error, then a joint L-BFGS polish.
2. tau is identified only by points past the first epoch: a pool without two such points keeps the prior
   tau = R_D* ln 2 ~ 10.7 (Muennighoff et al. 2023) and says so; d is flagged unidentified when refitting
   with d fixed at each grid value changes the objective by no more than the seeds' noise explains.
3. Intervals: the whole fit repeated on seed bootstraps (seeds drawn with replacement), so checkpoints of one
   run are never resampled as if independent; the seed-to-seed spread of the curves is reported beside the
   fit's error.
4. A pool whose data do not help is excluded from every union, with the reason: "harmful" when its mean
   curve ends higher than it starts by more than twice the seeds' noise (1% at least), "flat" when it moves
   less than that or its b interval reaches 0 (in the law's regime an error below 1 + d can neither rise nor
   stay put, so the observed curve decides); unions are ranked by their predicted error at the budget
   (every subset of the usable pools).
The union rule gamma (1: the paper's p x tau; 0: each pool decays by its own passes) is an input; it is chosen
on held-out union runs by `scaling.qqt_union` (the pipeline's `auto`), together with the coverage coefficient
kappa: inside a union U every pool's b_i becomes b_i - kappa g(U), g how much nearer the target the union is
than its nearest pool (`scaling.coverage`), 0 for pools of one distribution, where the law is the paper's.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import polars as pl
import torch

from curate._validation import check_columns, check_interval
from curate.errors import ConfigError, FitError
from scaling.coverage import union_key
from scaling.laws import qqt_log_excess
from scaling.qqt_search import PRIOR_TAU, Theta, depends_on_d, mean_curves, objective, search

__all__ = ["PRIOR_TAU", "QQTFit", "fit_qqt"]
CURVE_COLUMNS = {"pool": pl.String, "samples_seen": int, "error": float}
MAX_UNION_POOLS = 10  # every subset of at most this many usable pools is ranked


@dataclass(frozen=True)
class QQTFit:
    """A fitted QQT: shared a, d; per pool b, tau, size, identifiability and exclusion; bootstrap draws."""

    theta: Theta
    names: tuple[str, ...]
    sizes: tuple[int, ...]
    gamma: float
    tau_identified: tuple[bool, ...]
    d_identified: bool
    rmse_log: float
    seed_spread: float  # median relative seed-to-seed std of the curve points (nan with one seed)
    draws: tuple[Theta, ...] = field(repr=False)
    trend: tuple[float, ...] = ()  # per pool: relative change of its mean curve, first point to last
    model_error: float = 0.0  # log-scale sd of the law's own error (in-sample, or on held-out unions)
    kappa: float = 0.0  # coverage coefficient (0: the paper's union law)
    gaps: dict[str, float] = field(default_factory=dict, repr=False)  # union_key -> coverage gap g

    @property
    def a(self) -> float:
        """The shared scale a."""
        return math.exp(self.theta.log_a)

    @property
    def d(self) -> float:
        """The shared floor d."""
        return self.theta.d

    def b_interval(self, i: int, level: float = 0.9) -> tuple[float, float]:
        """The bootstrap interval of pool i's b (the point value twice without draws)."""
        if not self.draws:
            return self.theta.b[i], self.theta.b[i]
        values = [t.b[i] for t in self.draws]
        tail = 100.0 * (1.0 - level) / 2.0
        return float(np.percentile(values, tail)), float(np.percentile(values, 100.0 - tail))

    def exclusion(self, i: int) -> str | None:
        """Why pool i joins no union (its b interval reaches 0: no gain, or harm), or None."""
        lo, hi = self.b_interval(i)
        noise = max(0.01, 0.0 if math.isnan(self.seed_spread) else 2.0 * self.seed_spread)
        change = self.trend[i] if self.trend else -1.0
        if change > noise:
            return f"harmful: its error rises {change:.1%} with its data; b = {self.theta.b[i]:.3g}"
        if change > -noise or hi >= 0.0:
            return f"flat: its error changes {change:+.1%} with its data; b interval [{lo:.3g}, {hi:.3g}]"
        return None

    @property
    def params(self) -> pl.DataFrame:
        """pool, b, b_lo, b_hi, tau, tau_identified, pool_size, excluded (reason or null)."""
        rows = []
        for i, name in enumerate(self.names):
            lo, hi = self.b_interval(i)
            rows.append(
                {
                    "pool": name,
                    "b": self.theta.b[i],
                    "b_lo": lo,
                    "b_hi": hi,
                    "tau": self.theta.tau[i],
                    "tau_identified": self.tau_identified[i],
                    "pool_size": self.sizes[i],
                    "excluded": self.exclusion(i),
                }
            )
        return pl.DataFrame(rows, schema_overrides={"excluded": pl.String})

    @property
    def usable(self) -> list[str]:
        """Pools that may join a union, best (most negative b) first."""
        ok = [i for i in range(len(self.names)) if self.exclusion(i) is None]
        return [self.names[i] for i in sorted(ok, key=lambda i: (self.theta.b[i], self.names[i]))]

    def _index(self, pools: Sequence[str]) -> list[int]:
        unknown = [p for p in pools if p not in self.names]
        if not pools or unknown or len(set(pools)) != len(pools):
            raise ConfigError(
                f"The 'pools' of QQTFit must be distinct names among {list(self.names)}; got {list(pools)}."
            )
        return [self.names.index(p) for p in pools]

    def _gap(self, rows: Sequence[int]) -> float:
        """g(U) of the union of pools `rows` (0 for one pool, or a union without a measured gap)."""
        return self.gaps.get(union_key(self.names[i] for i in rows), 0.0) if len(rows) > 1 else 0.0

    def bonus(self, rows: Sequence[int]) -> float:
        """kappa g(U) of the union of pools `rows`."""
        return self.kappa * self._gap(rows)

    def _predict(
        self, theta: Theta, rows: list[int], n: np.ndarray, bonus: np.ndarray | None = None
    ) -> np.ndarray:
        k = len(rows)
        excess = qqt_log_excess(
            torch.as_tensor(n, dtype=torch.float64),
            log_a=torch.tensor(theta.log_a, dtype=torch.float64),
            b=torch.tensor([[theta.b[i] for i in rows]], dtype=torch.float64).expand(len(n), k),
            tau=torch.tensor([[theta.tau[i] for i in rows]], dtype=torch.float64).expand(len(n), k),
            pool_size=torch.tensor([[float(self.sizes[i]) for i in rows]], dtype=torch.float64).expand(
                len(n), k
            ),
            gamma=self.gamma,
            bonus=self.bonus(rows) if bonus is None else torch.as_tensor(bonus, dtype=torch.float64),
        )
        return np.exp(np.clip(excess.numpy(), -50.0, 50.0)) + theta.d

    def predict(self, pools: Sequence[str], samples_seen: float) -> float:
        """Predicted error of training on the union of `pools` for `samples_seen` samples."""
        check_interval("samples_seen", samples_seen, 0, None, caller="QQTFit.predict", closed="neither")
        return float(self._predict(self.theta, self._index(pools), np.array([float(samples_seen)]))[0])

    def predict_kappas(
        self, pools: Sequence[str], samples_seen: np.ndarray, kappas: np.ndarray
    ) -> np.ndarray:
        """Predicted errors of the union of `pools` (kappas x points) under each coverage coefficient."""
        rows = self._index(pools)
        gap = self._gap(rows)
        n = np.tile(np.asarray(samples_seen, dtype=np.float64), len(kappas))
        bonus = np.repeat(np.asarray(kappas, dtype=np.float64) * gap, len(samples_seen))
        return self._predict(self.theta, rows, n, bonus).reshape(len(kappas), len(samples_seen))

    def predict_interval(
        self, pools: Sequence[str], samples_seen: float, *, level: float = 0.9
    ) -> tuple[float, float, float]:
        """(prediction, lo, hi): the error and its seed-bootstrap `level` interval (NaN bounds: no draws)."""
        check_interval("level", level, 0, 1, caller="QQTFit.predict_interval", closed="neither")
        mean = self.predict(pools, samples_seen)
        rows, n = self._index(pools), np.array([float(samples_seen)])
        draws = [float(self._predict(t, rows, n)[0]) for t in self.draws]
        if not draws:
            return mean, math.nan, math.nan
        tail = 100.0 * (1.0 - level) / 2.0
        lo, hi = float(np.percentile(draws, tail)), float(np.percentile(draws, 100.0 - tail))
        widen = math.exp(_z(level) * self.model_error)  # the law's own error beside the seeds' spread
        return mean, min(lo, mean) / widen, max(hi, mean) * widen

    def with_pool_sizes(self, pool_sizes: Mapping[str, int]) -> QQTFit:
        """The same laws for pools of other sizes (proxy buckets fitted on a sample, planned at full size)."""
        missing = [p for p in self.names if p not in pool_sizes]
        if missing:
            raise ConfigError(f"QQTFit.with_pool_sizes lacks pool(s) {missing}; it has {sorted(pool_sizes)}.")
        for p in self.names:
            check_interval(f"pool_sizes[{p!r}]", pool_sizes[p], 1, None, caller="QQTFit.with_pool_sizes")
        return replace(self, sizes=tuple(int(pool_sizes[p]) for p in self.names))

    def with_model_error(self, error: float) -> QQTFit:
        """The same fit with intervals widened by a log-scale model error (e.g. on held-out unions)."""
        check_interval("error", error, 0, None, caller="QQTFit.with_model_error")
        return replace(self, model_error=float(error))

    def with_gamma(self, gamma: float) -> QQTFit:
        """The same fit under another union rule."""
        check_interval("gamma", gamma, 0, 1, caller="QQTFit.with_gamma")
        return replace(self, gamma=float(gamma))

    def with_coverage(self, gaps: Mapping[str, float], kappa: float | None = None) -> QQTFit:
        """The same fit with the unions' coverage gaps (by `union_key`) and, if given, coefficient kappa."""
        kappa = self.kappa if kappa is None else float(kappa)
        check_interval("kappa", kappa, 0, None, caller="QQTFit.with_coverage")
        if any(not math.isfinite(g) or g < 0 for g in gaps.values()):
            raise ConfigError(f"QQTFit.with_coverage: gaps must be finite and >= 0; got {dict(gaps)}.")
        return replace(self, gaps=dict(gaps), kappa=kappa)

    def unions(self, budgets: Sequence[int], *, level: float = 0.9) -> pl.DataFrame:
        """Every union of usable pools at each budget: budget, n_pools, pools, error, lo, hi."""
        if not budgets:
            raise ConfigError("The 'budgets' parameter of QQTFit.unions() must hold at least one budget.")
        usable = self.usable[:MAX_UNION_POOLS]
        subsets = [list(c) for m in range(1, len(usable) + 1) for c in itertools.combinations(usable, m)]
        rows = []
        for budget, members in itertools.product(budgets, subsets):
            mean, lo, hi = self.predict_interval(members, int(budget), level=level)
            rows.append(
                {
                    "budget": int(budget),
                    "n_pools": len(members),
                    "pools": members,
                    "error": mean,
                    "lo": lo,
                    "hi": hi,
                }
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
        """Per budget, the union of usable pools of lowest predicted error (ties: fewer pools)."""
        if not self.usable:
            raise FitError(f"no pool can join a union: every one is flat or harmful ({list(self.names)}).")
        table = self.unions(budgets, level=level)
        return table.sort("budget", "error", "n_pools").group_by("budget", maintain_order=True).first()

    def to_laws(self) -> dict[str, float]:
        """The fitted parameters as the manifest's law params (a, d, gamma, b[...], tau[...])."""
        out = {"a": self.a, "d": self.d, "gamma": self.gamma, "kappa": self.kappa}
        for i, name in enumerate(self.names):
            out[f"b[{name}]"] = self.theta.b[i]
            out[f"tau[{name}]"] = self.theta.tau[i]
        return out


def _check_curves(curves: pl.DataFrame, pool_sizes: Mapping[str, int]) -> pl.DataFrame:
    check_columns(curves, CURVE_COLUMNS, what="fit_qqt curves")
    df = curves if "seed" in curves.columns else curves.with_columns(seed=pl.lit(0))
    df = df.select("pool", "seed", pl.col("samples_seen").cast(pl.Float64), pl.col("error").cast(pl.Float64))
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
    if (df["error"] > 1).any():
        raise FitError(
            "fit_qqt curves need error <= 1 at every point (the law's regime): pass error rates, or losses "
            f"divided by the chance-level loss; got max {float(df['error'].max()):.4g}."  # type: ignore[arg-type]
        )
    for (pool,), part in df.group_by("pool"):
        if part["samples_seen"].n_unique() < 3:
            raise FitError(
                f"fit_qqt pool {pool!r} has {part['samples_seen'].n_unique()} point(s); needs at least 3."
            )
    return df


def _seed_spread(df: pl.DataFrame) -> float:
    per_point = df.group_by("pool", "samples_seen").agg(rel=pl.col("error").std() / pl.col("error").mean())
    values = per_point["rel"].drop_nulls().drop_nans()
    return float(values.median()) if len(values) else math.nan  # type: ignore[arg-type]


def fit_qqt(
    curves: pl.DataFrame,
    pool_sizes: Mapping[str, int],
    *,
    d: float | None = None,
    tau: float | None = None,
    gamma: float = 0.0,
    n_bootstrap: int = 30,
    seed: int = 0,
    polish: bool = True,
) -> QQTFit:
    """Fit QQT to curves (pool, [seed,] samples_seen, error) of pools of `pool_sizes` (see the module doc).
    `d`/`tau` fix the floor / every half-life; `gamma` is the union rule the fit will predict unions with."""
    check_interval("n_bootstrap", n_bootstrap, 0, None, caller="fit_qqt")
    check_interval("gamma", gamma, 0, 1, caller="fit_qqt")
    df = _check_curves(curves, pool_sizes)
    pools = mean_curves(df, pool_sizes)
    if d is not None and not 0 <= d < min(float(y.min()) for y in pools.y):
        raise ConfigError(f"The 'd' parameter of fit_qqt() must be in [0, min error). Got {d!r}.")
    theta = search(pools, d=d, tau=tau, polish=polish)
    spread = _seed_spread(df)
    d_identified = d is not None or depends_on_d(pools, tau, noise=0.0 if math.isnan(spread) else spread)
    seeds = sorted(df["seed"].unique().to_list())
    rng = np.random.default_rng(seed)
    draws = []
    if len(seeds) > 1:
        for _ in range(n_bootstrap):
            pick = rng.choice(seeds, size=len(seeds), replace=True)
            sample = pl.concat([df.filter(pl.col("seed") == s) for s in pick])
            draws.append(search(mean_curves(sample, pool_sizes), d=d, tau=tau))
    n_points = sum(len(y) for y in pools.y)
    return QQTFit(
        theta=theta,
        names=pools.names,
        sizes=pools.size,
        gamma=gamma,
        tau_identified=tuple(tau is None and pools.epochs_past_one(i) >= 2 for i in range(len(pools.names))),
        d_identified=d_identified,
        rmse_log=math.sqrt(objective(pools, theta) / n_points),
        seed_spread=spread,
        draws=tuple(draws),
        trend=tuple(float(y[-1] / y[0] - 1.0) for y in pools.y),
        model_error=math.sqrt(objective(pools, theta) / n_points),
    )


def _z(level: float) -> float:
    """The two-sided normal quantile of `level`."""
    from scipy.stats import norm

    return float(norm.ppf(0.5 + level / 2.0))
