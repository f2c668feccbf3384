"""Mixture laws: a lower-is-better loss as a function of source weights p (runs x sources, on the simplex).

One API, `fit_mixture_law(p, metric) -> MixtureLaw`, for the pipeline and for users who already have runs:
  dml         Data Mixing Law (Ye et al. 2024, eq. 1): L = c + k·exp(Σ_j t_j p_j) with t_m = 0 (Σp = 1 makes
              one t redundant); a 2-D metric (one column per target domain) gets one law per column, summed
              (eq. 2), whose optimum can be interior.
  quadratic   Scheffé's quadratic mixture model: L = c + Σ_{i<m} b_i p_i + Σ_{i<j} b_ij p_i p_j (ridge).
  regression  gradient-boosted trees on p (sklearn), as RegMix (Liu et al. 2024) does with LightGBM.
  projektor   Projektor stage 1 (Kang et al. 2023) without its collinear columns (Σ_i p_i·OT = OT, Σp_i = 1):
              L = c + Σ_{i<m} c1_i p_i + Σ_i c2_i p_i² + Σ_i (b1_i p_i + b2_i p_i²)·OT (ridge); OT of an
              unseen mixture from a quadratic model of the runs' OT values unless given.
  auto        the method with the least cross-validated MAE among those with >= 3 mixtures per parameter.
Ridge penalties come from leave-one-out error on the training mixtures only (scaling.ridge). Rows with the
same p are repeats: they are averaged, and their spread is the law's `noise`. Cross-validation leaves out
whole mixtures (10 seeded folds; one at a time below 10 mixtures).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
from scipy.optimize import least_squares, minimize
from scipy.stats import spearmanr

from curate._validation import check_option
from curate.errors import FitError, FitWarning, InputError
from scaling.ridge import RidgeFit, fit_ridge
from scaling.simplex import project_simplex, simplex_grid

LawMethod = Literal["auto", "dml", "quadratic", "regression", "projektor"]
METHODS: tuple[LawMethod, ...] = ("dml", "quadratic", "regression", "projektor")
WEIGHT_TOLERANCE = 1e-6
PER_PARAM = 3  # mixtures per parameter below which a method is poorly identified
REGRESSION_MIN = 30  # mixtures below which boosted trees are not tried by "auto"
FOLDS = 10  # cross-validation folds of whole mixtures (leave-one-out below 10 mixtures)


def mixture_counts(p: Sequence[float] | np.ndarray, n: int) -> np.ndarray:
    """Integer per-source counts summing to `n`, closest to n·p (largest remainder, ties to the first)."""
    pv = np.asarray(p, dtype=np.float64)
    raw = pv * n
    counts = np.floor(raw).astype(np.int64)
    short = n - int(counts.sum())
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[:short]] += 1
    return counts


def n_params(method: LawMethod, m: int, *, columns: int = 1) -> int:
    """Free parameters of `method` over m sources (dml: per metric column); 0 for the trees."""
    return {"dml": (m + 1) * columns, "quadratic": m * (m + 1) // 2, "projektor": 4 * m}.get(method, 0)


class _Model(Protocol):
    @property
    def smooth(self) -> bool: ...

    def predict(self, p: np.ndarray, ot: np.ndarray | None) -> np.ndarray: ...

    def params(self, names: Sequence[str]) -> dict[str, float]: ...


def _quadratic_features(p: np.ndarray) -> np.ndarray:
    i, j = np.triu_indices(p.shape[1], k=1)
    return np.hstack([p[:, :-1], p[:, i] * p[:, j]])


def _projektor_features(p: np.ndarray, ot: np.ndarray) -> np.ndarray:
    d = ot.reshape(-1, 1)
    return np.hstack([p[:, :-1], p**2, p * d, p**2 * d])


def _named(fit: RidgeFit, names: list[str]) -> dict[str, float]:
    return {"intercept": fit.intercept, **{n: float(c) for n, c in zip(names, fit.coef, strict=True)}}


@dataclass(frozen=True)
class _Quadratic:
    fit: RidgeFit
    smooth: bool = True

    def predict(self, p: np.ndarray, ot: np.ndarray | None) -> np.ndarray:
        return self.fit.predict(_quadratic_features(p))

    def params(self, names: Sequence[str]) -> dict[str, float]:
        i, j = np.triu_indices(len(names), k=1)
        pairs = [f"{names[int(a)]}*{names[int(b)]}" for a, b in zip(i, j, strict=True)]
        return _named(self.fit, [*names[:-1], *pairs])


@dataclass(frozen=True)
class _Projektor:
    fit: RidgeFit
    ot_model: _Quadratic  # OT(p) of the runs, for mixtures whose OT is not given
    smooth: bool = True

    def predict(self, p: np.ndarray, ot: np.ndarray | None) -> np.ndarray:
        d = self.ot_model.predict(p, None) if ot is None else np.asarray(ot, dtype=np.float64)
        return self.fit.predict(_projektor_features(p, d))

    def params(self, names: Sequence[str]) -> dict[str, float]:
        sq = [f"{n}^2" for n in names]
        return _named(self.fit, [*names[:-1], *sq, *(f"{n}*ot" for n in names), *(f"{n}*ot" for n in sq)])


@dataclass(frozen=True)
class _DML:
    theta: np.ndarray  # (columns, m + 1): c, k, t_1..t_{m-1} per metric column
    smooth: bool = True

    def predict(self, p: np.ndarray, ot: np.ndarray | None) -> np.ndarray:
        c, k, t = self.theta[:, 0], self.theta[:, 1], self.theta[:, 2:]
        return (c + k * np.exp(np.clip(p[:, :-1] @ t.T, -50, 50))).sum(axis=1)

    def params(self, names: Sequence[str]) -> dict[str, float]:
        out: dict[str, float] = {}
        for d, row in enumerate(self.theta):
            tag = f"[{d}]" if len(self.theta) > 1 else ""
            keys = [f"c{tag}", f"k{tag}", *(f"t{tag}.{n}" for n in names[:-1])]
            out.update({key: float(v) for key, v in zip(keys, row, strict=True)})
        return out


@dataclass(frozen=True)
class _Trees:
    model: object
    smooth: bool = False

    def predict(self, p: np.ndarray, ot: np.ndarray | None) -> np.ndarray:
        return np.asarray(self.model.predict(p), dtype=np.float64)  # type: ignore[attr-defined]

    def params(self, names: Sequence[str]) -> dict[str, float]:
        return {"trees": float(self.model.n_estimators_)}  # type: ignore[attr-defined]


def _dml_column(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    """One DML column by least squares from starts linearised at several floors c (log(±(y − c)) ~ t·p)."""
    q = p[:, :-1]
    design = np.hstack([np.ones((len(y), 1)), q])
    spread = float(np.ptp(y)) or 1.0

    def resid(theta: np.ndarray) -> np.ndarray:
        return theta[0] + theta[1] * np.exp(np.clip(q @ theta[2:], -50, 50)) - y

    def jac(theta: np.ndarray) -> np.ndarray:
        e = np.exp(np.clip(q @ theta[2:], -50, 50))
        return np.column_stack([np.ones_like(e), e, theta[1] * e[:, None] * q])

    solver = "lm" if len(y) >= q.shape[1] + 2 else "trf"
    best = None
    for sign in (1.0, -1.0):
        for frac in (0.05, 0.5, 3.0):
            c0 = float(y.min() - frac * spread) if sign > 0 else float(y.max() + frac * spread)
            lin, *_ = np.linalg.lstsq(design, np.log(sign * (y - c0)), rcond=None)
            x0 = np.concatenate([[c0, sign * np.exp(lin[0])], lin[1:]])
            fit = least_squares(resid, x0, jac=jac, method=solver, max_nfev=400)
            if best is None or fit.cost < best.cost:
                best = fit
    return np.asarray(best.x if best is not None else x0)


def _fit(method: LawMethod, p: np.ndarray, y: np.ndarray, ot: np.ndarray | None, seed: int) -> _Model:
    """Fit `method` to mean metrics y (mixtures, columns) of unique mixtures p."""
    total = y.sum(axis=1)
    if method == "dml":
        return _DML(np.stack([_dml_column(p, col) for col in y.T]))
    if method == "quadratic":
        return _Quadratic(fit_ridge(_quadratic_features(p), total))
    if method == "projektor":
        if ot is None:
            raise InputError("method 'projektor' needs ot: the OT distance of each run's training data.")
        surrogate = _Quadratic(fit_ridge(_quadratic_features(p), ot))
        return _Projektor(fit_ridge(_projektor_features(p, ot), total), surrogate)
    from sklearn.ensemble import GradientBoostingRegressor

    trees = GradientBoostingRegressor(
        n_estimators=200, learning_rate=0.05, max_depth=3, min_samples_leaf=max(1, min(10, len(p) // 20)),
        random_state=seed,
    )  # fmt: skip
    return _Trees(trees.fit(p, total))


@dataclass(frozen=True, slots=True)
class CVScore:
    """Out-of-fold MAE and Spearman rank correlation of a method, its parameter count, why it was skipped."""

    mae: float
    spearman: float
    n_params: int
    skipped: str | None = None


def minimize_on_simplex(
    f: Callable[[np.ndarray], np.ndarray],
    m: int,
    *,
    smooth: bool,
    extra: np.ndarray | None = None,
    seed: int = 0,
) -> np.ndarray:
    """argmin of f (vectorised over rows of mixtures) on the simplex: the best of vertices, a lattice or
    Dirichlet draws and `extra`, refined by SLSQP from the five best when f is smooth."""
    rng = np.random.default_rng(seed)
    parts = [np.eye(m), rng.dirichlet(np.ones(m), 2000), rng.dirichlet(np.full(m, 0.3), 2000)]
    divisions = max((d for d in range(1, 41) if _lattice_size(m, d) <= 3000), default=0)
    if divisions:
        parts.append(simplex_grid(m, divisions=divisions))
    if extra is not None:
        parts.append(np.atleast_2d(extra))
    cand = np.vstack(parts)
    values = f(cand)
    order = np.argsort(values, kind="stable")
    best, best_v = cand[order[0]], float(values[order[0]])
    if not smooth:
        return best
    bounds = [(0.0, 1.0)] * m
    simplex = {"type": "eq", "fun": lambda x: float(x.sum() - 1.0)}
    for x0 in cand[order[:5]]:
        res = minimize(
            lambda x: float(f(x[None, :])[0]), x0, method="SLSQP", bounds=bounds, constraints=simplex
        )
        x = project_simplex(np.asarray(res.x))
        v = float(f(x[None, :])[0])
        if v < best_v - 1e-12:
            best, best_v = x, v
    return best


def _lattice_size(m: int, d: int) -> int:
    from math import comb

    return comb(d + m - 1, m - 1)


@dataclass(frozen=True)
class MixtureLaw:
    """A fitted mixture law: predict(p, ot), optimum(), its cross-validated MAE beside the repeat noise."""

    method: LawMethod
    sources: tuple[str, ...]
    cv_error: float  # out-of-fold MAE of the chosen method (metric units); nan below 4 mixtures
    cv: dict[str, CVScore]  # every method tried or skipped
    noise: float  # standard deviation of repeats of one mixture (pooled); nan without repeats
    n_mixtures: int
    mixtures: np.ndarray = field(repr=False)  # the unique training mixtures
    model: _Model = field(repr=False)

    def predict(self, p: np.ndarray, ot: np.ndarray | None = None) -> np.ndarray:
        """Predicted loss per row of p (mixtures x sources); `ot` per row, else the law's model of OT."""
        pv = check_mixtures(p, m=len(self.sources), what="p")
        ov = None if ot is None else _vector(ot, len(pv), what="ot")
        return self.model.predict(pv, ov)

    def optimum(self, *, seed: int = 0) -> np.ndarray:
        """The mixture with the least predicted loss (OT from the law's model), on the simplex."""
        return minimize_on_simplex(
            lambda q: self.model.predict(q, None),
            len(self.sources),
            smooth=self.model.smooth,
            extra=self.mixtures,
            seed=seed,
        )

    def params(self) -> dict[str, float]:
        """The law's coefficients by name (sources as named at fit time)."""
        return self.model.params(self.sources)


def check_mixtures(p: np.ndarray | Sequence[Sequence[float]], *, m: int | None, what: str) -> np.ndarray:
    """p as a float (rows, sources) array on the simplex; InputError naming the first bad row otherwise."""
    pv = np.atleast_2d(np.asarray(p, dtype=np.float64))
    if pv.ndim != 2 or pv.shape[0] == 0 or (m is not None and pv.shape[1] != m):
        want = "(rows, sources)" if m is None else f"(rows, {m})"
        raise InputError(f"{what} must be a {want} array of mixture weights; got shape {pv.shape}.")
    bad = (
        ~np.isfinite(pv).all(axis=1) | (pv < 0).any(axis=1) | (np.abs(pv.sum(axis=1) - 1) > WEIGHT_TOLERANCE)
    )
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"{what} row {i} is not on the simplex (non-negative weights summing to 1): {pv[i].tolist()}."
        )
    return pv


def _vector(v: np.ndarray | Sequence[float], n: int, *, what: str) -> np.ndarray:
    arr = np.asarray(v, dtype=np.float64)
    if arr.shape != (n,) or not np.isfinite(arr).all():
        raise InputError(f"{what} must be {n} finite numbers (one per row of p); got shape {arr.shape}.")
    return arr


def _collapse(
    p: np.ndarray, y: np.ndarray, ot: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, float]:
    """Unique mixtures, their mean metric (columns) and OT, and the pooled repeat standard deviation."""
    uniq, inverse = np.unique(np.round(p, 9), axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    count = np.bincount(inverse)
    mean = np.stack([np.bincount(inverse, weights=col) / count for col in y.T], axis=1)
    total = y.sum(axis=1)
    dev = total - mean.sum(axis=1)[inverse]
    dof = len(total) - len(uniq)
    noise = float(np.sqrt((dev**2).sum() / dof)) if dof > 0 else float("nan")
    ot_mean = None if ot is None else np.bincount(inverse, weights=ot) / count
    return uniq, mean, ot_mean, noise


def _cross_validate(
    method: LawMethod, p: np.ndarray, y: np.ndarray, ot: np.ndarray | None, seed: int
) -> tuple[float, float]:
    """(MAE, Spearman) of out-of-fold predictions of the row sums, leaving whole mixtures out."""
    j = len(p)
    folds = np.array_split(np.random.default_rng(seed).permutation(j), min(j, FOLDS))
    pred = np.empty(j)
    for test in folds:
        train = np.setdiff1d(np.arange(j), test)
        model = _fit(method, p[train], y[train], None if ot is None else ot[train], seed)
        pred[test] = model.predict(p[test], None if ot is None else ot[test])
    total = y.sum(axis=1)
    rho = float(spearmanr(pred, total).statistic) if np.ptp(pred) > 0 and np.ptp(total) > 0 else 0.0
    return float(np.mean(np.abs(pred - total))), rho


def fit_mixture_law(
    p: np.ndarray,
    metric: np.ndarray,
    *,
    ot: np.ndarray | None = None,
    method: LawMethod = "auto",
    sources: Sequence[str] | None = None,
    seed: int = 0,
) -> MixtureLaw:
    """Fit a mixture law to runs: p (runs, sources) on the simplex, metric (runs,) or (runs, target domains,
    summed) lower-is-better, ot (runs,) for Projektor; "auto" picks the least cross-validated MAE."""
    check_option("method", method, ("auto", *METHODS), caller="fit_mixture_law")
    pv = check_mixtures(p, m=None, what="p")
    n, m = pv.shape
    y = np.asarray(metric, dtype=np.float64)
    y = y.reshape(-1, 1) if y.ndim == 1 else y
    if y.ndim != 2 or y.shape[0] != n or not np.isfinite(y).all():
        raise InputError(f"metric must be {n} finite losses (or {n} rows of them); got shape {y.shape}.")
    ov = None if ot is None else _vector(ot, n, what="ot")
    if method == "projektor" and ov is None:
        raise InputError("method 'projektor' needs ot: the OT distance of each run's training data.")
    names = tuple(sources) if sources is not None else tuple(f"p{i}" for i in range(m))
    if len(names) != m:
        raise InputError(f"sources must name the {m} columns of p; got {list(names)}.")
    uniq, mean, ot_mean, noise = _collapse(pv, y, ov)
    j = len(uniq)
    if j < 3:
        raise FitError(f"fit_mixture_law needs >= 3 distinct mixtures; got {j}.")
    tried = [t for t in METHODS if t != "projektor" or ov is not None] if method == "auto" else [method]
    cv: dict[str, CVScore] = {}
    for t in tried:
        k = n_params(t, m, columns=mean.shape[1])
        need = REGRESSION_MIN if t == "regression" else PER_PARAM * k
        if method == "auto" and j < need:
            cv[t] = CVScore(np.nan, np.nan, k, skipped=f"{j} mixtures < {need} needed")
            continue
        if method != "auto" and j < need:
            warnings.warn(
                f"fit_mixture_law: method '{t}' has {k} parameters but only {j} distinct mixtures "
                f"(< {need}); "
                "it is poorly identified (a ridge penalty, where it has one, decides the rest).",
                FitWarning,
                stacklevel=2,
            )
        cv[t] = (
            CVScore(*_cross_validate(t, uniq, mean, ot_mean, seed), k)
            if j >= 4
            else CVScore(np.nan, np.nan, k)
        )
    ranked = [t for t in tried if cv[t].skipped is None]
    if not ranked:
        ranked = [min(tried, key=lambda t: cv[t].n_params)]
        warnings.warn(
            f"fit_mixture_law: {j} distinct mixtures are fewer than {PER_PARAM} per parameter for every "
            f"method; using '{ranked[0]}', the one with the fewest parameters.",
            FitWarning,
            stacklevel=2,
        )
        if j >= 4:
            cv[ranked[0]] = CVScore(
                *_cross_validate(ranked[0], uniq, mean, ot_mean, seed), cv[ranked[0]].n_params
            )
    chosen = min(ranked, key=lambda t: (np.nan_to_num(cv[t].mae, nan=np.inf), METHODS.index(t)))
    model = _fit(chosen, uniq, mean, ot_mean, seed)
    return MixtureLaw(chosen, names, cv[chosen].mae, cv, noise, j, uniq, model)
