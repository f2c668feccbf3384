"""Sinkhorn divergence speed and memory on CPU: scaling.ot (debiased, log domain) vs a default POT call.

Data: two clouds of n L2-normalised 384-d vectors (20 Gaussian clusters, the target shifted), the shape of
MiniLM embeddings. Ours: `sinkhorn_divergence(x, y)` (eps 0.01 on the max-normalised cost, tol 1e-3, three
log-domain solves: OT(x,y), OT(x,x), OT(y,y)), numpy and torch backends. Baseline: `ot.sinkhorn2(a, b, M,
0.01)` with POT's defaults (one matrix-scaling solve, 1000 iterations max) on the same normalised cost.
Each case runs in a fresh process so its peak RSS is its own. Timings are on the shared 2-core machine.

Run: .venv/bin/python bench/ot_divergence.py [--sizes 1000 5000 10000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time
import warnings

import numpy as np


def clouds(n: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two n x 384 clustered unit-vector clouds; y is shifted along a random direction."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(20, 384))
    shift = rng.normal(size=384) * 0.3

    def draw(offset: np.ndarray) -> np.ndarray:
        z = centers[rng.integers(0, 20, n)] * 0.6 + rng.normal(size=(n, 384)) + offset
        return z / np.linalg.norm(z, axis=1, keepdims=True)

    return draw(np.zeros(384)), draw(shift)


def _case(kind: str, n: int, queue: mp.Queue) -> None:
    import ot

    from scaling.ot import sinkhorn_divergence

    x, y = clouds(n)
    t = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if kind == "pot_sinkhorn2":
            m = 0.5 * ot.dist(x, y)
            value = float(ot.sinkhorn2(np.full(n, 1 / n), np.full(n, 1 / n), m / m.max(), 0.01) * m.max())
        else:
            value = sinkhorn_divergence(x, y, backend="torch" if kind == "ours_torch" else "numpy")
    seconds = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put((kind, n, value, seconds, rss, len(caught)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 10000])
    parser.add_argument("--cases", nargs="+", default=["ours_numpy", "ours_torch", "pot_sinkhorn2"])
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    rows = []
    for n in args.sizes:
        for kind in args.cases:
            queue = ctx.Queue()
            proc = ctx.Process(target=_case, args=(kind, n, queue))
            proc.start()
            rows.append(queue.get())
            proc.join()
            print(f"done {kind} n={n}", flush=True)
    base = {n: s for kind, n, _, s, _, _ in rows if kind == "pot_sinkhorn2"}
    print("\n| n | case | value | seconds | x POT sinkhorn2 time | peak RSS MiB | warnings |")
    print("|---|---|---|---|---|---|---|")
    for kind, n, value, seconds, rss, n_warn in rows:
        ratio = f"{seconds / base[n]:.2f}" if n in base else "n/a"
        print(f"| {n} | {kind} | {value:.5f} | {seconds:.1f} | {ratio} | {rss:.0f} | {n_warn} |")
    print("\nvalue: ours = debiased S_eps; POT = entropic transport cost <P, C> of one solve (not debiased).")


if __name__ == "__main__":
    main()
