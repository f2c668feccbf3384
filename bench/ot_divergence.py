"""Debiased Sinkhorn divergence at equal accuracy: scaling.ot vs geomloss "tensorized" vs POT sinkhorn2.

Quantity: S_eps = OT_eps(x, y) - 1/2 OT_eps(x, x) - 1/2 OT_eps(y, y) on c = 1/2 |x - y|^2, eps = 0.01 x the
largest x-y cost, in cost units. Reference: each OT term in float64 by scaling.sinkhorn at rtol 1e-10, one at
a time (bounded memory); at n = 1000 it is checked against POT's float64 log-domain Sinkhorn (stopThr 1e-10).
Every method must land within 0.5% of the reference:
- ours: `scaling.ot.sinkhorn_divergence(x, y)` with its defaults (torch float32 on CPU, tol 1e-3);
- geomloss: `SamplesLoss("sinkhorn", p=2, blur=sqrt(eps), debias=True, backend="tensorized")`, the first
  `scaling` of SCALINGS within 0.5% (each n starts at the previous n's setting);
- POT: three `ot.sinkhorn2(..., method="sinkhorn_log")` calls on torch float32 (stopThr 1e-7, dual value).
Clouds (FAMILIES): two 20-topic Gaussian mixtures on the unit sphere in 256-d (like text embeddings), the
same topics in other proportions (slow for Sinkhorn), and 3-d Gaussian blobs. Each case runs in a fresh
process (peak RSS is its own) with 2 torch/OpenMP threads and a wall-clock budget; the 1-minute load average
after each case is printed next to its time because timings on a shared machine are noisy.

Run: .venv/bin/python bench/ot_divergence.py [--sizes 1000 5000 10000 20000] [--families ...] [--budget 600]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import resource
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

THREADS = 2
ACCURACY = 5e-3
SCALINGS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
REG = 0.01


def topics(n: int, rng: np.random.Generator, *, shared: bool) -> tuple[np.ndarray, np.ndarray]:
    """Two n x 256 unit-vector clouds, each a 20-topic Gaussian mixture (shared: same topics, other weights)."""
    centres = [rng.normal(size=(20, 256)) for _ in range(2)]
    if shared:
        centres[1] = centres[0]

    def draw(c: np.ndarray) -> np.ndarray:
        z = c[rng.choice(20, n, p=rng.dirichlet(np.ones(20)))] + rng.normal(size=(n, 256)) * 0.8
        return z / np.linalg.norm(z, axis=1, keepdims=True)

    return draw(centres[0]).astype(np.float32), draw(centres[1]).astype(np.float32)


def blobs(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Two n x 3 clouds of 5 Gaussian blobs each, the second set moved and widened."""
    c = rng.normal(size=(5, 3)) * 2
    x = c[rng.integers(0, 5, n)] + rng.normal(size=(n, 3)) * 0.5
    y = c[rng.integers(0, 5, n)] * 1.1 + rng.normal(size=(n, 3)) * 0.6 + 0.3
    return x.astype(np.float32), y.astype(np.float32)


FAMILIES: dict[str, Callable[[int, np.random.Generator], tuple[np.ndarray, np.ndarray]]] = {
    "topics": lambda n, rng: topics(n, rng, shared=False),
    "shared-topics": lambda n, rng: topics(n, rng, shared=True),
    "blobs-3d": blobs,
}


def _max_cost(x: np.ndarray, y: np.ndarray) -> float:
    import torch

    from scaling.ot import half_sqeuclidean

    return float(half_sqeuclidean(torch.as_tensor(x), torch.as_tensor(y)).max())


def _reference(x: np.ndarray, y: np.ndarray) -> float:
    """S_eps in float64, each term solved to rtol 1e-10 with its cost freed before the next (bounded memory)."""
    import torch

    from scaling.ot import half_sqeuclidean, kmeans_cells
    from scaling.sinkhorn import Transport

    xs, ys = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    a, b = (
        torch.full((len(x),), 1 / len(x), dtype=torch.float64),
        torch.full((len(y),), 1 / len(y), dtype=xs.dtype),
    )
    scale = _max_cost(x, y)
    rows, cols = kmeans_cells(x, y, seed=0, device=xs.device)
    values = []
    for left, right, wa, wb, groups in (
        (xs, ys, a, b, (rows, cols)),
        (xs, xs, a, None, None),
        (ys, ys, b, None, None),
    ):
        term = Transport(half_sqeuclidean(left, right).div_(scale), wa, wb, REG, groups)
        term.solve(rtol=1e-10, max_iter=200_000)
        values.append(term.value)
        del term
    return scale * (values[0] - 0.5 * values[1] - 0.5 * values[2])


def _pot(x: np.ndarray, y: np.ndarray, *, float32: bool, stop: float) -> float:
    """Debiased value from three POT log-domain solves, each OT_eps = eps(<a, log u/a> + <b, log v/b>)."""
    import ot
    import torch

    scale = _max_cost(x, y)

    def entropic(u: np.ndarray, v: np.ndarray) -> float:
        m = 0.5 * ot.dist(u, v) / scale
        a, b = ot.unif(len(u), type_as=m), ot.unif(len(v), type_as=m)
        _, log = ot.sinkhorn2(a, b, m, REG, method="sinkhorn_log", numItermax=200_000, stopThr=stop, log=True)
        nx = ot.backend.get_backend(m)
        return REG * float(nx.sum(a * (log["log_u"] - nx.log(a))) + nx.sum(b * (log["log_v"] - nx.log(b))))

    xs, ys = (
        (torch.as_tensor(x), torch.as_tensor(y)) if float32 else (x.astype(np.float64), y.astype(np.float64))
    )
    return scale * (entropic(xs, ys) - 0.5 * entropic(xs, xs) - 0.5 * entropic(ys, ys))


def _geomloss(x: np.ndarray, y: np.ndarray, *, scaling: float) -> float:
    import torch
    from geomloss import SamplesLoss

    loss = SamplesLoss(
        "sinkhorn",
        p=2,
        blur=math.sqrt(REG * _max_cost(x, y)),
        scaling=scaling,
        debias=True,
        backend="tensorized",
    )
    return float(loss(torch.as_tensor(x), torch.as_tensor(y)))


def _ours(x: np.ndarray, y: np.ndarray) -> float:
    from scaling.ot import sinkhorn_divergence

    return sinkhorn_divergence(x, y, reg=REG)


METHODS: dict[str, Callable[..., float]] = {
    "reference": lambda x, y, _: _reference(x, y),
    "ours": lambda x, y, _: _ours(x, y),
    "geomloss": lambda x, y, scaling: _geomloss(x, y, scaling=scaling),
    "pot": lambda x, y, stop: _pot(x, y, float32=True, stop=stop),
    "pot-float64": lambda x, y, stop: _pot(x, y, float32=False, stop=stop),
}


@dataclass
class Case:
    """One (cloud family, n, method, setting) run and what it measured."""

    family: str
    n: int
    method: str
    setting: float | None = None
    value: float | None = None
    seconds: float = math.nan
    rss_mib: float = math.nan
    load: float = math.nan
    error: float = math.nan

    @property
    def ok(self) -> bool:
        """Within ACCURACY of the reference."""
        return abs(self.error) <= ACCURACY


def _measure(case: Case, queue: mp.Queue) -> None:
    import torch

    torch.set_num_threads(THREADS)
    x, y = FAMILIES[case.family](case.n, np.random.default_rng(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # non-convergence shows up as the error column
        start = time.perf_counter()
        value = METHODS[case.method](x, y, case.setting)
        seconds = time.perf_counter() - start
    queue.put((value, seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def _run(case: Case, budget: float) -> Case:
    """Run `case` in a fresh process; value stays None when it ran past `budget` seconds."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(case, queue))
    proc.start()
    proc.join(budget)
    if proc.is_alive():
        proc.kill()
        proc.join()
        case.seconds = budget
    else:
        case.value, case.seconds, case.rss_mib = queue.get()
    case.load = os.getloadavg()[0]
    print(
        f"  {case.family} n={case.n} {case.method} {case.setting}: {case.value} in {case.seconds:.1f} s",
        flush=True,
    )
    return case


def _cases(family: str, sizes: list[int], budget: float) -> list[Case]:
    """Reference, ours, POT and the geomloss ladder at each n; a method past the budget skips larger n."""
    out: list[Case] = []
    start, skip = 0, set()
    for n in sizes:
        ref = _run(Case(family, n, "reference"), 4 * budget)
        cases = [ref]
        if ref.value is not None:
            if n == sizes[0]:
                cases.append(_run(Case(family, n, "pot-float64", 1e-10), 4 * budget))
            cases.append(_run(Case(family, n, "ours"), budget))
            if "pot" not in skip:
                cases.append(_run(Case(family, n, "pot", 1e-7), budget))
                skip |= {"pot"} if cases[-1].value is None else set()
            for k in range(start, len(SCALINGS)):
                if "geomloss" in skip:
                    break
                cases.append(_run(Case(family, n, "geomloss", SCALINGS[k]), budget))
                value = cases[-1].value
                if value is None:
                    skip.add("geomloss")
                elif abs(value / ref.value - 1) <= ACCURACY:
                    start = k
                    break
            for case in cases:
                case.error = math.nan if case.value is None else case.value / ref.value - 1
        out += cases
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10000, 20000])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--budget", type=float, default=600.0, help="seconds per case before it is stopped")
    args = parser.parse_args()
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(THREADS)
    rows = [case for family in args.families for case in _cases(family, sorted(args.sizes), args.budget)]
    print(f"\n{THREADS} torch/OpenMP threads; error = value / reference - 1; ok = within {ACCURACY:.1%}.")
    print("| family | n | method | setting | seconds | error | ok | peak RSS MiB | load 1-min | x geomloss |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for case in rows:
        geomloss = [
            c.seconds for c in rows if (c.family, c.n, c.method) == (case.family, case.n, "geomloss") and c.ok
        ]
        ratio = f"{case.seconds / geomloss[0]:.2f}" if geomloss and case.method == "ours" else ""
        done = case.value is not None
        print(
            f"| {case.family} | {case.n} | {case.method} | {'' if case.setting is None else f'{case.setting:g}'} "
            f"| {f'{case.seconds:.1f}' if done else f'> {case.seconds:.0f}'} | {f'{case.error:+.2e}' if done else ''} "
            f"| {('yes' if case.ok else 'no') if done else ''} | {case.rss_mib:.0f} | {case.load:.2f} | {ratio} |"
        )


if __name__ == "__main__":
    main()
