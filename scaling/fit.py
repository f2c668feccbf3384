"""One robust scaling-law fitter: Huber loss on log values, log-sum-exp forms, L-BFGS from a grid, bootstrap.

Hoffmann et al. 2022 (Approach 3) and Besiroglu et al. 2024: minimise sum_i Huber_delta(log f(x_i) - log y_i)
with delta = 1e-3 over a grid of starts; intervals come from refitting bootstrap resamples.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl
import scipy.optimize
import torch
from threadpoolctl import threadpool_limits

from curate._validation import check_interval
from curate.errors import FitError, FitWarning
from scaling.laws import Chinchilla, EffectiveData, PowerLaw, effective_data, log_chinchilla, log_power_law

LogPredict = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (theta (k,), x (n, m)) -> log y (n,)
Bounds = tuple[tuple[float | None, float | None], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class LawForm:
    """A law in fitting space: parameters, log-space predictor, grid of starts, bounds, optional prior."""

    name: str
    param_names: tuple[str, ...]
    log_predict: LogPredict = field(repr=False)
    starts: np.ndarray = field(repr=False)  # (n_starts, k) in fitting space
    natural: Callable[[np.ndarray], dict[str, float]] = field(repr=False)
    bounds: Bounds | None = None
    penalty: Callable[[torch.Tensor], torch.Tensor] | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class FittedLaw:
    """A fitted law: natural parameters, fitting-space optimum, residual error and bootstrap refits."""

    form: LawForm
    params: dict[str, float]
    theta: np.ndarray = field(repr=False)
    objective: float
    rmse_log: float  # root mean squared residual of log y
    converged: bool
    n_points: int
    boot: np.ndarray = field(repr=False)  # (n_bootstrap, k) refits on resampled points

    def predict(self, x: np.ndarray, *, level: float = 0.9) -> pl.DataFrame:
        """Columns prediction, lo, hi: the law at rows of `x`, bootstrap `level` interval (NaN if none)."""
        check_interval("level", level, 0, 1, caller="FittedLaw.predict", closed="neither")
        xt = torch.as_tensor(np.array(x, dtype=np.float64))
        with torch.no_grad():
            mean = torch.exp(self.form.log_predict(torch.as_tensor(self.theta), xt)).numpy()
            draws = np.array(
                [torch.exp(self.form.log_predict(torch.as_tensor(t), xt)).numpy() for t in self.boot]
            )
        lo, hi = _band(draws, level, mean.shape)  # widened to contain the estimate if the band is biased
        return pl.DataFrame({"prediction": mean, "lo": np.minimum(lo, mean), "hi": np.maximum(hi, mean)})

    def intervals(self, *, level: float = 0.9) -> pl.DataFrame:
        """Columns param, value, lo, hi: each natural parameter with its bootstrap `level` interval."""
        check_interval("level", level, 0, 1, caller="FittedLaw.intervals", closed="neither")
        names = list(self.params)
        draws = np.array([[self.form.natural(t)[k] for k in names] for t in self.boot])
        lo, hi = _band(draws, level, (len(names),))
        return pl.DataFrame({"param": names, "value": [self.params[k] for k in names], "lo": lo, "hi": hi})


def _band(draws: np.ndarray, level: float, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    if draws.size == 0:
        return np.full(shape, np.nan), np.full(shape, np.nan)
    tail = 100.0 * (1.0 - level) / 2.0
    return np.percentile(draws, tail, axis=0), np.percentile(draws, 100.0 - tail, axis=0)


def _objective(
    form: LawForm, x: torch.Tensor, log_y: torch.Tensor, delta: float
) -> Callable[[np.ndarray], tuple[float, np.ndarray]]:
    """Mean Huber(log f - log y)/delta (+ prior) and its gradient, for scipy."""

    def fun(theta_np: np.ndarray) -> tuple[float, np.ndarray]:
        theta = torch.tensor(theta_np, dtype=torch.float64, requires_grad=True)
        resid = form.log_predict(theta, x) - log_y
        loss = torch.nn.functional.huber_loss(resid, torch.zeros_like(resid), delta=delta) / delta
        if form.penalty is not None:
            loss = loss + form.penalty(theta)
        if not torch.isfinite(loss):
            return math.inf, np.zeros_like(theta_np)
        (grad,) = torch.autograd.grad(loss, theta)
        return float(loss.detach()), grad.numpy()

    return fun


def _refine(
    fun: Callable[[np.ndarray], tuple[float, np.ndarray]], start: np.ndarray, bounds: Bounds | None
) -> scipy.optimize.OptimizeResult:
    with threadpool_limits(limits=1):  # tiny problems: BLAS thread spin-up costs more than the work
        return scipy.optimize.minimize(
            fun,
            start,
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": 3000, "ftol": 1e-12, "gtol": 1e-8},
        )


def _check_points(x: np.ndarray, y: np.ndarray, *, what: str) -> None:
    if x.ndim != 2 or x.shape[0] != y.shape[0] or y.ndim != 1:
        raise FitError(f"{what}: x must be (n, m) and y (n,); got shapes {x.shape} and {y.shape}.")
    if y.shape[0] < 3:
        raise FitError(f"{what}: needs at least 3 points; got {y.shape[0]}.")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise FitError(f"{what}: x and y must be finite; found NaN or infinite values.")
    if (y <= 0).any():
        raise FitError(f"{what}: y must be > 0 (fits are on log y); got min {y.min()!r}.")


def fit_law(
    x: np.ndarray,
    y: np.ndarray,
    *,
    form: LawForm,
    delta: float = 1e-3,
    n_starts: int | None = 16,
    n_bootstrap: int = 100,
    seed: int = 0,
) -> FittedLaw:
    """Fit `form` to (x, y): screen the grid, L-BFGS from the `n_starts` best starts (None: all), bootstrap.

    Warns FitWarning if the best run did not converge or sits on a bound. Raises FitError on unusable data.
    """
    check_interval("delta", delta, 0, None, caller="fit_law", closed="neither")
    check_interval("n_bootstrap", n_bootstrap, 0, None, caller="fit_law")
    if n_starts is not None:
        check_interval("n_starts", n_starts, 1, None, caller="fit_law")
    xs, ys = np.array(x, dtype=np.float64), np.array(y, dtype=np.float64)
    _check_points(xs, ys, what=f"fit_law({form.name})")
    xt, log_y = torch.as_tensor(xs), torch.log(torch.as_tensor(ys))
    fun = _objective(form, xt, log_y, delta)
    screened = np.array([fun(s)[0] for s in form.starts]) if n_starts is not None else None
    order = (
        np.argsort(screened, kind="stable")[:n_starts] if screened is not None else range(len(form.starts))
    )
    best = min((_refine(fun, form.starts[i], form.bounds) for i in order), key=lambda r: r.fun)
    if not np.isfinite(best.fun):
        raise FitError(f"fit_law({form.name}): every start gave a non-finite objective.")
    converged = bool(best.success) or best.status == 2  # 2: line search stalled at the optimum (Huber kinks)
    _warn_if_poor(form, best.x, converged)
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_bootstrap):
        idx = torch.as_tensor(rng.integers(0, len(ys), len(ys)))
        res = _refine(_objective(form, xt[idx], log_y[idx], delta), best.x, form.bounds)
        if np.isfinite(res.fun):
            boot.append(res.x)
    with torch.no_grad():
        resid = (form.log_predict(torch.as_tensor(best.x), xt) - log_y).numpy()
    return FittedLaw(
        form=form,
        params=form.natural(best.x),
        theta=best.x,
        objective=float(best.fun),
        rmse_log=float(np.sqrt(np.mean(resid**2))),
        converged=converged,
        n_points=len(ys),
        boot=np.array(boot).reshape(len(boot), len(best.x)),
    )


def _warn_if_poor(form: LawForm, theta: np.ndarray, converged: bool) -> None:
    if not converged:
        warnings.warn(
            f"fit_law({form.name}): L-BFGS did not converge; result may be poor.", FitWarning, stacklevel=3
        )
    for name, value, (lo, hi) in zip(form.param_names, theta, form.bounds or (), strict=False):
        if (lo is not None and value <= lo + 1e-9) or (hi is not None and value >= hi - 1e-9):
            warnings.warn(
                f"fit_law({form.name}): parameter {name} = {value:.4g} sits on its bound [{lo}, {hi}]; "
                "it is poorly identified by these points.",
                FitWarning,
                stacklevel=3,
            )


def _grid(*axes: Sequence[float] | np.ndarray) -> np.ndarray:
    return np.array(list(itertools.product(*axes)), dtype=np.float64)


# --- forms ---


def power_law_form(n: np.ndarray, y: np.ndarray) -> LawForm:
    """y = a n^b + d on x = n[:, None]; starts anchored at the data's median point."""
    log_n_mid, y_min, y_mid = float(np.median(np.log(n))), float(np.min(y)), float(np.median(y))
    starts = []
    for b, d_frac in itertools.product((-1.0, -0.5, -0.25, -0.1, -0.03), (0.01, 0.5, 0.9)):
        log_d = math.log(d_frac * y_min)
        starts.append([math.log(max(y_mid - d_frac * y_min, 1e-12)) - b * log_n_mid, b, log_d])

    def log_predict(theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return log_power_law(torch.log(x[:, 0]), theta[0], theta[1], theta[2])

    def natural(theta: np.ndarray) -> dict[str, float]:
        law = PowerLaw(a=math.exp(theta[0]), b=float(theta[1]), d=math.exp(theta[2]))
        return {"a": law.a, "b": law.b, "d": law.d}

    return LawForm(
        name="power_law",
        param_names=("log_a", "b", "log_d"),
        log_predict=log_predict,
        starts=np.array(starts),
        natural=natural,
    )


# Besiroglu et al. 2024 grid: alpha, beta in {0, .5, .., 2}, e in {-1, -.5, .., 1}, a, b in {0, 5, .., 25}
_CHINCHILLA_GRID = _grid(
    np.arange(0, 30, 5),
    np.arange(0, 30, 5),
    np.arange(-1, 1.5, 0.5),
    np.arange(0, 2.5, 0.5),
    np.arange(0, 2.5, 0.5),
)


def _chinchilla_natural(theta: np.ndarray) -> dict[str, float]:
    law = Chinchilla(
        E=math.exp(theta[2]),
        A=math.exp(theta[0]),
        B=math.exp(theta[1]),
        alpha=float(theta[3]),
        beta=float(theta[4]),
    )
    return {"E": law.E, "A": law.A, "B": law.B, "alpha": law.alpha, "beta": law.beta}


def chinchilla_form() -> LawForm:
    """L = E + A/N^alpha + B/D^beta on x = (N, D); theta = (log A, log B, log E, alpha, beta)."""

    def log_predict(theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return log_chinchilla(
            torch.log(x[:, 0]),
            torch.log(x[:, 1]),
            log_e=theta[2],
            log_a=theta[0],
            log_b=theta[1],
            alpha=theta[3],
            beta=theta[4],
        )

    return LawForm(
        name="chinchilla",
        param_names=("log_A", "log_B", "log_E", "alpha", "beta"),
        log_predict=log_predict,
        starts=_CHINCHILLA_GRID,
        natural=_chinchilla_natural,
    )


def effective_data_form() -> LawForm:
    """Muennighoff et al. 2023: L = E + A/N^alpha + B/D'^beta, D' effective data; x = (N, D, U unique)."""

    def log_predict(theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        d_eff = effective_data(x[:, 1], x[:, 2], theta[5])
        return log_chinchilla(
            torch.log(x[:, 0]),
            torch.log(d_eff),
            log_e=theta[2],
            log_a=theta[0],
            log_b=theta[1],
            alpha=theta[3],
            beta=theta[4],
        )

    def natural(theta: np.ndarray) -> dict[str, float]:
        return {**_chinchilla_natural(theta), "r_star": EffectiveData(r_star=math.exp(theta[5])).r_star}

    coarse = _grid(
        np.arange(0, 30, 10), np.arange(0, 30, 10), (-1.0, 0.0, 1.0), (0.0, 0.5, 1.0), (0.0, 0.5, 1.0)
    )
    starts = np.array([[*s, math.log(r)] for s in coarse for r in (3.0, 15.39, 60.0)])
    return LawForm(
        name="effective_data",
        param_names=("log_A", "log_B", "log_E", "alpha", "beta", "log_r_star"),
        log_predict=log_predict,
        starts=starts,
        natural=natural,
        bounds=((None, None),) * 5 + ((math.log(0.1), math.log(1e4)),),
    )


def fit_chinchilla(
    n_params: np.ndarray,
    n_tokens: np.ndarray,
    loss: np.ndarray,
    *,
    n_starts: int | None = 16,
    n_bootstrap: int = 100,
    seed: int = 0,
) -> FittedLaw:
    """Fit L = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022 Approach 3; Besiroglu et al. 2024 grid)."""
    x = np.column_stack([np.asarray(n_params, dtype=np.float64), np.asarray(n_tokens, dtype=np.float64)])
    if (x <= 0).any():
        raise FitError("fit_chinchilla: n_params and n_tokens must be > 0.")
    return fit_law(x, loss, form=chinchilla_form(), n_starts=n_starts, n_bootstrap=n_bootstrap, seed=seed)
