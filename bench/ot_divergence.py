"""Debiased Sinkhorn divergence at equal accuracy: scaling.ot vs geomloss "tensorized" vs POT sinkhorn2 (#17).

Quantity: S_eps = OT_eps(x, y) - 1/2 OT_eps(x, x) - 1/2 OT_eps(y, y) on c = 1/2 |x - y|^2, eps = 0.01 x the
largest x-y cost, in cost units. Reference: each OT term in float64 by scaling.sinkhorn at rtol 1e-10, one at
a time (bounded memory); at the smallest n it is checked against POT's float64 log-domain Sinkhorn.
A method counts at its loosest setting whose value lands within 0.5% of the reference (equal accuracy):
- ours: `scaling.ot.sinkhorn_divergence(x, y)` with its defaults (torch float32 on CPU, tol 1e-3);
- geomloss: `SamplesLoss("sinkhorn", p=2, blur=sqrt(eps), debias=True, backend="tensorized")`, the first
  `scaling` of SCALINGS within 0.5%;
- POT: three `ot.sinkhorn2(..., method="sinkhorn_log")` calls on torch float32 (dual value), the first
  `stopThr` of STOP_THRS within 0.5%.
Each ladder starts at the setting it ended on at the previous n; a method that runs past the budget is
skipped at larger n. Clouds (FAMILIES): two 20-topic Gaussian mixtures on the unit sphere in 256-d (like text
embeddings), the same topics in other proportions (slow for Sinkhorn), and 3-d Gaussian blobs. Each case
runs in a fresh process (its own peak RSS) with 2 torch/OpenMP threads, timed after an untimed warm-up call
on 200 points; the 1-minute load average after each case is recorded because timings on a shared machine are
noisy. Issue 17's bar: 10k <= 30 s, 5k <= 8 s, and ours not slower than geomloss at equal accuracy.

Run (repository root, on a quiet machine): `.venv/bin/python bench/ot_divergence.py
[--sizes 1000 5000 10000 20000] [--families topics shared-topics blobs-3d] [--budget 600] [--out DIR]`
(writes OUT/ot_divergence.md, bench/results by default; needs the bench extra: `pip install -e ".[bench]"`).
--smoke: the 20-topic clouds at n = 300, every case in this process, geomloss left out when it is not
installed, into --out: a check that the script runs, not a measurement.
"""

from __future__ import annotations

import argparse
import importlib
import math
import multiprocessing as mp
import os
import platform
import resource
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

THREADS = 2
ACCURACY = 5e-3
REG = 0.01
WARM = 200  # points of the untimed warm-up call
SCALINGS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
STOP_THRS = (1e-3, 1e-4, 1e-5, 1e-6, 1e-7)
LADDERS: dict[str, tuple[float | None, ...]] = {"ours": (None,), "pot": STOP_THRS, "geomloss": SCALINGS}
OUT = Path(__file__).resolve().parent / "results"


def topics(n: int, rng: np.random.Generator, *, shared: bool) -> tuple[np.ndarray, np.ndarray]:
    """Two n x 256 unit-vector clouds, each a 20-topic Gaussian mixture (shared: same topics, new weights)."""
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
    """S_eps in float64, each term solved to rtol 1e-10, its cost freed before the next (bounded memory)."""
    import torch

    from scaling.ot import half_sqeuclidean, kmeans_cells
    from scaling.sinkhorn import Transport

    xs, ys = torch.as_tensor(x, dtype=torch.float64), torch.as_tensor(y, dtype=torch.float64)
    a = torch.full((len(x),), 1 / len(x), dtype=torch.float64)
    b = torch.full((len(y),), 1 / len(y), dtype=torch.float64)
    scale = _max_cost(x, y)
    cells = kmeans_cells(x, y, seed=0, device=xs.device)
    values = []
    terms = ((xs, ys, a, b, cells), (xs, xs, a, None, None), (ys, ys, b, None, None))
    for left, right, wa, wb, groups in terms:
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

    def entropic(u: Any, v: Any) -> float:
        m = 0.5 * ot.dist(u, v) / scale
        a, b = ot.unif(len(u), type_as=m), ot.unif(len(v), type_as=m)
        _, log = ot.sinkhorn2(a, b, m, REG, method="sinkhorn_log", numItermax=200_000, stopThr=stop, log=True)
        nx = ot.backend.get_backend(m)
        return REG * float(nx.sum(a * (log["log_u"] - nx.log(a))) + nx.sum(b * (log["log_v"] - nx.log(b))))

    xs, ys = (torch.as_tensor(x), torch.as_tensor(y)) if float32 else (x.astype(float), y.astype(float))
    return scale * (entropic(xs, ys) - 0.5 * entropic(xs, xs) - 0.5 * entropic(ys, ys))


def _geomloss(x: np.ndarray, y: np.ndarray, *, scaling: float) -> float:
    import torch
    from geomloss import SamplesLoss

    blur = math.sqrt(REG * _max_cost(x, y))
    loss = SamplesLoss("sinkhorn", p=2, blur=blur, scaling=scaling, debias=True, backend="tensorized")
    return float(loss(torch.as_tensor(x), torch.as_tensor(y)))


def _ours(x: np.ndarray, y: np.ndarray) -> float:
    from scaling.ot import sinkhorn_divergence

    return sinkhorn_divergence(x, y, reg=REG)


# method: (modules imported before the clock starts, the timed call)
METHODS: dict[str, tuple[tuple[str, ...], Callable[[np.ndarray, np.ndarray, float | None], float]]] = {
    "reference": (("scaling.ot",), lambda x, y, _: _reference(x, y)),
    "ours": (("scaling.ot",), lambda x, y, _: _ours(x, y)),
    "geomloss": (("scaling.ot", "geomloss"), lambda x, y, s: _geomloss(x, y, scaling=float(s or 0.5))),
    "pot": (("scaling.ot", "ot"), lambda x, y, s: _pot(x, y, float32=True, stop=float(s or 1e-7))),
    "pot-float64": (("scaling.ot", "ot"), lambda x, y, s: _pot(x, y, float32=False, stop=float(s or 1e-10))),
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
    rss_mib: float = math.nan  # peak RSS of the case's process
    added_mib: float = math.nan  # peak RSS gained during the timed call
    load: float = math.nan
    error: float = math.nan
    note: str = ""

    @property
    def ok(self) -> bool:
        """Within ACCURACY of the reference."""
        return abs(self.error) <= ACCURACY


def _measure(case: Case) -> tuple[float, float, float, float]:
    """(value, seconds, peak RSS MiB, RSS MiB added by the timed call) of one case, in this process."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        x, y = FAMILIES[case.family](case.n, np.random.default_rng(0))
        modules, call = METHODS[case.method]
        for name in modules:
            importlib.import_module(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # non-convergence shows up as the error column
            call(
                x[:WARM], y[:WARM], case.setting
            )  # first-call setup (thread pools, lazy kernels) off the clock
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            start = time.perf_counter()
            value = call(x, y, case.setting)
            seconds = time.perf_counter() - start
    finally:
        torch.set_num_threads(threads)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return value, seconds, peak, peak - before


def _child(case: Case, queue: mp.Queue) -> None:
    queue.put(_measure(case))


def _run(case: Case, budget: float, *, in_process: bool = False) -> Case:
    """Run `case` in a fresh process (or this one); value stays None (with a note) if it fails or runs past
    `budget` s (a fresh process only)."""
    if in_process:
        case.value, case.seconds, case.rss_mib, case.added_mib = _measure(case)
    else:
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        proc = ctx.Process(target=_child, args=(case, queue))
        proc.start()
        proc.join(budget)
        if proc.is_alive():
            proc.kill()
            proc.join()
            case.seconds, case.note = budget, "past budget"
        elif proc.exitcode != 0:
            case.note = f"failed (exit code {proc.exitcode})"
        else:
            case.value, case.seconds, case.rss_mib, case.added_mib = queue.get(timeout=60)
    case.load = os.getloadavg()[0]
    print(
        f"  {case.family} n={case.n} {case.method} {case.setting}: {case.value}, {case.seconds:.1f} s",
        case.note,
    )
    return case


def _cases(
    family: str, sizes: list[int], budget: float, *, methods: tuple[str, ...], in_process: bool
) -> list[Case]:
    """Reference and each method's ladder at every n (ascending); a method past the budget skips larger n."""
    out: list[Case] = []
    ladders = {m: v for m, v in LADDERS.items() if m in methods}
    start = dict.fromkeys(ladders, 0)
    dropped: set[str] = set()
    for n in sizes:
        ref = _run(Case(family, n, "reference"), 4 * budget, in_process=in_process)
        out.append(ref)
        if ref.value is None:
            break
        ref.error = 0.0
        first = n == sizes[0]
        cases = (
            [_run(Case(family, n, "pot-float64", 1e-10), 4 * budget, in_process=in_process)] if first else []
        )
        for method, settings in ladders.items():
            for k in range(start[method], len(settings)) if method not in dropped else ():
                case = _run(Case(family, n, method, settings[k]), budget, in_process=in_process)
                cases.append(case)
                if case.value is None:
                    dropped.add(method)
                    break
                start[method] = k  # the next n starts here: the passing setting, else the finest tried
                if abs(case.value / ref.value - 1) <= ACCURACY:
                    break
        for case in cases:
            case.error = math.nan if case.value is None else case.value / ref.value - 1
        out += cases
    return out


def _pick(rows: list[Case], family: str, n: int, method: str) -> Case | None:
    """The method's loosest setting within ACCURACY at (family, n), else the finest one that finished."""
    done = [c for c in rows if (c.family, c.n, c.method) == (family, n, method) and c.value is not None]
    ok = [c for c in done if c.ok]
    return ok[0] if ok else (done[-1] if done else None)


def _cell(case: Case | None) -> str:
    if case is None:
        return "past budget"
    text = f"{case.seconds:.2f}{_in_brackets(case)}"
    return text if case.ok else f"{text}, error {case.error:+.1e}"


def _ratio(case: Case | None, base: Case | None) -> str:
    if case is None or base is None or not case.ok:
        return ""
    return f"{case.seconds / base.seconds:.2f}{'' if base.ok else '*'}"


def _setting(case: Case) -> str:
    return "" if case.setting is None else f"{case.setting:g}"


def _in_brackets(case: Case) -> str:
    return "" if case.setting is None else f" ({_setting(case)})"


def _table(rows: list[Case], started: str, load_start: tuple[float, float, float], *, smoke: bool) -> str:
    """The markdown report: equal-accuracy summary (ratios to geomloss from this run), then every case."""
    import ot
    import torch

    geomloss = _geomloss_version()
    lines = [
        "# Debiased Sinkhorn divergence at equal accuracy (issue 17): bench/ot_divergence.py"
        + (" (smoke run: tiny sizes, not a measurement)" if smoke else ""),
        "",
        f"Run {started}; {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), {THREADS} "
        f"torch/OpenMP threads per case; torch {torch.__version__}, POT {ot.__version__}, geomloss "
        f"{geomloss or 'not installed (left out)'}; load average at start "
        f"{' / '.join(f'{v:.2f}' for v in load_start)}.",
        f"eps = {REG} x the largest x-y cost, c = 1/2 |x - y|^2, debiased; error = value / reference - 1; "
        f"a method counts at its loosest setting within {ACCURACY:.1%} (setting: geomloss `scaling`, POT "
        "`stopThr`). Issue 17's bar: 10k <= 30 s, 5k <= 8 s, ours not slower than geomloss.",
        "",
        "## Equal accuracy",
        "",
        "| family | n | ours s | geomloss s (scaling) | POT s (stopThr) | ours / geomloss | POT / geomloss "
        "| peak RSS MiB ours / geomloss / POT | load 1-min (ours) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for family, n in dict.fromkeys((c.family, c.n) for c in rows):
        ours, geo, pot = (_pick(rows, family, n, m) for m in ("ours", "geomloss", "pot"))
        rss = " / ".join(f"{c.rss_mib:.0f}" if c else "-" for c in (ours, geo, pot))
        lines.append(
            f"| {family} | {n} | {_cell(ours)} | {_cell(geo)} | {_cell(pot)} "
            f"| {_ratio(ours, geo)} | {_ratio(pot, geo)} "
            f"| {rss} | {f'{ours.load:.2f}' if ours else ''} |"
        )
    lines += [
        "",
        "A time with an error: the finest setting that finished, still outside 0.5%. * geomloss reached 0.5% "
        "at no setting: the ratio is to its finest one, an upper bound on the ratio at equal accuracy.",
        "",
        "## Every case",
        "",
        "| family | n | method | setting | value | seconds | error | ok | peak RSS MiB | added RSS MiB "
        "| load 1-min | note |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in rows:
        done = c.value is not None
        value, error, ok = (
            (f"{c.value:.6g}", f"{c.error:+.2e}", "yes" if c.ok else "no") if done else ("",) * 3
        )
        lines.append(
            f"| {c.family} | {c.n} | {c.method} | {_setting(c)} | {value} | {c.seconds:.2f} | {error} | {ok} "
            f"| {c.rss_mib:.0f} | {c.added_mib:.0f} | {c.load:.2f} | {c.note} |"
        )
    return "\n".join(lines) + "\n"


def _geomloss_version() -> str | None:
    """geomloss's version, or None when the bench extra is not installed."""
    try:
        import geomloss
    except ImportError:
        return None
    return str(geomloss.__version__)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10000, 20000])
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    parser.add_argument("--budget", type=float, default=600.0, help="seconds per case (reference: 4x)")
    parser.add_argument("--smoke", action="store_true", help="tiny, in this process: not a measurement")
    parser.add_argument("--out", type=Path, default=OUT, help="folder of ot_divergence.md")
    args = parser.parse_args(argv)
    methods = tuple(LADDERS)
    if args.smoke:
        args.sizes, args.families = [300], ["topics"]
        if _geomloss_version() is None:
            methods = tuple(m for m in methods if m != "geomloss")
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's scaling, in children
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ[var] = str(THREADS)
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_start = os.getloadavg()
    rows = [
        case
        for family in args.families
        for case in _cases(family, sorted(args.sizes), args.budget, methods=methods, in_process=args.smoke)
    ]
    report = _table(rows, started, load_start, smoke=args.smoke)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ot_divergence.md").write_text(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
