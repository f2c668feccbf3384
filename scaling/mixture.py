"""Mixture laws: a lower-is-better loss as a function of source weights p (runs x sources, on the simplex).

One API, `fit_mixture_law(p, metric) -> MixtureLaw`, for the pipeline and for users who already have runs:
  dml         Data Mixing Law (Ye et al. 2024, eq. 1): L = c + k·exp(Σ_j t_j p_j) with t_m = 0 (Σp = 1 makes
              one t redundant). A 2-D metric (one column per target domain) gets one law per column, summed
              (eq. 2); a 1-D metric may hide several domains, so 'dml2' and 'dml3' sum 2 or 3 such terms
              over one floor c. Either way the optimum can be interior.
  logsum      L = c + Σ_j a_j·(−log(p_j + ε)), a_j ≥ 0 (non-negative least squares, ε from a grid): m + 2
              parameters, convex; each source helps with diminishing returns, so a target that two sources
              serve gets an interior optimum (p_j ∝ a_j as ε → 0) where the one-term DML's is a vertex.
  quadratic   Scheffé's quadratic mixture model: L = c + Σ_{i<m} b_i p_i + Σ_{i<j} b_ij p_i p_j (ridge).
  regression  gradient-boosted trees on p (sklearn), as RegMix (Liu et al. 2024) does with LightGBM.
  projektor   Projektor stage 1 (Kang et al. 2023) without its collinear columns (Σ_i p_i·OT = OT, Σp_i = 1):
              L = c + Σ_{i<m} c1_i p_i + Σ_i c2_i p_i² + Σ_i (b1_i p_i + b2_i p_i²)·OT (ridge); OT of an
              unseen mixture from a quadratic model of the runs' OT values unless given.
  auto        every law above (projektor when OT is given; the trees from REGRESSION_MIN mixtures) with at
              least 3 mixtures a parameter (the one-term DML from 2 more than its parameters), scored by
              cross-validated MAE; the simplest law within
              one standard error of the best wins (a complex law must beat noise). A law with fewer than 3
              mixtures per parameter warns.
Ridge penalties come from leave-one-out error on the training mixtures only (scaling.ridge). Rows with the
same p are repeats: they are averaged, and their spread is the law's `noise`. Cross-validation leaves out
whole mixtures (10 seeded folds; one at a time below 10 mixtures).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
from scipy.optimize import nnls
from scipy.stats import spearmanr

from curate._validation import check_option
from curate.errors import FitError, FitWarning, InputError
from scaling.dml import DMLModel, fit_dml_column
from scaling.ridge import RidgeFit, fit_ridge
from scaling.simplex import minimize_on_simplex

LawMethod = Literal["auto", "dml", "dml2", "dml3", "logsum", "quadratic", "regression", "projektor"]
METHODS: tuple[LawMethod, ...] = ("dml", "dml2", "dml3", "logsum", "quadratic", "regression", "projektor")
LOGSUM_EPS = (1e-3, 3e-3, 1e-2, 3e-2, 0.1)  # candidate floors of the logsum law's -log(p_j + eps)
WEIGHT_TOLERANCE = 1e-6  # row sums this close to 1 are taken as they are
# A row sum within max(1e-3, m * 5e-4) of 1 is renormalised with a FitWarning: m weights rounded to 3 decimals
# (a published table) move it by up to m * 5e-4, e.g. to 0.998 with 4 sources.
ROUNDING_TOLERANCE = 1e-3
ROUNDING_PER_SOURCE = 5e-4
PER_PARAM = 3  # mixtures per parameter below which a law is poorly identified (FitWarning)
# mixtures below which "auto" leaves the trees out: RegMix fits them on hundreds of runs; on the 28 lattice
# mixtures of bench/projektor_real.py they won the cross-validation yet erred +0.25 nats on held-out mixtures
REGRESSION_MIN = 50
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


def n_params(name: str, m: int, *, columns: int = 1) -> int:
    """Free parameters of law `name` over m sources (dml: per metric column; dmlK: K terms); 0 for trees."""
    if name.startswith("dml"):
        return (m + 1) * columns if name == "dml" else 1 + int(name[3:]) * m
    return {"quadratic": m * (m + 1) // 2, "projektor": 4 * m, "logsum": m + 2}.get(name, 0)


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
class _LogSum:
    """L = c + sum_j a_j * -log(p_j + eps), a_j >= 0: each source helps with diminishing returns; convex, so
    its optimum is interior wherever two sources help (p_j ~ a_j as eps -> 0), a vertex where one does."""

    c: float
    a: np.ndarray
    eps: float
    smooth: bool = True

    def predict(self, p: np.ndarray, ot: np.ndarray | None) -> np.ndarray:
        return self.c - np.log(p + self.eps) @ self.a

    def params(self, names: Sequence[str]) -> dict[str, float]:
        return {"c": self.c, "eps": self.eps, **{n: float(v) for n, v in zip(names, self.a, strict=True)}}


def _fit_logsum(p: np.ndarray, y: np.ndarray) -> _LogSum:
    """Non-negative least squares for a (intercept free), eps the grid value of least squared error."""
    best: tuple[float, _LogSum] | None = None
    for eps in LOGSUM_EPS:
        f = -np.log(p + eps)
        design = np.hstack([f, np.ones((len(p), 1)), -np.ones((len(p), 1))])
        coef, _ = nnls(design, y)
        law = _LogSum(float(coef[-2] - coef[-1]), coef[:-2], eps)
        sse = float(np.sum((law.predict(p, None) - y) ** 2))
        if best is None or sse < best[0]:
            best = (sse, law)
    assert best is not None
    return best[1]


@dataclass(frozen=True)
class _Trees:
    model: object
    smooth: bool = False

    def predict(self, p: np.ndarray, ot: np.ndarray | None) -> np.ndarray:
        return np.asarray(self.model.predict(p), dtype=np.float64)  # type: ignore[attr-defined]

    def params(self, names: Sequence[str]) -> dict[str, float]:
        return {"trees": float(self.model.n_estimators_)}  # type: ignore[attr-defined]


def _fit(
    name: str,
    p: np.ndarray,
    y: np.ndarray,
    ot: np.ndarray | None,
    seed: int,
    warm: _Model | None = None,
    memo: dict[int, np.ndarray] | None = None,
) -> _Model:
    """Fit candidate `name` (dml, dml2, dml3, quadratic, regression, projektor) to mean metrics y (mixtures,
    columns) of unique mixtures p; a DML starts from `warm`'s parameters when given."""
    total = y.sum(axis=1)
    q = p[:, :-1]
    if name.startswith("dml"):
        terms = int(name[3:] or 1)
        if y.shape[1] > 1:  # one law per target domain (Ye et al. 2024, eq. 2)
            cols = [fit_dml_column(q, col, 1) for col in y.T]
        else:
            start = (
                None if not isinstance(warm, DMLModel) else np.concatenate([warm.c, warm.terms[0].ravel()])
            )
            cols = [fit_dml_column(q, total, terms, start, memo)]
        return DMLModel(np.array([c[0] for c in cols]), tuple(c[1:].reshape(-1, p.shape[1]) for c in cols))
    if name == "quadratic":
        return _Quadratic(fit_ridge(_quadratic_features(p), total))
    if name == "logsum":
        return _fit_logsum(p, total)
    if name == "projektor":
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
    """Out-of-fold MAE and Spearman rank correlation of a law, its parameter count, the MAE relative to the
    mean predictor's averaged over the tables it was scored on (what "auto" ranks), and that relative MAE's
    standard error (the spread of the per-mixture errors over the root of their number)."""

    mae: float
    spearman: float
    n_params: int
    relative: float
    relative_se: float = float("nan")


@dataclass(frozen=True)
class MixtureLaw:
    """A fitted mixture law: predict(p, ot), optimum(), its cross-validated MAE beside the repeat noise."""

    method: LawMethod  # the law chosen (never "auto")
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
    """p as a float (rows, sources) array on the simplex: rows whose sum is off by rounding are renormalised
    (FitWarning); InputError names the first row further off, or with a negative weight."""
    pv = np.atleast_2d(np.asarray(p, dtype=np.float64))
    if pv.ndim != 2 or pv.shape[0] == 0 or (m is not None and pv.shape[1] != m):
        want = "(rows, sources)" if m is None else f"(rows, {m})"
        raise InputError(f"{what} must be a {want} array of mixture weights; got shape {pv.shape}.")
    invalid = np.asarray(~np.isfinite(pv).all(axis=1) | (pv < 0).any(axis=1))
    sums = pv.sum(axis=1)
    off = np.abs(sums - 1.0)
    tolerance = max(ROUNDING_TOLERANCE, ROUNDING_PER_SOURCE * pv.shape[1])
    bad = invalid | (off > tolerance * (1 + 1e-9))  # float slack: with 2 sources a sum of 0.999 is within
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        why = "a weight is negative or not finite" if invalid[i] else f"its weights sum to {sums[i]:.6g}"
        raise InputError(
            f"{what} row {i} is not on the simplex ({why}): {pv[i].tolist()}; {int(bad.sum())} of {len(pv)} "
            f"rows are off. Weights are non-negative and each row sums to 1 (within {tolerance:g}, "
            "renormalised with a warning): normalise each row first, p / p.sum(axis=1, keepdims=True)."
        )
    rounded = off > WEIGHT_TOLERANCE
    if rounded.any():
        warnings.warn(
            f"{what}: {int(rounded.sum())} of {len(pv)} rows do not sum to 1 (largest deviation "
            f"{off.max():.3g}, within {tolerance:g}: rounded weights?); each was renormalised "
            "to sum 1.",
            FitWarning,
            stacklevel=3,
        )
        pv = pv.copy()
        pv[rounded] /= sums[rounded, None]
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
    name: str, p: np.ndarray, y: np.ndarray, ot: np.ndarray | None, seed: int, full: _Model
) -> tuple[float, float, float, float]:
    """(MAE, Spearman, the mean predictor's MAE, the MAE's standard error) of out-of-fold predictions of the
    row sums, leaving whole mixtures out (10 seeded folds). A DML fold starts from the fit on every mixture
    (`full`), which keeps the nonconvex fits cheap and comparable."""
    j = len(p)
    folds = np.array_split(np.random.default_rng(seed).permutation(j), min(j, FOLDS))
    total = y.sum(axis=1)
    pred, base = np.empty(j), np.empty(j)
    for test in folds:
        train = np.setdiff1d(np.arange(j), test)
        model = _fit(name, p[train], y[train], None if ot is None else ot[train], seed, warm=full)
        pred[test] = model.predict(p[test], None if ot is None else ot[test])
        base[test] = total[train].mean()
    rho = float(spearmanr(pred, total).statistic) if np.ptp(pred) > 0 and np.ptp(total) > 0 else 0.0
    errors = np.abs(pred - total)
    se = float(np.std(errors, ddof=1) / np.sqrt(j)) if j > 1 else float("nan")
    return float(np.mean(errors)), rho, float(np.mean(np.abs(base - total))), se


Table = tuple[np.ndarray, np.ndarray, np.ndarray | None]


def _simplest_within_noise(tried: Sequence[LawMethod], cv: dict[str, CVScore]) -> LawMethod:
    """The law with the fewest parameters (the trees count as the most) whose relative CV error is within
    one standard error of the best one's: a complex law must win by more than noise, so rankings hold across
    model scale (the one-standard-error rule of Breiman et al. 1984)."""
    scored = [t for t in tried if np.isfinite(cv[t].relative)]
    if not scored:
        return tried[0]
    best = min(scored, key=lambda t: (cv[t].relative, tried.index(t)))
    bar = cv[best].relative + np.nan_to_num(cv[best].relative_se)
    size = {t: cv[t].n_params if t != "regression" else np.inf for t in scored}
    return min((t for t in scored if cv[t].relative <= bar), key=lambda t: (size[t], tried.index(t)))


def _table(p: np.ndarray, metric: np.ndarray, ot: np.ndarray | None, *, m: int | None, what: str) -> Table:
    pv = check_mixtures(p, m=m, what=f"{what} p")
    y = np.asarray(metric, dtype=np.float64)
    y = y.reshape(-1, 1) if y.ndim == 1 else y
    if y.ndim != 2 or y.shape[0] != len(pv) or not np.isfinite(y).all():
        raise InputError(
            f"{what} metric must be {len(pv)} finite losses (or rows of them); got shape {y.shape}."
        )
    return pv, y, None if ot is None else _vector(ot, len(pv), what=f"{what} ot")


def fit_mixture_law(
    p: np.ndarray,
    metric: np.ndarray,
    *,
    ot: np.ndarray | None = None,
    method: LawMethod = "auto",
    sources: Sequence[str] | None = None,
    also: Sequence[Table] = (),
    seed: int = 0,
) -> MixtureLaw:
    """Fit a mixture law to runs: p (runs, sources) on the simplex, metric (runs,) or (runs, target domains,
    summed) lower-is-better, ot (runs,) for Projektor. "auto" picks the least cross-validated MAE relative
    to the mean predictor's, averaged over this table and the tables `also` (p, metric, ot) of the same
    sources (e.g. other pilot sizes) where the law can be scored."""
    check_option("method", method, ("auto", *METHODS), caller="fit_mixture_law")
    pv, y, ov = _table(p, metric, ot, m=None, what="runs")
    m = pv.shape[1]
    if method == "projektor" and ov is None:
        raise InputError("method 'projektor' needs ot: the OT distance of each run's training data.")
    names = tuple(sources) if sources is not None else tuple(f"p{i}" for i in range(m))
    if len(names) != m:
        raise InputError(f"sources must name the {m} columns of p; got {list(names)}.")
    if y.shape[1] > 1 and method in ("dml2", "dml3"):
        raise InputError(f"method '{method}' sums terms over one metric column; got {y.shape[1]} columns.")
    tables = [
        _collapse(*t)
        for t in [(pv, y, ov), *(_table(*t, m=m, what=f"also[{i}]") for i, t in enumerate(also))]
    ]
    uniq, mean, ot_mean, noise = tables[0]
    j = len(uniq)
    if j < 3:
        raise FitError(f"fit_mixture_law needs >= 3 distinct mixtures; got {j}.")
    pool = (
        [t for t in METHODS if y.shape[1] == 1 or t not in ("dml2", "dml3")] if method == "auto" else [method]
    )

    def usable(t: str, table: tuple[np.ndarray, np.ndarray, np.ndarray | None, float]) -> bool:
        k = n_params(t, m, columns=y.shape[1])
        # "auto" tries a law only where it is identified (PER_PARAM mixtures a parameter; the one-term
        # Data Mixing Law always): with many sources and few mixtures that leaves the O(m) laws
        need = (
            REGRESSION_MIN
            if t == "regression"
            else (k + 2 if method != "auto" or t == "dml" else PER_PARAM * k)
        )
        return (t != "projektor" or table[2] is not None) and len(table[0]) >= need

    tried = [t for t in pool if usable(t, tables[0])] or [pool[0]]
    memo: dict[int, np.ndarray] = {}
    fits = {t: _fit(t, uniq, mean, ot_mean, seed, memo=memo) for t in tried}
    cv: dict[str, CVScore] = {}
    memos: list[dict[int, np.ndarray]] = [{} for _ in tables]
    for t in tried:
        k = n_params(t, m, columns=y.shape[1])
        if j < 4:
            cv[t] = CVScore(np.nan, np.nan, k, np.nan)
            continue
        mae, rho, base, se = _cross_validate(t, uniq, mean, ot_mean, seed, fits[t])
        rel = [mae / base]
        if len(tried) > 1:
            for (tp, ty, tot, _), tmemo in zip(tables[1:], memos[1:], strict=True):
                if usable(t, (tp, ty, tot, 0.0)) and len(tp) >= 4:
                    other = _cross_validate(t, tp, ty, tot, seed, _fit(t, tp, ty, tot, seed, memo=tmemo))
                    rel.append(other[0] / other[2])
        cv[t] = CVScore(mae, rho, k, float(np.mean(rel)), se / base)
    chosen = _simplest_within_noise(tried, cv)
    k = n_params(chosen, m, columns=y.shape[1])
    if j < PER_PARAM * k:
        warnings.warn(
            f"fit_mixture_law: the chosen law '{chosen}' has {k} parameters but only {j} distinct mixtures "
            f"(< {PER_PARAM * k}); it is poorly identified (cross-validated MAE {cv[chosen].mae:.3g}, repeat "
            f"noise {noise:.3g}).",
            FitWarning,
            stacklevel=2,
        )
    return MixtureLaw(chosen, names, cv[chosen].mae, cv, noise, j, uniq, fits[chosen])
